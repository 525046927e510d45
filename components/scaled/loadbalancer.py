"""The application load balancer in the public subnets, its target group (the app servers, health-checked
on /healthz) and its listeners: HTTP serves, or — with a domain and its certificate — redirects to HTTPS, which
serves. Serving means: a request that carries CloudFront's origin header (ORIGIN_HEADER, a random secret that only
our distribution adds, cdn.py) goes to the app servers; any other gets 403. The security group already admits
CloudFront's addresses only, but those are every distribution's: the header is what makes it ours."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from server.appserver import ORIGIN_HEADER


@dataclass
class LoadBalancerArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Input[str]
    health_path: str
    certificate_arn: pulumi.Input[str] | None  # an issued ACM certificate: HTTPS on 443, HTTP redirects
    tags: dict[str, str]


class LoadBalancer(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.subnet_ids,
            security_groups=[args.security_group_id],
            # Requests with malformed headers never reach Django.
            drop_invalid_header_fields=True,
            idle_timeout=60,  # below nginx's keepalive (75 s), so the ALB never reuses a closed connection
            tags=args.tags,
            opts=child,
        )
        self.targets = aws.lb.TargetGroup(
            f"{name}-tg",
            vpc_id=args.vpc_id,
            port=80,
            protocol="HTTP",
            target_type="instance",
            # An app server leaving (instance refresh, scale-in) finishes its requests first; gunicorn's
            # graceful timeout is 25 s.
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=args.health_path,
                protocol="HTTP",
                matcher="200",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            tags=args.tags,
            opts=child,
        )
        # Generated once and kept secret in state; rotating it (replace this resource) updates both sides.
        self.origin_secret = random.RandomPassword(f"{name}-origin-secret", length=40, special=False, opts=child)
        forward = [
            aws.lb.ListenerDefaultActionArgs(
                type="fixed-response",
                fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                    content_type="text/plain", message_body="Not through the site's address.\n", status_code="403"
                ),
            )
        ]
        if args.certificate_arn is None:
            self.http = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=self.balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=forward,
                opts=child,
            )
            self.https: aws.lb.Listener | None = None
        else:
            self.http = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=self.balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=[
                    aws.lb.ListenerDefaultActionArgs(
                        type="redirect",
                        redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                            protocol="HTTPS", port="443", status_code="HTTP_301"
                        ),
                    )
                ],
                opts=child,
            )
            self.https = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.balancer.arn,
                port=443,
                protocol="HTTPS",
                certificate_arn=args.certificate_arn,
                ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
                default_actions=forward,
                opts=child,
            )
        serving = self.https or self.http
        self.from_cloudfront = aws.lb.ListenerRule(
            f"{name}-from-cloudfront",
            listener_arn=serving.arn,
            priority=1,
            conditions=[
                aws.lb.ListenerRuleConditionArgs(
                    http_header=aws.lb.ListenerRuleConditionHttpHeaderArgs(
                        http_header_name=ORIGIN_HEADER, values=[pulumi.Output.secret(self.origin_secret.result)]
                    )
                )
            ],
            actions=[aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=self.targets.arn)],
            tags=args.tags,
            opts=child,
        )
        self.dns_name: pulumi.Output[str] = self.balancer.dns_name
        # What must exist before app servers join: the listeners and the rule that forwards to them.
        self.listeners: list[pulumi.Resource] = [listener for listener in (self.http, self.https) if listener]
        self.listeners.append(self.from_cloudfront)
        self.register_outputs({"dnsName": self.dns_name, "targetGroupArn": self.targets.arn})
