"""A public ACM certificate for the site's domain, validated through DNS by the operator.

ACM asks for one CNAME record per name; this program does not manage the domain's DNS, so it prints the
record while it waits (and the stack exports it as `certificateValidationRecords`). The first `pulumi up`
with a domain waits here until the record resolves (ACM's validation timeout: 75 minutes); if it times out,
create the record and run `pulumi up` again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws


@dataclass
class SiteCertificateArgs:
    domain: str
    region: str | None  # None: the stack's region (the load balancer); "us-east-1": CloudFront's
    tags: dict[str, str]


def _records(options: Sequence[Any]) -> list[dict[str, str]]:
    def field(option: Any, name: str, camel: str) -> str:
        # An output type (attributes) from the provider; a plain mapping from the mocks' raw values.
        return str(getattr(option, name) if hasattr(option, name) else option.get(camel, ""))

    return [
        {
            "name": field(option, "resource_record_name", "resourceRecordName"),
            "type": field(option, "resource_record_type", "resourceRecordType"),
            "value": field(option, "resource_record_value", "resourceRecordValue"),
        }
        for option in options or []
    ]


class SiteCertificate(pulumi.ComponentResource):
    def __init__(self, name: str, args: SiteCertificateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:SiteCertificate", name, None, opts)
        self.certificate = aws.acm.Certificate(
            name,
            domain_name=args.domain,
            validation_method="DNS",
            region=args.region,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.validation_records: pulumi.Output[list[dict[str, str]]] = self.certificate.domain_validation_options.apply(
            _records
        )

        def announce(records: list[dict[str, str]]) -> list[dict[str, str]]:
            for record in records:
                pulumi.log.info(
                    f"waiting for ACM to validate {args.domain}: create the DNS record "
                    f"{record['name']} {record['type']} {record['value']}",
                    resource=self,
                )
            return records

        self.validation_records.apply(announce)
        # Waits until ACM has issued the certificate: listeners and distributions only take issued ones.
        self.validation = aws.acm.CertificateValidation(
            f"{name}-validation",
            certificate_arn=self.certificate.arn,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn: pulumi.Output[str] = self.validation.certificate_arn
        self.register_outputs({"arn": self.arn, "validationRecords": self.validation_records})
