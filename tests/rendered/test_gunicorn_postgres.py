"""gunicorn's settings (Python, the configured workers) and PostgreSQL's drop-in."""

from __future__ import annotations

import re
from typing import Any

import pytest

from catalog.offerings import default_workers
from config.settings import load_settings
from rendered.helpers import CONFIGS, plan_for
from server.files import render_python_modules
from server.host import (
    render_gunicorn_config,
    render_postgres_config,
)


@pytest.mark.parametrize("config_id", CONFIGS)
def test_gunicorn_config_is_python_with_the_configured_workers(config_id: str) -> None:
    plan = plan_for(config_id)
    settings = load_settings(CONFIGS[config_id], project="djangoship", stack="dev")
    namespace: dict[str, Any] = {}
    # gunicorn itself exec()s this file; it is rendered from our own template (assignments only).
    exec(compile(render_gunicorn_config(plan), "gunicorn.conf.py", "exec"), namespace)
    expected = settings.gunicorn_workers or default_workers(settings.instance_type)
    assert namespace["workers"] == expected
    if config_id == "t3.medium-9-workers":
        assert namespace["workers"] == 9
    if config_id == "debian-13-t2.micro":
        assert namespace["workers"] == 3  # the seed tutorial's three
    # The deployer's wrapper, which imports the app's own WSGI module (and answers the health path).
    assert namespace["wsgi_app"] == "djangoship_wsgi:application"
    assert f'importlib.import_module("{plan.app.wsgi_module}")' in render_python_modules(plan)["djangoship_wsgi.py"]
    assert namespace["worker_class"] == "sync"


@pytest.mark.parametrize("config_id", CONFIGS)
def test_postgres_dropin(config_id: str) -> None:
    lines = [line for line in render_postgres_config(plan_for(config_id)).splitlines() if line and line[0] != "#"]
    values = {}
    for line in lines:
        match = re.fullmatch(r"([a-z_]+) = ('[^']*'|[0-9]+(?:[kMG]B)?)", line)
        assert match, f"not a postgresql.conf setting: {line!r}"
        values[match[1]] = match[2]
    assert values["listen_addresses"] == "'localhost'"
    assert values["password_encryption"] == "'scram-sha-256'"
    assert values["timezone"] == "'UTC'"  # Django skips SET TIME ZONE on each new connection
    assert int(values["max_connections"]) >= plan_for(config_id).workers + 5
