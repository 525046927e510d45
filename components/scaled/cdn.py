"""CloudFront in front of everything: /static/* and /media/* from the private assets bucket (through Origin
Access Control, the bucket admitting only this distribution), everything else from the load balancer,
uncached, with the visitor's Host, cookies and query string.

Without a domain the site is https://<distribution>.cloudfront.net and CloudFront reaches the load balancer
over plain HTTP (the load balancer has no certificate for its own name): the visitor's leg is encrypted, the
leg from CloudFront to the region is not. With a domain, CloudFront answers for it (a certificate in us-east-1)
and reaches the load balancer over HTTPS: it forwards the visitor's Host, which the load balancer's certificate
names. Every request to the load balancer carries the origin header (ORIGIN_HEADER, server/appserver.py), and every
behaviour redirects HTTP visitors to HTTPS: whatever reaches the app servers was HTTPS from the visitor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# AWS-managed policies (fixed ids, the same in every account).
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
# Every viewer header (Host included), cookies and query strings, plus CloudFront-Forwarded-Proto: the app
# servers' nginx tells Django the visitor's scheme from it.
ALL_VIEWER_AND_CLOUDFRONT_HEADERS = "33f36d7e-f396-46d9-90e0-52428a34d9dc"
ALB_ORIGIN = "load-balancer"
S3_ORIGIN = "assets"
S3_PATHS = ("static", "media")


@dataclass
class CdnArgs:
    load_balancer_dns: pulumi.Input[str]
    bucket_id: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    bucket_domain: pulumi.Input[str]  # the bucket's regional domain name
    bucket_ready: list[pulumi.Resource]  # its public access block: the policy comes after it
    domain: str
    certificate_arn: pulumi.Input[str] | None  # us-east-1, required with a domain
    origin_header: str  # sent to the load balancer with origin_secret: its listener serves nothing else
    origin_secret: pulumi.Input[str]
    tags: dict[str, str]


class Cdn(pulumi.ComponentResource):
    def __init__(self, name: str, args: CdnArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:Cdn", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.domain and args.certificate_arn is None:
            raise ValueError("a domain needs its certificate (us-east-1) on CloudFront")
        self.access_control = aws.cloudfront.OriginAccessControl(
            f"{name}-oac",
            description=f"{name}: CloudFront reads the assets bucket, signed",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=child,
        )
        # Uploads are data, never code (as the single server's nginx says for /media/): no scripts, no sniffing.
        self.uploads_headers = aws.cloudfront.ResponseHeadersPolicy(
            f"{name}-uploads-headers",
            comment="uploaded files: no script, no content sniffing",
            security_headers_config=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigArgs(
                content_type_options=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentTypeOptionsArgs(
                    override=True
                ),
                content_security_policy=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentSecurityPolicyArgs(
                    content_security_policy="default-src 'none'; img-src 'self'; style-src 'none'; sandbox",
                    override=True,
                ),
            ),
            opts=child,
        )

        def s3_behavior(path: str) -> aws.cloudfront.DistributionOrderedCacheBehaviorArgs:
            return aws.cloudfront.DistributionOrderedCacheBehaviorArgs(
                path_pattern=f"/{path}/*",
                target_origin_id=S3_ORIGIN,
                viewer_protocol_policy="redirect-to-https",
                allowed_methods=["GET", "HEAD", "OPTIONS"],
                cached_methods=["GET", "HEAD"],
                cache_policy_id=CACHING_OPTIMIZED,
                response_headers_policy_id=self.uploads_headers.id if path == "media" else None,
                compress=True,
            )

        https_origin = bool(args.domain)
        self.distribution = aws.cloudfront.Distribution(
            f"{name}-cdn",
            enabled=True,
            is_ipv6_enabled=True,
            http_version="http2and3",
            comment=f"{name}: the site",
            # North America and Europe edges only: the cheapest class; visitors elsewhere are served from there.
            price_class="PriceClass_100",
            aliases=[args.domain] if args.domain else None,
            origins=[
                aws.cloudfront.DistributionOriginArgs(
                    origin_id=ALB_ORIGIN,
                    domain_name=args.load_balancer_dns,
                    custom_headers=[
                        aws.cloudfront.DistributionOriginCustomHeaderArgs(
                            name=args.origin_header, value=pulumi.Output.secret(args.origin_secret)
                        )
                    ],
                    custom_origin_config=aws.cloudfront.DistributionOriginCustomOriginConfigArgs(
                        http_port=80,
                        https_port=443,
                        origin_protocol_policy="https-only" if https_origin else "http-only",
                        origin_ssl_protocols=["TLSv1.2"],
                    ),
                ),
                aws.cloudfront.DistributionOriginArgs(
                    origin_id=S3_ORIGIN,
                    domain_name=args.bucket_domain,
                    origin_access_control_id=self.access_control.id,
                ),
            ],
            default_cache_behavior=aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
                target_origin_id=ALB_ORIGIN,
                viewer_protocol_policy="redirect-to-https",
                allowed_methods=["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"],
                cached_methods=["GET", "HEAD"],
                # Pages are per user (sessions, CSRF cookies): never cached at the edge.
                cache_policy_id=CACHING_DISABLED,
                origin_request_policy_id=ALL_VIEWER_AND_CLOUDFRONT_HEADERS,
                compress=True,
            ),
            ordered_cache_behaviors=[s3_behavior(path) for path in S3_PATHS],
            restrictions=aws.cloudfront.DistributionRestrictionsArgs(
                geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(restriction_type="none")
            ),
            viewer_certificate=aws.cloudfront.DistributionViewerCertificateArgs(
                acm_certificate_arn=args.certificate_arn,
                ssl_support_method="sni-only",
                minimum_protocol_version="TLSv1.2_2021",
            )
            if args.domain
            else aws.cloudfront.DistributionViewerCertificateArgs(cloudfront_default_certificate=True),
            tags=args.tags,
            opts=child,
        )
        self.domain_name: pulumi.Output[str] = self.distribution.domain_name

        def bucket_policy(values: list[str]) -> str:
            bucket_arn, distribution_arn = values
            return json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "CloudFrontReadsStaticAndMedia",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudfront.amazonaws.com"},
                            "Action": "s3:GetObject",
                            "Resource": [f"{bucket_arn}/{path}/*" for path in S3_PATHS],
                            "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
                        },
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [bucket_arn, f"{bucket_arn}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                },
                sort_keys=True,
            )

        self.bucket_policy = aws.s3.BucketPolicy(
            f"{name}-assets-policy",
            bucket=args.bucket_id,
            policy=pulumi.Output.all(args.bucket_arn, self.distribution.arn).apply(bucket_policy),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.bucket_ready),
        )
        self.register_outputs({"domainName": self.domain_name})
