"""The scaled profile's front door is CloudFront only (issue 16, item 10).

Under mocks: the load balancer admits CloudFront's origin-facing prefix list (looked up, not hard-coded) on the
one port CloudFront uses; its listener answers 403 unless the request carries the origin header that only this
stack's distribution sends (a random secret, secret in state); Django no longer answers for the load balancer's
own name. For real: the app servers' nginx site, rendered, runs on loopback in front of a stand-in for gunicorn,
which sees `X-Forwarded-Proto: https` whatever scheme header a client sends, and never the origin secret.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.request

import pytest
from rendered.helpers import echo_server, free_port, on_loopback, running_nginx

from config.settings import load_settings
from harness import mockrun
from harness.mockrun import ProgramRun, run_program
from server.appserver import ORIGIN_HEADER, scaled_plan
from server.host import render

PREFIX_LIST = "pl-3b927c52"  # what AWS answers in us-east-1 for the name below
ORIGIN_FACING = "com.amazonaws.global.cloudfront.origin-facing"


@pytest.fixture(scope="module")
def with_prefix_list():
    """The mocks answer unknown lookups with nothing: answer this one as AWS does."""
    original = mockrun.ProgramMocks.call

    def call(self, args):
        if args.token == "aws:ec2/getManagedPrefixList:getManagedPrefixList":
            self.invokes.append((args.token, dict(args.args)))
            return {"id": PREFIX_LIST, "name": args.args.get("name"), "maxEntries": 55}
        return original(self, args)

    mockrun.ProgramMocks.call = call
    yield
    mockrun.ProgramMocks.call = original


def _run(domain: str = "") -> ProgramRun:
    return run_program({"profile": "scaled", **({"domain": domain} if domain else {})})


@pytest.mark.parametrize(("domain", "port"), [("", 80), ("shop.example.com", 443)])
def test_the_load_balancer_admits_cloudfront_only(with_prefix_list, domain, port):
    run = _run(domain)
    assert (mockrun_token := "aws:ec2/getManagedPrefixList:getManagedPrefixList") in [t for t, _ in run.invokes]
    assert dict(run.invokes)[mockrun_token] == {"name": ORIGIN_FACING}
    (rule,) = run.named("photofeed-alb-sg").inputs["ingress"]
    assert (rule["fromPort"], rule["toPort"]) == (port, port)  # the one port CloudFront uses to reach it
    assert rule["prefixListIds"] == [PREFIX_LIST]
    assert not rule.get("cidrBlocks") and not rule.get("ipv6CidrBlocks")


def test_the_listener_serves_only_requests_with_this_distributions_secret(with_prefix_list):
    run = _run()
    (listener,) = run.of_type("aws:lb/listener:Listener")
    (default,) = listener.inputs["defaultActions"]
    assert default["type"] == "fixed-response" and default["fixedResponse"]["statusCode"] == "403"
    (rule,) = run.of_type("aws:lb/listenerRule:ListenerRule")
    (condition,) = rule.inputs["conditions"]
    assert condition["httpHeader"]["httpHeaderName"] == ORIGIN_HEADER
    (secret,) = condition["httpHeader"]["values"]
    assert len(secret) == 40 and "conditions" in rule.secret_inputs
    (action,) = rule.inputs["actions"]
    assert action["type"] == "forward" and "photofeed-tg" in action["targetGroupArn"]
    distribution = run.one("aws:cloudfront/distribution:Distribution")
    origin = {o["originId"]: o for o in distribution.inputs["origins"]}["load-balancer"]
    assert origin["customHeaders"] == [{"name": ORIGIN_HEADER, "value": secret}]
    assert "origins" in distribution.secret_inputs
    # Every behaviour sends HTTP visitors to HTTPS: what the app servers' nginx relies on (below).
    behaviours = [distribution.inputs["defaultCacheBehavior"], *distribution.inputs["orderedCacheBehaviors"]]
    assert {b["viewerProtocolPolicy"] for b in behaviours} == {"redirect-to-https"}


def test_django_no_longer_answers_for_the_load_balancers_name(with_prefix_list):
    env = _run().named("photofeed-env").inputs["value"]
    hosts = next(line for line in env.splitlines() if line.startswith("DJANGO_ALLOWED_HOSTS="))
    assert hosts == "DJANGO_ALLOWED_HOSTS='d111111abcdef8.cloudfront.net'"
    assert "elb.amazonaws.com" not in env


# --- the app servers' nginx, live ---------------------------------------------------------------------------------


@pytest.fixture
def app_server_nginx(live_dir):
    """The scaled app servers' rendered nginx site, live on loopback, in front of gunicorn's stand-in."""
    socket_path = live_dir / "gunicorn.sock"
    plan = scaled_plan(load_settings({"profile": "scaled"}, project="djangoship", stack="dev"))
    paths = dataclasses.replace(plan.paths, socket_path=str(socket_path), static_root=str(live_dir / "static"))
    plan = dataclasses.replace(plan, paths=paths)
    site = render("scaled/nginx-site.conf.j2", plan, origin_header=ORIGIN_HEADER)
    # Only the address moves (port 80 may be taken on this machine); everything else is the rendered site.
    assert "listen 80 default_server;" in site
    port = free_port()
    with echo_server(socket_path), running_nginx(live_dir, on_loopback(site, {"80": port}), port):
        yield f"http://127.0.0.1:{port}"


def _headers_seen(url: str, headers: dict[str, str]) -> dict[str, str]:
    request = urllib.request.Request(url + "/shop/", headers={"Host": "d111111abcdef8.cloudfront.net", **headers})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["headers"]


@pytest.mark.parametrize(
    "client_headers",
    [
        {},
        {"CloudFront-Forwarded-Proto": "http"},
        {"CloudFront-Forwarded-Proto": "https", "X-Forwarded-Proto": "http"},
        {"X-Forwarded-Proto": "http"},
    ],
)
def test_django_is_told_https_whatever_a_client_sends(app_server_nginx, client_headers):
    seen = _headers_seen(app_server_nginx, {ORIGIN_HEADER: "the-secret", **client_headers})
    assert seen["x-forwarded-proto"] == "https"
    assert ORIGIN_HEADER.lower() not in seen  # CloudFront's secret stops at nginx
    assert seen["host"] == "d111111abcdef8.cloudfront.net"


def test_the_site_reads_no_scheme_header():
    plan = scaled_plan(load_settings({"profile": "scaled"}, project="djangoship", stack="dev"))
    site = render("scaled/nginx-site.conf.j2", plan, origin_header=ORIGIN_HEADER)
    assert "$http_cloudfront_forwarded_proto" not in site and "$http_x_forwarded_proto" not in site
