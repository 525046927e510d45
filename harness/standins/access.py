"""IAM for the guests' calls: each request an app server makes with credentials is judged, before moto sees it,
by the policies the program declares for whoever holds those credentials — moto evaluates none of them here.

Principals: the instance role (credentials from the metadata stand-in) with its inline policy and the AWS-managed
policy it carries; a role assumed through STS (the media role), once the trust policy of that role and the
caller's own policy allowed the AssumeRole. Judged with harness/s3access.py's evaluation of AWS's rules:
- S3: the operation's action and resource, the bucket's policy beside the principal's (one account);
- SSM GetParameter: the parameter's ARN; with decryption also kms:Decrypt through SSM (kms:ViaService), which only
  the key's own policy can grant here (the role's policies give no KMS permission);
- STS AssumeRole, and the two Auto Scaling calls.
A refusal answers as the service would (AccessDenied / AccessDeniedException) and is kept in `denials`.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from harness.mockrun import ProgramRun
from harness.s3access import Decision, S3Request, evaluate

from .awsapi import ACCOUNT, REGION

# AmazonSSMManagedInstanceCore, as AWS documents it, for the actions the program's servers use: it lets Session
# Manager's agent work, and it allows reading any parameter — which is why the parameters' KMS key is the
# program's own (components/scaled/secretstore.py).
MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "ssm:GetParameter",
                    "ssm:GetParameters",
                    "ssm:DescribeAssociation",
                    "ssm:UpdateInstanceInformation",
                ],
                "Resource": "*",
            },
            {"Effect": "Allow", "Action": ["ssmmessages:*", "ec2messages:*"], "Resource": "*"},
        ],
    }
}
ACCESS_KEY = re.compile(r"Credential=([A-Z0-9]+)/")


@dataclass(frozen=True)
class ApiRequest:
    """A request to a service other than S3, as the policy evaluation reads it."""

    action: str
    resource: str
    keys: dict[str, str] = field(default_factory=dict)

    def context(self, principal: str) -> dict[str, str]:
        return {"aws:principalarn": principal, "aws:securetransport": "true", **self.keys}


@dataclass
class Denial:
    principal: str
    action: str
    resource: str
    why: str


class AccessControl:
    def __init__(self, run: ProgramRun) -> None:
        self.lock = threading.Lock()
        self.principals: dict[str, str] = {}  # access key → role ARN
        self.denials: list[Denial] = []
        self.update(run)

    def update(self, run: ProgramRun) -> None:
        """The policies as the program now declares them (a later `pulumi up` may change them)."""
        roles = {role.name: role for role in run.of_type("aws:iam/role:Role")}
        self.role_arns = {name: f"arn:aws:iam::{ACCOUNT}:role/{name}" for name in roles}
        self.trust = {self.role_arns[name]: json.loads(role.inputs["assumeRolePolicy"]) for name, role in roles.items()}
        self.identity: dict[str, list[dict]] = {arn: [] for arn in self.trust}
        for policy in run.of_type("aws:iam/rolePolicy:RolePolicy"):
            self.identity[self.role_arns[policy.inputs["role"]]].append(json.loads(policy.inputs["policy"]))
        for attachment in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
            self.identity[self.role_arns[attachment.inputs["role"]]].append(
                MANAGED_POLICIES[attachment.inputs["policyArn"]]
            )
        buckets = {b.urn: b.inputs.get("bucket") or b.name for b in run.of_type("aws:s3/bucket:Bucket")}
        buckets |= {b.name: b.inputs.get("bucket") or b.name for b in run.of_type("aws:s3/bucket:Bucket")}
        self.bucket_policies: dict[str, list[dict]] = {}
        for policy in run.of_type("aws:s3/bucketPolicy:BucketPolicy"):
            bucket = buckets.get(policy.inputs["bucket"], policy.inputs["bucket"])
            self.bucket_policies.setdefault(bucket, []).append(json.loads(policy.inputs["policy"]))
        self.key_policies = [json.loads(key.inputs["policy"]) for key in run.of_type("aws:kms/key:Key")]

    def grant(self, access_key: str, role_arn: str) -> None:
        with self.lock:
            self.principals[access_key] = role_arn

    def principal(self, headers: dict[str, str], query: dict[str, str]) -> str | None:
        authorization = headers.get("authorization", "")
        found = ACCESS_KEY.search(authorization) or ACCESS_KEY.search("Credential=" + query.get("X-Amz-Credential", ""))
        with self.lock:
            return self.principals.get(found.group(1)) if found else None

    # --- the judgement ----------------------------------------------------------------------------------------

    def judge(self, principal: str, request: Any, resource_policies: list[dict]) -> Decision:
        decision = evaluate(request, principal, self.identity.get(principal, []), resource_policies)
        if not decision.allowed:
            with self.lock:
                self.denials.append(Denial(principal, request.action, request.resource, decision.why))
        return decision

    def s3(
        self, principal: str, method: str, host: str, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> Decision:
        bucket, key = s3_target(host, path)
        operation = s3_operation(method, key, query, headers)
        request = S3Request(operation, bucket, key, headers, prefix=query.get("prefix"))
        return self.judge(principal, request, self.bucket_policies.get(bucket, []))

    def ssm(self, principal: str, target: str, body: dict[str, Any]) -> Decision:
        action = "ssm:" + target.split(".")[-1]
        name = str(body.get("Name", "")).split(":")[0]
        decision = self.judge(principal, ApiRequest(action, f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"), [])
        if decision.allowed and body.get("WithDecryption"):
            via = {"kms:viaservice": f"ssm.{REGION}.amazonaws.com"}
            key = ApiRequest("kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*", via)
            decision = evaluate(key, principal, [], self.key_policies)
            if not decision.allowed:
                with self.lock:
                    self.denials.append(Denial(principal, key.action, key.resource, decision.why))
        return decision

    def assume_role(self, principal: str, role_arn: str) -> Decision:
        decision = self.judge(principal, ApiRequest("sts:AssumeRole", role_arn), [])
        if decision.allowed:
            # The target role's trust policy must name the caller too.
            trust = self.trust.get(role_arn)
            decision = evaluate(ApiRequest("sts:AssumeRole", role_arn), principal, [], [trust] if trust else [])
            if not decision.allowed:
                with self.lock:
                    self.denials.append(Denial(principal, "sts:AssumeRole (trust)", role_arn, decision.why))
        return decision

    def autoscaling(self, principal: str, action: str, group: str) -> Decision:
        resource = (
            f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:0d4a7c30-standin:autoScalingGroupName/{group}"
            if group
            else "*"
        )
        return self.judge(principal, ApiRequest(f"autoscaling:{action}", resource), [])


def s3_target(host: str, path: str) -> tuple[str, str | None]:
    """(bucket, key) of a request, virtual-hosted (`bucket.s3….amazonaws.com`) or path style."""
    path = urllib.parse.unquote(path)
    if not re.match(r"^s3[.-]", host):
        return host.split(".s3")[0], path.lstrip("/") or None
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key or None


def s3_operation(method: str, key: str | None, query: dict[str, str], headers: dict[str, str]) -> str:
    if key is None:
        return "ListObjectsV2" if method == "GET" else f"Bucket{method}"
    if method in ("GET", "HEAD"):
        return "GetObject" if method == "GET" else "HeadObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "POST":
        return "CompleteMultipartUpload" if "uploadId" in query else "CreateMultipartUpload"
    if "partNumber" in query:
        return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
    return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
