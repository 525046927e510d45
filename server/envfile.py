"""The app's env file, from the host plan and the secrets: the single server's (its configure step's stdin) and
the app servers' (the scaled profile's SSM parameter). The variables and how each is computed are the env
contract's (config/envcontract.py); this module fills in its `Site` from the plan. Pure functions, no Pulumi.
"""

from __future__ import annotations

import dataclasses

from config.envcontract import PG_SSLMODE, SETTINGS_OVERLAY, Site, format_env_file, variables

from .host import HostPlan


def _from_plan(plan: HostPlan) -> Site:
    """The values that come from the host plan, the same on one server and on the app servers."""
    return Site(
        app=plan.app.name,
        settings_module=SETTINGS_OVERLAY,
        python_path=plan.paths.python_dir,
        static_root=plan.paths.static_root,
        media_root=plan.paths.media_root,
    )


def single_server_env_file(
    plan: HostPlan,
    *,
    secret_key: str,
    db_password: str,
    hosts: list[str],
    extra: dict[str, str],
    redis_password: str = "",
) -> str:
    """The env file on one server. Called inside an Output.apply with the secrets: the text stays in memory
    and travels on stdin."""
    # With the pooler on, the app talks to PgBouncer (loopback TCP, which every driver and URL parser takes);
    # PgBouncer holds the connections to PostgreSQL on 127.0.0.1:5432.
    site = dataclasses.replace(
        _from_plan(plan),
        secret_key=secret_key,
        db_password=db_password,
        db_host="127.0.0.1",
        db_port=str(plan.db.pooler_port) if plan.db.pooler else "5432",
        hosts=tuple(hosts),
        csrf_origins=(f"https://{plan.domain}",) if plan.tls else (),
        redis_url=f"redis://:{redis_password}@127.0.0.1:{plan.redis.port}/0" if plan.redis else "",
    )
    return format_env_file(variables(site, plan.app.env_prefix, "single"), extra)


def app_server_env_file(
    plan: HostPlan,
    *,
    secret_key: str,
    db_password: str,
    db_host: str,
    db_port: int | str,
    public_host: str,
    cdn_domain: str,
    media_bucket: str,
    region: str,
    extra: dict[str, str],
    redis_host: str = "",
    redis_password: str = "",
) -> str:
    """The scaled profile's env file: the same contract pointing at RDS (over TLS), plus where uploads go, and with
    `redis: true` ElastiCache (over TLS, its certificate verified: `ssl_cert_reqs=required`, which Celery asks for).
    Called inside an Output.apply with the secrets: the text goes only into the SecureString parameter."""
    site = dataclasses.replace(
        _from_plan(plan),
        secret_key=secret_key,
        db_password=db_password,
        db_host=db_host,
        db_port=str(db_port),
        db_options=f"?sslmode={PG_SSLMODE}",
        # Django answers for the site's name and CloudFront's: the load balancer serves only what CloudFront sends.
        hosts=tuple(dict.fromkeys([public_host, cdn_domain])),
        csrf_origins=tuple(f"https://{host}" for host in dict.fromkeys([public_host, cdn_domain])),
        media_bucket=media_bucket,
        media_domain=public_host,
        region=region,
        media_credentials_url=f"http://127.0.0.1:{plan.media_credentials_port}/media",
        media_token_file=plan.paths.media_token,
        redis_url=f"rediss://:{redis_password}@{redis_host}:{plan.redis.port}/0?ssl_cert_reqs=required"
        if plan.redis
        else "",
    )
    return format_env_file(variables(site, plan.app.env_prefix, "scaled"), extra)
