"""Profile `scaled`: RDS for PostgreSQL, app servers behind a load balancer, static and media on S3 + CloudFront."""

from __future__ import annotations

from typing import Any

import pulumi

from components.release import Release
from components.settings import Settings


def build(settings: Settings, release: Release) -> dict[str, Any]:
    raise pulumi.RunError("profile = 'scaled' is not available yet")
