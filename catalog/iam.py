"""IAM documents shared by components."""

from __future__ import annotations

import json

# Lets EC2 instances take a role (through an instance profile): the single server's backup writer and the
# scaled profile's app servers.
EC2_ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)
