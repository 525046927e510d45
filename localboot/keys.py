"""SSH key pairs for test guests.

Why: on EC2 the instance receives the key pair's public key through the metadata service;
here the same public key line goes into the NoCloud seed (``public-keys``), and the private
half is what the deployer (or test) logs in with. A fresh ed25519 pair per test run means no
key material lives in the repository.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def generate_ed25519_keypair(comment: str = "localboot") -> tuple[str, str]:
    """Return ``(private key in OpenSSH PEM format, "ssh-ed25519 AAAA... comment")``."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.OpenSSH,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    public = (
        key.public_key()
        .public_bytes(
            encoding=serialization.Encoding.OpenSSH,
            format=serialization.PublicFormat.OpenSSH,
        )
        .decode("ascii")
    )
    return private, f"{public} {comment}" if comment else public
