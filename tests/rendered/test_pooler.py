"""The connection pooler (PgBouncer) and compression: what docs/performance.md relies on."""

from __future__ import annotations

import pytest

from config.settings import load_settings
from rendered.helpers import (
    CONFIGS,
    PUBLIC_IP,
    Sent,
    installed,
    installed_files,
    location,
    main_server,
    parse_ini,
    parse_nginx,
    plan_for,
    site_for,
    user_data_doc,
)
from server.host import (
    plan_host,
    render_pgbouncer_config,
)

# Every setting PgBouncer 1.18 (Debian 12) and 1.22 (Ubuntu 24.04) both know, in the sections we write.
PGBOUNCER_KEYS = {
    "listen_addr",
    "listen_port",
    "unix_socket_dir",
    "auth_type",
    "auth_file",
    "pool_mode",
    "server_reset_query",
    "server_login_retry",
    "default_pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "reserve_pool_timeout",
    "max_db_connections",
    "max_client_conn",
    "query_wait_timeout",
    "server_idle_timeout",
    "server_lifetime",
    "ignore_startup_parameters",
    "log_connections",
    "log_disconnections",
    "log_pooler_errors",
}


@pytest.mark.parametrize("config_id", CONFIGS)
def test_pgbouncer_ini(config_id: str) -> None:
    plan = plan_for(config_id)
    ini = parse_ini(render_pgbouncer_config(plan))
    assert set(ini) == {"databases", "pgbouncer"}
    settings = ini["pgbouncer"]
    assert set(settings) <= PGBOUNCER_KEYS, set(settings) - PGBOUNCER_KEYS
    # Loopback only, password-checked, and the pool mode that is safe for everything Django does.
    assert settings["listen_addr"] == "127.0.0.1" and settings["listen_port"] == "6432"
    # md5 from the app over loopback (SCRAM's PBKDF2 per connection is measured to cost 30 % of throughput);
    # PostgreSQL keeps the role's password as SCRAM (password_encryption, test_postgres_dropin).
    assert settings["auth_type"] == "md5" and settings["auth_file"] == "/etc/pgbouncer/userlist.txt"
    assert settings["pool_mode"] == "session" and settings["server_reset_query"] == "DISCARD ALL"
    assert ini["databases"] == {"*": "host=127.0.0.1 port=5432"}
    # Every sync worker can hold a connection, with room for migrate beside them, within max_connections
    # (which keeps 3 for superusers: backups, the operator).
    pool, most = int(settings["default_pool_size"]), int(settings["max_db_connections"])
    assert pool >= plan.workers + 1 and most >= pool
    assert most + 3 + 2 <= int(plan.db.postgres["max_connections"])


def test_env_contract_points_at_the_pooler_when_on() -> None:
    from server.envfile import single_server_env_file

    for pooler, port in ((True, "6432"), (False, "5432")):
        settings = load_settings({"dbPooler": pooler}, project="djangoship", stack="dev")
        plan = plan_host(settings)
        env = single_server_env_file(plan, secret_key="k", db_password="pw", hosts=[PUBLIC_IP], extra={})
        assert f"DJANGO_DB_PORT='{port}'" in env and "DJANGO_DB_HOST='127.0.0.1'" in env
        assert f"DATABASE_URL='postgres://photofeed:pw@127.0.0.1:{port}/photofeed'" in env
    assert load_settings({}, project="djangoship", stack="dev").db_pooler is True


def test_configure_host_installs_the_pooler_only_when_on(sent: dict[str, Sent]) -> None:
    script = sent["http"].scripts["configure-host"]
    ini = render_pgbouncer_config(plan_for("debian-13-t2.micro"))
    assert installed(script, "/etc/pgbouncer/pgbouncer.ini") == ini
    # The auth file: root:postgres 0640, from a variable through bash builtins — no secret on a command line.
    assert (
        'install_file /etc/pgbouncer/userlist.txt 0640 root postgres < <(printf \'"%s" "%s"\\n\' '
        "'photofeed' \"${db_password//"
    ) in script
    assert installed_files(script)["/etc/pgbouncer/pgbouncer.ini"][0] == "0640 root postgres"
    off = sent["nopooler"].scripts["configure-host"]
    assert (
        "/etc/pgbouncer/pgbouncer.ini" not in installed_files(off)
        and "systemctl disable --now pgbouncer.service" in off
    )
    assert "pgbouncer" in user_data_doc("debian-13-t2.micro")["packages"]


@pytest.mark.parametrize("config_id", CONFIGS)
def test_compression_on_the_fly_only_for_proxied_pages(config_id: str) -> None:
    main = main_server(parse_nginx(site_for(config_id, https=False)))
    assert main.arg_lists("gzip") == [["on"]] and main.arg_lists("gzip_comp_level") == [["1"]]
    # text/html is always compressed when gzip is on; JSON is the only type added.
    assert main.arg_lists("gzip_types") == [["application/json"]]
    for path in ("/static/", "/media/"):
        assert location(main, path).arg_lists("gzip") == [["off"]], path
    assert location(main, "/static/").arg_lists("gzip_static") == [["on"]]
