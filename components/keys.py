"""The SSH key pair: the operator's own public key, or one generated and kept (encrypted) in Pulumi state."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls


@dataclass
class SshKeyArgs:
    public_key: str  # OpenSSH line; empty = generate an ed25519 key
    private_key: str  # the operator's private key (a secret config value) when public_key is given
    tags: dict[str, str]


class SshKey(pulumi.ComponentResource):
    def __init__(self, name: str, args: SshKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:index:SshKey", name, None, opts)
        self.generated: tls.PrivateKey | None = None
        if args.public_key:
            public_key: pulumi.Input[str] = args.public_key
            private_key: pulumi.Output[str] = pulumi.Output.secret(args.private_key)
        else:
            self.generated = tls.PrivateKey(
                f"{name}-key", algorithm="ED25519", opts=pulumi.ResourceOptions(parent=self)
            )
            public_key = self.generated.public_key_openssh
            private_key = pulumi.Output.secret(self.generated.private_key_openssh)
        self.private_key = private_key
        self.key_pair = aws.ec2.KeyPair(
            f"{name}-keypair",
            public_key=public_key,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"keyName": self.key_pair.key_name})
