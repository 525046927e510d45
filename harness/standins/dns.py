"""The VPC's resolver, for guests on the bridge: `*.amazonaws.com` (AWS's API endpoints, the RDS endpoint, the S3
host the SSM agent comes from) answers with the bridge's own address, where the stand-ins listen; every other
name goes to the host's resolver (the package mirror, PyPI). dnsmasq, in the foreground, for the run."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from localboot import host_nameserver

from .lifetime import die_with_parent

AWS_DOMAIN = "amazonaws.com"


class Resolver:
    def __init__(self, address: str, log: Path) -> None:
        self.address, self.log = address, log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Resolver:
        binary = shutil.which("dnsmasq")
        if binary is None:
            raise RuntimeError("dnsmasq is not installed (Debian's dnsmasq-base; scripts/test.sh installs it)")
        self.process = subprocess.Popen(
            [
                binary,
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                f"--listen-address={self.address}",
                "--bind-interfaces",
                "--except-interface=lo",
                "--port=53",
                "--no-resolv",
                "--no-hosts",
                f"--server={host_nameserver()}",
                f"--address=/{AWS_DOMAIN}/{self.address}",
                "--cache-size=1000",
                "--user=root",
                f"--log-facility={self.log}",
                "--log-queries",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dnsmasq exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"dnsmasq does not answer on {self.address}:53")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.5)
            # A query for ssm.amazonaws.com, type A: any answer at all means dnsmasq is up.
            query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ssm\x09amazonaws\x03com\x00\x00\x01\x00\x01"
            try:
                probe.sendto(query, (self.address, 53))
                return probe.recv(512)[:2] == b"\x12\x34"
            except OSError:
                return False

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
