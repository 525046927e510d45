"""The backup bucket's write-once policy against the requests the server's uploader really sends (issue 29, item 4).

moto stores what it is sent but does not evaluate bucket policies, so the requests are recorded on their way to
moto (botocore's hooks, after signing) and judged by `harness.s3access`, which evaluates policies as AWS documents
it. The uploader is the server's own `s3backup.py`, as the configure step installs it, with the settings that step
writes (the bucket and region: S3 itself, no endpoint); the policies are the ones the program declares.

boto3 uploads a file of 8 MiB or more in parts, and the parts cannot carry `If-None-Match`: a policy that refused
every `s3:PutObject` without the header refused every backup that size (a real site's dump or media).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from moto import mock_aws
from rendered.helpers import installed

from harness.mockrun import ProgramRun, run_program
from harness.s3access import S3Request, evaluate, record

BUCKET = "photofeed-backups-example"
MIB = 1 << 20
STAMP = "20261128T033000Z"
# The bucket policy as it was before issue 29: every s3:PutObject of the role without If-None-Match refused.
OLD_BUCKET_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "BackupsAreWrittenOnce",
            "Effect": "Deny",
            "Principal": {"AWS": "arn:aws:iam::123456789012:role/photofeed-instance-role"},
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/*",
            "Condition": {"Null": {"s3:if-none-match": "true"}},
        }
    ],
}


@dataclass
class Declared:
    principal: str  # the instance role
    identity: list[dict]  # the role's own policy
    bucket: list[dict]  # the bucket's policy

    def judge(self, request: S3Request, bucket: list[dict] | None = None):
        return evaluate(request, self.principal, self.identity, self.bucket if bucket is None else bucket)


@pytest.fixture(scope="module")
def program() -> ProgramRun:
    return run_program({"backupBucket": BUCKET})


@pytest.fixture(scope="module")
def declared(program) -> Declared:
    role = program.one("aws:iam/role:Role")
    return Declared(
        principal=f"arn:aws:iam::123456789012:role/{role.name}",  # the mocks' account
        identity=[json.loads(program.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])],
        bucket=[json.loads(program.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])],
    )


def _installed(program: ProgramRun, path: str) -> str:
    """A file the configure step installs, as the program sends it."""
    return installed(program.named("photofeed-configure").sent.script, path)


@dataclass
class Uploader:
    module: ModuleType
    requests: list[list[S3Request]]  # one list per client the uploader made (one per run)

    def upload(self, path: Path) -> list[S3Request]:
        self.module.main(["upload", str(path)])
        return self.requests[-1]


@pytest.fixture
def uploader(program, tmp_path, monkeypatch):
    """The server's s3backup.py against moto's S3, each run's requests recorded."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    script = tmp_path / "s3backup.py"
    script.write_text(_installed(program, "/usr/local/lib/photofeed/s3backup.py"))
    spec = importlib.util.spec_from_file_location("s3backup_under_test", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    settings = dict(line.split("=", 1) for line in _installed(program, "/etc/photofeed/backup.conf").splitlines())
    assert settings["BUCKET"] == BUCKET and "ENDPOINT_URL" not in settings
    monkeypatch.setattr(module, "settings", lambda: settings)
    requests: list[list[S3Request]] = []
    make_client = module.client

    def recording_client(conf):
        client = make_client(conf)
        requests.append(record(client))
        return client

    monkeypatch.setattr(module, "client", recording_client)
    with mock_aws():
        s3 = boto3.client("s3", region_name=settings["REGION"])
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield Uploader(module, requests)


def _file(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    with path.open("wb") as stream:
        for _ in range(size // MIB):
            stream.write(bytes(range(256)) * (MIB // 256))
        stream.write(b"x" * (size % MIB))
    return path


def test_a_backup_over_8_mib_goes_up_in_parts_each_allowed_by_the_declared_policies(uploader, declared, tmp_path):
    dump = _file(tmp_path, f"db-{STAMP}.dump", 20 * MIB)
    sums = _file(tmp_path, f"sums-{STAMP}.sha256", 200)
    large, small = uploader.upload(dump), uploader.upload(sums)
    assert [request.operation for request in large] == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    assert [request.operation for request in small] == ["PutObject"]
    # Written once: the requests that create the object ask S3 to refuse an existing key.
    assert large[-1].headers["if-none-match"] == small[0].headers["if-none-match"] == "*"
    for request in large + small:
        decision = declared.judge(request)
        assert decision.allowed, (request.operation, decision.why)
    # The bucket's statement still applies to the role's uploads (and is what exempts the parts): not dead text.
    assert [statement["Sid"] for statement in declared.bucket[0]["Statement"]] == ["BackupsAreWrittenOnce"]


def test_the_policy_before_issue_29_refused_the_parts_of_every_large_backup(uploader, declared, tmp_path):
    """The evaluator tells the two policies apart: a test that would pass on the old one proves nothing."""
    large = uploader.upload(_file(tmp_path, f"media-{STAMP}.tar.gz", 20 * MIB))
    refused = {r.operation for r in large if not declared.judge(r, bucket=[OLD_BUCKET_POLICY]).allowed}
    assert refused == {"CreateMultipartUpload", "UploadPart"}
    small = uploader.upload(_file(tmp_path, f"sums-{STAMP}.sha256", 200))
    assert declared.judge(small[0], bucket=[OLD_BUCKET_POLICY]).allowed


def test_an_overwrite_is_still_refused_whole_or_in_parts(uploader, declared, tmp_path):
    """What anything else holding the role's credentials (a process that reached the metadata service) could
    send to replace a backup: without If-None-Match, the request that would create the object is refused —
    PutObject, CopyObject, and the completion of a multipart upload (the parts alone create nothing)."""
    dump = _file(tmp_path, f"db-{STAMP}.dump", 20 * MIB)
    uploader.upload(dump)
    key = f"backups/{dump.name}"
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key="backups/elsewhere", Body=b"x")
    other = boto3.client("s3", region_name="us-east-1")  # no write-once hook
    sent = record(other)
    other.put_object(Bucket=BUCKET, Key=key, Body=b"forged")
    other.upload_file(str(dump), BUCKET, key)  # in parts
    other.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": "backups/elsewhere"})
    upload = other.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    other.upload_part_copy(
        Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, CopySource={"Bucket": BUCKET, "Key": key}
    )
    verdicts = [(request.operation, declared.judge(request).allowed) for request in sent]
    assert ("PutObject", False) in verdicts and ("CopyObject", False) in verdicts
    assert ("CompleteMultipartUpload", False) in verdicts
    assert {operation for operation, allowed in verdicts if allowed} == {
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
    }
    refused = next(r for r in sent if r.operation == "CompleteMultipartUpload")
    assert "denied by BackupsAreWrittenOnce" in declared.judge(refused).why


def test_a_second_upload_of_a_large_backup_is_refused_by_s3_and_cleans_up_its_parts(uploader, declared, tmp_path):
    """With the header, the policy lets the upload through and S3 refuses an existing key where the object would
    come into being: on completion (AWS: 412 Precondition Failed; moto does the same). The uploader then aborts
    the upload, which the role may do, so no parts are left waiting for the lifecycle rule."""
    dump = _file(tmp_path, f"db-{STAMP}.dump", 20 * MIB)
    uploader.upload(dump)
    with pytest.raises(SystemExit, match="exists already; backups are never overwritten"):
        uploader.upload(dump)
    again = uploader.requests[-1]
    assert [r.operation for r in again][-2:] == ["CompleteMultipartUpload", "AbortMultipartUpload"]
    assert all(declared.judge(request).allowed for request in again), [
        (r.operation, declared.judge(r).why) for r in again
    ]
    s3 = boto3.client("s3", region_name="us-east-1")
    assert len(s3.list_object_versions(Bucket=BUCKET, Prefix=f"backups/{dump.name}")["Versions"]) == 1
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_the_evaluator_reads_what_aws_documents():
    """The rules the verdicts above rest on, each on a request built by hand."""
    principal = "arn:aws:iam::123456789012:role/r"
    allow = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}

    def request(operation, **headers):
        return S3Request(operation, BUCKET, "k", {name.replace("_", "-"): value for name, value in headers.items()})

    def verdict(statement, req):
        statement = {"Principal": {"AWS": principal}, "Resource": f"arn:aws:s3:::{BUCKET}/*", **statement}
        return evaluate(req, principal, [allow], [{"Statement": [statement]}]).allowed

    creates = {
        "Effect": "Deny",
        "Action": "s3:PutObject",
        "Condition": {"Bool": {"s3:ObjectCreationOperation": "true"}},
    }
    assert not verdict(creates, request("PutObject")) and not verdict(creates, request("CompleteMultipartUpload"))
    assert verdict(creates, request("UploadPart")) and verdict(creates, request("CreateMultipartUpload"))
    null = {"Effect": "Deny", "Action": "s3:PutObject", "Condition": {"Null": {"s3:if-none-match": "true"}}}
    assert verdict(null, request("PutObject", if_none_match="*")) and not verdict(null, request("PutObject"))
    # The parts cannot carry the header: S3 never sets the key for them, whatever the client sends.
    assert not verdict(null, request("UploadPart", if_none_match="*"))
    negated = {"Effect": "Deny", "Action": "s3:*", "Condition": {"StringNotEquals": {"s3:if-none-match": "*"}}}
    assert not verdict(negated, request("GetObject")), "a negated operator holds for a missing key"
    assert verdict({"Effect": "Deny", "NotAction": "s3:Get*"}, request("GetObject"))
    assert not verdict({"Effect": "Deny", "Action": "S3:put?bject"}, request("PutObject")), "actions ignore case"
    assert verdict(
        {"Effect": "Deny", "Action": "*", "Principal": {"AWS": "arn:aws:iam::1:role/x"}}, request("PutObject")
    )
    with pytest.raises(NotImplementedError):
        verdict(
            {"Effect": "Deny", "Action": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
            request("GetObject"),
        )
    with pytest.raises(NotImplementedError):
        verdict(
            {"Effect": "Deny", "Action": "*", "Condition": {"StringEquals": {"s3:x-amz-acl": "x"}}},
            request("GetObject"),
        )
    assert not evaluate(request("DeleteObject"), principal, [], []).allowed, "nothing allows it: refused"
