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


class HostKey(pulumi.ComponentResource):
    """The server's SSH host key (ed25519), generated here so that the program knows it before it ever
    connects: every remote step after the first pins it (`host_key`), and the operator's verbs pin the
    `sshHostKey` output. Kept encrypted in state, like the login key.

    Why generated here and handed over by the connect step, not read from the server (trust on first use) nor
    sent in user-data: user-data is readable by any process on the server (the metadata service) and in the
    console, so a private key cannot go there. A channel the instance alone can read (an SSM SecureString or
    a KMS-encrypted blob fetched with an instance role) would need a role on every server, the AWS API and
    the metadata service at first boot, and gives the key to every process able to reach that service. So the
    first connection — the connect step, which carries nothing but this key on stdin —
    is the one connection that trusts whoever answers at the address, exactly as trust on first use would;
    from then on every step, on this and on any replacement server, is refused by anything but this key.
    To rotate it: `pulumi up --replace` on this resource (the connect step then installs the new one)."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:index:HostKey", name, None, opts)
        key = tls.PrivateKey(f"{name}-host-key", algorithm="ED25519", opts=pulumi.ResourceOptions(parent=self))
        self.private_key: pulumi.Output[str] = pulumi.Output.secret(key.private_key_openssh)
        # "ssh-ed25519 AAAA…", as pulumi-command's `host_key` and a known_hosts line take it.
        self.public_key = key.public_key_openssh.apply(lambda line: " ".join(line.split()[:2]))
        self.register_outputs({"publicKey": self.public_key})
