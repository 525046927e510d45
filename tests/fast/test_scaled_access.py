"""Who may do what on the scaled profile, judged by AWS's policy rules on the program's own declarations (the IAM
stand-in the app servers' guests meet, harness/standins/access.py, without a guest): the instance role does what a
boot does; the media role, the app's only credentials, reaches its uploads and nothing else."""

from __future__ import annotations

from functools import cache

import pytest

from harness.mockrun import ProgramRun, run_program
from harness.serverfiles import server_files_archive
from harness.standins.access import AccessControl
from harness.standins.awsapi import ACCOUNT

ASSETS, ARTIFACTS = "photofeed-assets", "photofeed-artifacts"
INSTANCE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/photofeed-app-role"
MEDIA_ROLE = f"arn:aws:iam::{ACCOUNT}:role/photofeed-media-role"


@cache
def program() -> ProgramRun:
    return run_program({"profile": "scaled"})


@pytest.fixture()
def access() -> AccessControl:
    return AccessControl(program())


def s3(access: AccessControl, role: str, method: str, bucket: str, key: str | None, **query: str) -> bool:
    return access.s3(role, method, f"{bucket}.s3.amazonaws.com", f"/{key or ''}", query, {}).allowed


def parameter(name: str) -> str:
    return program().named(f"photofeed-{name}").inputs["name"] + ":1"


def test_the_instance_role_does_what_a_boot_does(access):
    assert access.ssm(
        INSTANCE_ROLE, "AmazonSSM.GetParameter", {"Name": parameter("env"), "WithDecryption": True}
    ).allowed
    assert access.ssm(
        INSTANCE_ROLE, "AmazonSSM.GetParameter", {"Name": parameter("superuser"), "WithDecryption": True}
    ).allowed
    # The release's archive and the server files' (each boot fetches both), and nothing else of the bucket.
    for key in (program().named("photofeed-release").inputs["key"], server_files_archive(program()).inputs["key"]):
        assert s3(access, INSTANCE_ROLE, "GET", ARTIFACTS, key)
    assert not s3(access, INSTANCE_ROLE, "GET", ARTIFACTS, "other/thing")
    access.denials.clear()
    assert s3(access, INSTANCE_ROLE, "GET", ASSETS, None, prefix="static/")  # the static upload lists first
    assert s3(access, INSTANCE_ROLE, "PUT", ASSETS, "static/feed/site.0123456789ab.css")
    assert access.assume_role(INSTANCE_ROLE, MEDIA_ROLE).allowed
    assert access.autoscaling(
        INSTANCE_ROLE, "CompleteLifecycleAction", "photofeed-app-20260101000000000000000001"
    ).allowed
    assert access.denials == []


def test_the_instance_role_no_longer_writes_uploads_itself(access):
    assert not s3(access, INSTANCE_ROLE, "PUT", ASSETS, "media/photos/a.png")
    assert not s3(access, INSTANCE_ROLE, "DELETE", ASSETS, "media/photos/a.png")


def test_the_media_role_reaches_the_uploads_and_nothing_else(access):
    assert s3(access, MEDIA_ROLE, "PUT", ASSETS, "media/photos/a.png")
    assert s3(access, MEDIA_ROLE, "GET", ASSETS, "media/photos/a.png")
    assert s3(access, MEDIA_ROLE, "DELETE", ASSETS, "media/photos/a.png")
    assert s3(access, MEDIA_ROLE, "GET", ASSETS, None, prefix="media/photos/")
    refused = [
        s3(access, MEDIA_ROLE, "GET", ASSETS, None, prefix="static/"),
        s3(access, MEDIA_ROLE, "GET", ASSETS, None),
        s3(access, MEDIA_ROLE, "PUT", ASSETS, "static/feed/site.css"),
        s3(access, MEDIA_ROLE, "GET", ARTIFACTS, "releases/0123456789ab.tar.gz"),
        access.ssm(MEDIA_ROLE, "AmazonSSM.GetParameter", {"Name": parameter("env"), "WithDecryption": True}).allowed,
        access.ssm(MEDIA_ROLE, "AmazonSSM.GetParameter", {"Name": parameter("env")}).allowed,
        access.assume_role(MEDIA_ROLE, MEDIA_ROLE).allowed,
        access.autoscaling(MEDIA_ROLE, "CompleteLifecycleAction", "photofeed-app-20260101000000000000000001").allowed,
    ]
    assert refused == [False] * len(refused)


def test_only_the_app_servers_role_may_take_the_media_role(access):
    stranger = f"arn:aws:iam::{ACCOUNT}:role/someone-else"
    access.identity[stranger] = [
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}
    ]
    assert not access.assume_role(stranger, MEDIA_ROLE).allowed
    assert "trust" in access.denials[-1].action


def test_the_parameters_key_decrypts_for_the_app_servers_role_only(access):
    # AmazonSSMManagedInstanceCore lets any Session Manager instance read any parameter: the key is what keeps
    # a SecureString the app servers' own.
    other = f"arn:aws:iam::{ACCOUNT}:role/another-fleet"
    access.identity[other] = access.identity[INSTANCE_ROLE][-1:]  # the managed policy alone
    assert access.ssm(other, "AmazonSSM.GetParameter", {"Name": parameter("env")}).allowed
    assert not access.ssm(other, "AmazonSSM.GetParameter", {"Name": parameter("env"), "WithDecryption": True}).allowed
