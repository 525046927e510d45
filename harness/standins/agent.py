"""The SSM agent package the app servers' boot downloads from AWS's S3 (`amazon-ssm-<region>` bucket): a stand-in
.deb of the same name and unit, served from the S3 stand-in at the same key, so the boot's own curl + install run.

Its service does Run Command's part on the instance: it asks for the commands sent to this instance (over the
harness's own channel in place of ec2messages, signed with the instance role's credentials: see
harness/standins/runcommand.py), runs each as root with `sh` as AWS's agent runs AWS-RunShellScript, and reports its
output and exit status. Session Manager's sessions cannot be stood in for here.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

UNIT = """\
[Unit]
Description=amazon-ssm-agent (djangoship test stand-in: Run Command only, no Session Manager)
After=network-online.target

[Service]
Type=simple
ExecStart=/usr/bin/amazon-ssm-agent
Restart=always

[Install]
WantedBy=multi-user.target
"""

PROGRAM = (Path(__file__).with_name("agent_program.py")).read_text()


def agent_package(arch: str) -> bytes:
    """The stand-in amazon-ssm-agent .deb for `arch` (amd64, arm64), built with dpkg-deb."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder, "pkg")
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN/control").write_text(
            "Package: amazon-ssm-agent\nVersion: 3.3.0.0-standin\nSection: admin\nPriority: optional\n"
            f"Architecture: {arch}\nMaintainer: djangoship tests <tests@localhost>\n"
            "Description: stand-in for the AWS SSM agent (tests only)\n"
        )
        unit = root / "lib/systemd/system/amazon-ssm-agent.service"
        unit.parent.mkdir(parents=True)
        unit.write_text(UNIT)
        program = root / "usr/bin/amazon-ssm-agent"
        program.parent.mkdir(parents=True)
        program.write_text(PROGRAM)
        program.chmod(0o755)
        output = Path(folder, "agent.deb")
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "--build", str(root), str(output)], check=True, capture_output=True
        )
        return output.read_bytes()


def agent_location(region: str, arch: str) -> tuple[str, str]:
    """(bucket, key) of the package, as the boot's URL names it."""
    return f"amazon-ssm-{region}", f"latest/debian_{arch}/amazon-ssm-agent.deb"
