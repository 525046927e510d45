"""Who may do what in an S3 bucket: AWS's evaluation of the policies the program writes, applied to the requests a
boto3 client really sends. moto does not evaluate bucket policies, so this stands in for that part of S3.

What it models is what AWS documents, for the statements this program writes and no more — anything else raises
rather than guessing:
- a request is refused by any matching Deny, else allowed by any matching Allow (the role's own policy or the
  bucket's: one account), else refused ("IAM JSON policy evaluation logic");
- Action/NotAction (case-insensitive, `*` and `?`), Resource/NotResource (case-sensitive), Principal
  (`*` or `{"AWS": ARN}`) of a resource policy;
- the condition operators Null, Bool, StringEquals, StringNotEquals, StringLike, StringNotLike (with IfExists):
  the operators and keys of one statement all hold (AND), one key's values any (OR); a negated operator holds for
  a key the request lacks;
- each S3 operation's IAM action ("Required permissions for Amazon S3 API operations": the whole multipart upload
  is `s3:PutObject`) and its condition keys ("Enforce conditional writes": `s3:if-none-match` from the request's
  If-None-Match header, on the operations that take it; `s3:ObjectCreationOperation` true for the operations that
  create an object — PutObject, CopyObject, CompleteMultipartUpload — false for CreateMultipartUpload, UploadPart
  and UploadPartCopy, which cannot carry the header).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

# Operation → (IAM action, whether it creates an object: s3:ObjectCreationOperation; None = the key is absent).
OPERATIONS: dict[str, tuple[str, bool | None]] = {
    "PutObject": ("s3:PutObject", True),
    "CopyObject": ("s3:PutObject", True),
    "CompleteMultipartUpload": ("s3:PutObject", True),
    "CreateMultipartUpload": ("s3:PutObject", False),
    "UploadPart": ("s3:PutObject", False),
    "UploadPartCopy": ("s3:PutObject", False),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", None),
    "GetObject": ("s3:GetObject", None),
    "HeadObject": ("s3:GetObject", None),
    "ListObjectsV2": ("s3:ListBucket", None),
    "DeleteObject": ("s3:DeleteObject", None),
}
# The operations whose If-None-Match / If-Match header S3 reads as a write condition.
CONDITIONAL_WRITES = {"PutObject", "CopyObject", "CompleteMultipartUpload"}


@dataclass(frozen=True)
class S3Request:
    """One request as it went on the wire: the operation, its bucket and key, its HTTP headers."""

    operation: str
    bucket: str
    key: str | None
    headers: dict[str, str]  # names in lower case
    secure: bool = True
    prefix: str | None = None  # ListObjectsV2's prefix parameter: the condition key s3:prefix

    @property
    def action(self) -> str:
        if self.operation not in OPERATIONS:
            raise NotImplementedError(f"{self.operation}: not an operation this evaluator knows the action of")
        return OPERATIONS[self.operation][0]

    @property
    def resource(self) -> str:
        return f"arn:aws:s3:::{self.bucket}" + (f"/{self.key}" if self.key is not None else "")

    def context(self, principal: str) -> dict[str, str]:
        """The request's condition keys (lower case) with their values, as AWS sets them."""
        keys = {"aws:principalarn": principal, "aws:securetransport": str(self.secure).lower()}
        creates = OPERATIONS[self.operation][1]
        if creates is not None:
            keys["s3:objectcreationoperation"] = str(creates).lower()
        if self.operation in CONDITIONAL_WRITES:
            for header in ("if-none-match", "if-match"):
                if header in self.headers:
                    keys[f"s3:{header}"] = self.headers[header]
        for header in ("x-amz-server-side-encryption", "x-amz-copy-source"):
            if header in self.headers:
                keys[f"s3:{header}"] = self.headers[header]
        if self.operation == "ListObjectsV2" and self.prefix is not None:
            keys["s3:prefix"] = self.prefix
        return keys


# The keys `context` knows how to set: a condition on another key raises instead of reading it as absent.
KNOWN_KEYS = {
    "aws:principalarn",
    "aws:securetransport",
    "s3:objectcreationoperation",
    "s3:if-none-match",
    "s3:if-match",
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-copy-source",
    "s3:prefix",
    "kms:viaservice",
}


@dataclass
class Decision:
    allowed: bool
    why: str  # "allowed by …", "denied by …", "no statement allows it"
    matched: list[str] = field(default_factory=list)


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    # IAM's wildcards are * and ? only: no character classes.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _principal_matches(statement: dict, principal: str) -> bool:
    if "NotPrincipal" in statement:
        raise NotImplementedError("NotPrincipal")
    given = statement["Principal"]
    if given == "*":
        return True
    if not set(given) <= {"AWS", "Service"}:
        raise NotImplementedError(f"Principal {given!r}")
    # A service principal (cloudfront.amazonaws.com) is never a role; an account's root principal hands the
    # decision to the account's own IAM policies, which `evaluate` reads as the identity documents.
    return any(name == "*" or name == principal for name in _listed(given.get("AWS", [])))


def _condition_holds(operator: str, key: str, wanted: list[str], context: dict[str, str]) -> bool:
    key = key.lower()
    if key not in KNOWN_KEYS:
        raise NotImplementedError(f"condition key {key}: not one this evaluator sets")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    present = key in context
    if base == "Null":
        return any(value.lower() == ("false" if present else "true") for value in wanted)
    if not present:
        # A negated operator holds for a key the request lacks; IfExists makes any operator hold then.
        return if_exists or base.startswith("StringNot")
    value = context[key]
    if base == "Bool":
        return any(value.lower() == item.lower() for item in wanted)
    if base == "StringEquals":
        return value in wanted
    if base == "StringNotEquals":
        return value not in wanted
    if base == "StringLike":
        return any(_glob(item, value, case=True) for item in wanted)
    if base == "StringNotLike":
        return not any(_glob(item, value, case=True) for item in wanted)
    raise NotImplementedError(f"condition operator {operator}")


def _applies(
    statement: dict, request: PolicyRequest, principal: str, context: dict[str, str], resource_policy: bool
) -> bool:
    if resource_policy and not _principal_matches(statement, principal):
        return False
    if "NotAction" in statement:
        if any(_glob(action, request.action, case=False) for action in _listed(statement["NotAction"])):
            return False
    elif not any(_glob(action, request.action, case=False) for action in _listed(statement["Action"])):
        return False
    if "NotResource" in statement:
        if any(_glob(resource, request.resource, case=True) for resource in _listed(statement["NotResource"])):
            return False
    elif "Resource" not in statement:
        if not resource_policy:
            raise NotImplementedError("an identity policy statement without Resource")
        # A role's trust policy: the statement is about the role itself.
    elif not any(_glob(resource, request.resource, case=True) for resource in _listed(statement["Resource"])):
        return False
    return all(
        _condition_holds(operator, key, _listed(values), context)
        for operator, keys in statement.get("Condition", {}).items()
        for key, values in keys.items()
    )


class PolicyRequest(Protocol):
    """What the evaluation reads of a request (an S3Request, or another service's: harness/standins/access.py)."""

    @property
    def action(self) -> str: ...

    @property
    def resource(self) -> str: ...

    def context(self, principal: str) -> dict[str, str]: ...


def evaluate(request: PolicyRequest, principal: str, identity: list[dict], resource: list[dict]) -> Decision:
    """AWS's verdict on `request` by `principal` (a role ARN), given the principal's own policy documents
    (`identity`) and the bucket's (`resource`), all in one account."""
    context = request.context(principal)
    allows, denies = [], []
    for documents, is_resource in ((identity, False), (resource, True)):
        for document in documents:
            for number, statement in enumerate(_listed_statements(document)):
                if _applies(statement, request, principal, context, is_resource):
                    name = statement.get("Sid") or f"statement {number}"
                    (denies if statement["Effect"] == "Deny" else allows).append(name)
    if denies:
        return Decision(False, f"denied by {', '.join(denies)}", denies)
    if allows:
        return Decision(True, f"allowed by {', '.join(allows)}", allows)
    return Decision(False, "no statement allows it")


def _listed_statements(document: dict) -> list[dict]:
    statements = document["Statement"]
    return [statements] if isinstance(statements, dict) else statements


# --- the requests a client really sends --------------------------------------------------------------------


def record(client: Any) -> list[S3Request]:
    """The list that every request `client` sends from now on is appended to, with its final headers (after every
    other hook, the signature included), in order."""
    requests: list[S3Request] = []

    def keep_params(params: dict, context: dict, **_: Any) -> None:
        context["recorded_bucket"], context["recorded_key"] = params.get("Bucket"), params.get("Key")

    def keep(request: Any, event_name: str, **_: Any) -> None:
        requests.append(
            S3Request(
                operation=event_name.rsplit(".", 1)[-1],
                bucket=request.context["recorded_bucket"],
                key=request.context["recorded_key"],
                headers={name.lower(): _text(value) for name, value in request.headers.items()},
                secure=request.url.startswith("https://"),
            )
        )

    client.meta.events.register("before-parameter-build.s3", keep_params)
    client.meta.events.register("before-send.s3", keep)
    return requests


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
