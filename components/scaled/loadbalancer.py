"""The application load balancer in the public subnets, its target group (the app servers, health-checked
on /healthz) and its listeners: HTTP forwards to the app servers, or — with a domain and its certificate —
redirects to HTTPS, which forwards."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


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
        forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=self.targets.arn)]
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
        self.dns_name: pulumi.Output[str] = self.balancer.dns_name
        self.listeners = [listener for listener in (self.http, self.https) if listener is not None]
        self.register_outputs({"dnsName": self.dns_name, "targetGroupArn": self.targets.arn})
