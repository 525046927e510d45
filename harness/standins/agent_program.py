#!/usr/bin/python3
"""amazon-ssm-agent, stood in for (djangoship tests): Run Command's part on an app server.

Asks ec2messages.<region>.amazonaws.com (the harness's channel: harness/standins/runcommand.py) for this instance's
commands, signed with the instance role's credentials from the metadata service (root only, as the agent runs),
runs each in a thread as root with `sh` (as AWS's agent runs AWS-RunShellScript), within its timeout, and sends
back its output and exit status. Runs on the guest's own Python with Debian's botocore; nothing else.
"""

import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.request

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

IMDS = "http://169.254.169.254/latest"


def metadata(path):
    token_request = urllib.request.Request(
        f"{IMDS}/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    )
    token = urllib.request.urlopen(token_request, timeout=5).read().decode()
    request = urllib.request.Request(f"{IMDS}/meta-data/{path}", headers={"X-aws-ec2-metadata-token": token})
    return urllib.request.urlopen(request, timeout=5).read().decode()


class Channel:
    def __init__(self):
        self.region = metadata("placement/region")
        self.instance_id = metadata("instance-id")
        self.endpoint = f"https://ec2messages.{self.region}.amazonaws.com/"
        self.session = boto3.Session(region_name=self.region)

    def call(self, action, payload, timeout=40):
        body = json.dumps(payload)
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"EC2MessageDeliveryService.{action}"}
        request = AWSRequest(method="POST", url=self.endpoint, data=body, headers=headers)
        credentials = self.session.get_credentials().get_frozen_credentials()
        SigV4Auth(credentials, "ec2messages", self.region).add_auth(request)
        signed = urllib.request.Request(self.endpoint, data=body.encode(), headers=dict(request.headers), method="POST")
        with urllib.request.urlopen(signed, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")


def run(channel, message):
    command_id, timeout = message["CommandId"], int(message["TimeoutSeconds"])
    print(f"running command {command_id} (timeout {timeout} s)", flush=True)
    folder = tempfile.mkdtemp(prefix=f"{command_id}-", dir="/var/lib/amazon/ssm")
    script = os.path.join(folder, "_script.sh")
    with open(script, "w") as handle:
        handle.write("\n".join(message["Commands"]) + "\n")
    try:
        result = subprocess.run(
            ["sh", script], cwd=folder, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        status = "Success" if result.returncode == 0 else "Failed"
        code, stdout, stderr = result.returncode, result.stdout, result.stderr
    except subprocess.TimeoutExpired as expired:
        status, code = "TimedOut", 124
        stdout, stderr = expired.stdout or b"", expired.stderr or b""
    reply = {
        "CommandId": command_id,
        "Status": status,
        "ResponseCode": code,
        "Stdout": stdout.decode(errors="replace"),
        "Stderr": stderr.decode(errors="replace"),
    }
    for _ in range(10):
        try:
            channel.call("SendReply", reply)
            break
        except OSError as error:
            print(f"reply for {command_id} failed: {error}; again", flush=True)
            time.sleep(2)
    print(f"command {command_id}: {status} (exit {code})", flush=True)


def main():
    os.makedirs("/var/lib/amazon/ssm", mode=0o700, exist_ok=True)
    channel = None
    while True:
        try:
            channel = channel or Channel()
            for message in channel.call("GetMessages", {"WaitSeconds": 10}).get("Messages", []):
                threading.Thread(target=run, args=(channel, message), daemon=True).start()
        except Exception as error:  # a booting instance: no credentials or no network yet
            print(f"amazon-ssm-agent stand-in: {error}; again in 2 s", flush=True)
            time.sleep(2)


if __name__ == "__main__":
    main()
