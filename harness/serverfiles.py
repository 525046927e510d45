"""What an app server of the scaled profile is given, as the program under mocks declared it: the launch
template's user-data and the server files' archive in the artifacts bucket (server/appserver.py's
ServerFiles), for the tests that read or validate those files."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile

import yaml

from harness.mockrun import ProgramRun, Registered

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
BUCKET_OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"


def user_data_document(run: ProgramRun) -> str:
    """The launch template's first-boot document (`#cloud-config`), gunzipped where the program gzipped it."""
    raw = base64.b64decode(run.one(LAUNCH_TEMPLATE).inputs["userData"])
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def written_files(document: str) -> dict[str, str]:
    """cloud-init's write_files, path → content."""
    return {entry["path"]: entry["content"] for entry in yaml.safe_load(document)["write_files"]}


def server_files_archive(run: ProgramRun) -> Registered:
    (archive,) = [o for o in run.of_type(BUCKET_OBJECT) if o.inputs["key"].startswith("servers/")]
    return archive


def server_files(run: ProgramRun) -> dict[str, str]:
    """The server files' archive, path → content."""
    data = base64.b64decode(server_files_archive(run).inputs["contentBase64"])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {"/" + m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]


def app_server_files(run: ProgramRun) -> dict[str, str]:
    """Every file an app server is given: its user-data's and its server files'."""
    return written_files(user_data_document(run)) | server_files(run)
