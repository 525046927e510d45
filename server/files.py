"""Every file that lands on a server, declared once: its path (server/layout.py), mode, owner, template, when it
arrives, and what it notifies when it changes — the units it restarts or reloads, those it links to start at boot
(Ansible's `notify` and handlers). Pure data and rendering, no Pulumi.

One list drives every way a file reaches a server: the first-boot document of either profile (`FIRST_BOOT`), and
after it (`AFTER_BOOT`) the single server's configure step — which installs each file where it differs and runs
what the changed ones notify — or an app server's files archive (server/appserver.py). A file whose content only
the server knows (a secret from the configure step's stdin, PgBouncer's version) is declared too, with the configure
include that writes it: what it notifies stays declared here. PostgreSQL's settings, in the folder of the cluster the
server has, are written by scripts/configure/server-side-files.sh.j2, and scripts/configure/postgresql.sh.j2 decides
between a reload and a restart (PostgreSQL says which settings need one).

A re-run installs nothing that is already there (same bytes, mode and owner) and restarts a unit only while one of
the files that notify it is newer than its start: judged from the server, so a run that died half-way is completed
by the next one, and a run with nothing new does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config.envcontract import SETTINGS_OVERLAY

from .appfiles import APP_FILES_MARKER
from .host import APP_MODULES, SHIPPED_STATIC, UVICORN_WORKER, HostPlan, render, without_comment_lines
from .layout import SYSTEMD_DIR

FIRST_BOOT = "first boot"  # in the server's first-boot document (user-data): there before anything runs
AFTER_BOOT = "after boot"  # one server: the configure step (with every deploy); an app server: its files archive
PROJECT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServerFile:
    path: str
    template: str  # under cloud-init/; "" when `written_by` writes it
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"
    stage: str = AFTER_BOOT
    restarts: tuple[str, ...] = ()  # units restarted once the file is newer than their start
    reloads: tuple[str, ...] = ()  # units reloaded then
    enables: tuple[str, ...] = ()  # units linked to start at boot, with it
    note: str = ""  # why the file is there, above its entry in the single server's first-boot document
    without_comments: bool = False  # its comment lines left out (a first-boot document near EC2's 16 KiB)
    values: Mapping[str, object] = field(default_factory=dict)  # the template's values beyond the plan's
    copied_from: str = ""  # a file of the project, copied as it is (no template)
    written_by: str = ""  # the configure include that writes it: its content or path is known only on the server

    def text(self, plan: HostPlan, **context: object) -> str:
        if self.copied_from:
            return (PROJECT / self.copied_from).read_text()
        text = render(self.template, plan, **context, **self.values)
        return without_comment_lines(text) if self.without_comments else text


def unit_file(name: str) -> str:
    return f"{SYSTEMD_DIR}/{name}"


def dropin(unit: str, name: str) -> str:
    return f"{SYSTEMD_DIR}/{unit}.d/{name}"


def server_files(plan: HostPlan) -> list[ServerFile]:
    """What the plan's server receives, in the order each document or step installs it."""
    app, paths, one_server = plan.app.name, plan.paths, not plan.app_server
    metadata_block = f"{app}-metadata-block.service"
    # A new environment or overlay reaches the app through these: gunicorn (through {app}-activate) and its processes.
    app_units = ("gunicorn.service", *(f"{app}-{name}.service" for name, _ in plan.app.processes))
    files: list[ServerFile] = []
    if one_server:
        files += [
            ServerFile(
                f"/etc/apt/apt.conf.d/50{app}-firstboot",
                "apt/firstboot.conf.j2",
                stage=FIRST_BOOT,
                note="For the package install above only (written before it, removed by the firstboot script): no "
                "Recommends (sysstat, shared-mime-info, python3-gi… ~15 packages and their triggers, none of them used "
                "here) and no translated package descriptions in `apt-get update`.",
            ),
            ServerFile(
                f"/etc/postgresql-common/createcluster.d/60-{app}.conf",
                "postgresql/djangoship.conf.j2",
                stage=FIRST_BOOT,
                without_comments=True,
                note="PostgreSQL's settings (as configure writes them) for the cluster its package creates: no "
                "restart then.",
            ),
        ]
    files += [
        ServerFile(f"/etc/ssh/sshd_config.d/60-{app}.conf", "ssh/sshd.conf.j2", stage=FIRST_BOOT),
        ServerFile("/etc/apt/apt.conf.d/20auto-upgrades", "apt/auto-upgrades.j2", stage=FIRST_BOOT),
        ServerFile(unit_file("gunicorn.socket"), "systemd/gunicorn.socket.j2", stage=FIRST_BOOT, without_comments=True),
        ServerFile(
            unit_file("gunicorn.service"), "systemd/gunicorn.service.j2", stage=FIRST_BOOT, without_comments=True
        ),
        # A crash loop ends (why, and why not in the unit: the drop-in's own comment).
        ServerFile(dropin("gunicorn.service", "start-limit.conf"), "systemd/gunicorn-start-limit.conf.j2"),
    ]
    if one_server:
        # Every service the site stands on restarts itself after a crash (why: the drop-in's own comment)…
        healing = ["postgresql@.service", "nginx.service"] + (["pgbouncer.service"] if plan.db.pooler else [])
        files += [ServerFile(dropin(unit, "self-healing.conf"), "systemd/self-healing.conf.j2") for unit in healing]
        # …and gunicorn gives up on a crash loop for a minute, not for ever (why: the drop-in's own comment).
        files += [
            ServerFile(dropin("gunicorn.service", "retry.conf"), "systemd/gunicorn-retry.conf.j2"),
            ServerFile(unit_file(f"{app}-gunicorn-gave-up.service"), "systemd/gunicorn-gave-up.service.j2"),
            ServerFile(unit_file(f"{app}-gunicorn-retry.timer"), "systemd/gunicorn-retry.timer.j2"),
            ServerFile(unit_file(f"{app}-gunicorn-retry.service"), "systemd/gunicorn-retry.service.j2"),
        ]
    # The instance's credentials stay root's: no user but root reaches the metadata service. An app server has it
    # from its first boot; the single server's build loads the same rules itself until configure has.
    stage, comments = (AFTER_BOOT, False) if one_server else (FIRST_BOOT, True)
    files += [
        ServerFile(
            paths.metadata_block,
            "nftables/metadata-block.nft.j2",
            stage=stage,
            restarts=(metadata_block,),
            without_comments=comments,
        ),
        ServerFile(
            unit_file(metadata_block),
            "systemd/metadata-block.service.j2",
            stage=stage,
            enables=(metadata_block,),
            without_comments=comments,
        ),
        ServerFile(
            dropin("nftables.service", f"{app}-metadata-block.conf"),
            "systemd/nftables-metadata-block.conf.j2",
            stage=stage,
            without_comments=comments,
        ),
        ServerFile(
            f"{paths.config_dir}/placeholder.conf",
            "nginx/placeholder.conf.j2",
            stage=FIRST_BOOT,
            without_comments=not one_server,
            note="Shown by nginx until the first deploy has finished.",
        ),
    ]
    if not one_server:
        files += [
            ServerFile(paths.boot, "scaled/boot.sh.j2", "0755", stage=FIRST_BOOT, without_comments=True),
            ServerFile(paths.aws, "scaled/aws-helper.py.j2", "0755", stage=FIRST_BOOT, without_comments=True),
        ]
    files.append(
        ServerFile(paths.firstboot, "scripts/firstboot.sh.j2", "0755", stage=FIRST_BOOT, without_comments=True)
    )
    if one_server:
        files.append(
            ServerFile(
                paths.pg_upgrade,
                "scripts/pg-upgrade.sh.j2",
                "0755",
                stage=FIRST_BOOT,
                without_comments=True,
                note="A PostgreSQL cluster of an older major version on the data volume (another image before): "
                "upgraded.",
            )
        )
        files += _data_services(plan, app_units)
    files += _web(plan, app_units)
    if one_server:
        files += _backups(plan)
    else:
        files += _app_server(plan)
    files += _processes(plan)
    return files


def _data_services(plan: HostPlan, app_units: tuple[str, ...]) -> list[ServerFile]:
    """The single server's environment, PgBouncer and Redis (PostgreSQL's own settings: scripts/configure/)."""
    app, paths = plan.app.name, plan.paths
    configure = "scripts/configure/server-side-files.sh.j2"
    files = [
        ServerFile(paths.env_file, "", "0640", group=app, restarts=app_units, written_by="scripts/configure/env.sh.j2")
    ]
    if plan.db.pooler:
        pooler = "pgbouncer.service"
        files += [
            ServerFile(
                "/etc/pgbouncer/userlist.txt", "", "0640", group="postgres", reloads=(pooler,), written_by=configure
            ),
            ServerFile(
                "/etc/pgbouncer/pgbouncer.ini",
                "pgbouncer/pgbouncer.ini.j2",
                "0640",
                group="postgres",
                restarts=(pooler,),
                enables=(pooler,),
            ),
            # Its stop signal depends on the installed PgBouncer's version.
            ServerFile(dropin(pooler, f"{app}.conf"), "", restarts=(pooler,), written_by=configure),
        ]
    if plan.redis:
        redis = "redis-server.service"
        files += [
            ServerFile(
                f"/etc/redis/{app}-password.conf", "", "0640", group="redis", restarts=(redis,), written_by=configure
            ),
            ServerFile(
                f"/etc/redis/{app}.conf",
                "redis/redis.conf.j2",
                "0640",
                group="redis",
                restarts=(redis,),
                enables=(redis,),
            ),
            ServerFile(dropin(redis, f"{app}.conf"), "redis/redis-server.conf.j2", restarts=(redis,)),
            ServerFile(dropin(redis, "self-healing.conf"), "systemd/self-healing.conf.j2"),
        ]
    return files


def _web(plan: HostPlan, app_units: tuple[str, ...]) -> list[ServerFile]:
    """What gunicorn and the deploy run with, on both profiles; nginx's site."""
    app, paths, one_server = plan.app.name, plan.paths, not plan.app_server
    modules = [
        ServerFile(f"{paths.python_dir}/{module}.py", f"python/{module}.py.j2", restarts=app_units)
        for module in (SETTINGS_OVERLAY, plan.server_module, *([UVICORN_WORKER] if plan.app.asgi_module else []))
    ]
    modules += [
        ServerFile(f"{paths.python_dir}/{APP_MODULES}.py", "", copied_from="config/appmodules.py", restarts=app_units),
        ServerFile(
            f"{paths.python_dir}/{SHIPPED_STATIC}.py", "", copied_from="server/shippedstatic.py", restarts=app_units
        ),
    ]
    files = [
        *modules,
        ServerFile(
            f"{paths.config_dir}/gunicorn.conf.py", "gunicorn/gunicorn.conf.py.j2", restarts=("gunicorn.service",)
        ),
    ]
    if one_server:
        files.append(ServerFile(paths.manage, "scripts/manage.sh.j2", "0755"))
    else:
        # The single server's manage wrapper, unchanged, behind a thin one that routes the deploy's `migrate` through
        # the once-per-release gate.
        files += [
            ServerFile(paths.django_manage, "scripts/manage.sh.j2", "0755"),
            ServerFile(paths.manage, "scaled/manage.sh.j2", "0755"),
        ]
    files += [
        ServerFile(paths.activate, "scripts/activate.sh.j2", "0755"),
        # The unit that runs a release on its own socket while {app}-activate checks it, before the switch.
        ServerFile(unit_file(f"{app}-release-check@.service"), "systemd/release-check.service.j2"),
    ]
    if one_server:
        # nginx holds a descriptor per client, upstream connection and open static file: a new limit needs a new master.
        files.append(
            ServerFile(
                dropin("nginx.service", f"{app}.conf"), "systemd/nginx-limits.conf.j2", restarts=("nginx.service",)
            )
        )
        # The site (plain HTTP until the certificate is there) is nginx -t'ed, then reloaded, by its include.
        files.append(
            ServerFile(f"{paths.config_dir}/nginx-site.conf", "", written_by="scripts/configure/nginx-site.sh.j2")
        )
        if plan.tls:
            # Renewal runs from the packaged certbot timer; nginx picks up a renewed certificate on reload.
            files.append(
                ServerFile("/etc/letsencrypt/renewal-hooks/deploy/reload-nginx", "certbot/reload-nginx.sh.j2", "0755")
            )
    else:
        files.append(ServerFile(f"{paths.config_dir}/nginx-site.conf", "scaled/nginx-site.conf.j2"))
    return files


def _backups(plan: HostPlan) -> list[ServerFile]:
    """The single server's nightly backup and its restore."""
    app, paths = plan.app.name, plan.paths
    files = [
        ServerFile(paths.backup, "backup/backup.sh.j2", "0755"),
        ServerFile(paths.restore, "backup/restore.sh.j2", "0755"),
        ServerFile(unit_file(f"{app}-backup.service"), "backup/backup.service.j2"),
        ServerFile(unit_file(f"{app}-backup.timer"), "backup/backup.timer.j2", enables=(f"{app}-backup.timer",)),
    ]
    if plan.backup_bucket:
        files += [
            ServerFile(paths.s3backup, "backup/s3backup.py.j2", "0755"),
            ServerFile(f"{paths.config_dir}/backup.conf", "backup/backup.conf.j2"),
        ]
    return files


def _app_server(plan: HostPlan) -> list[ServerFile]:
    """An app server's own: its deploy, the once-per-release gate, the superuser step, the media credentials."""
    app, paths = plan.app.name, plan.paths
    return [
        ServerFile(paths.release_once, "scaled/release-once.sh.j2", "0755"),
        ServerFile(paths.deploy, "scaled/deploy.sh.j2", "0755"),
        ServerFile(paths.superuser, "scaled/superuser.sh.j2", "0755"),
        ServerFile(paths.media_credentials, "scaled/media-credentials.py.j2", "0755"),
        ServerFile(
            unit_file(f"{app}-media-credentials.service"),
            "systemd/media-credentials.service.j2",
            enables=(f"{app}-media-credentials.service",),
        ),
    ]


def _processes(plan: HostPlan) -> list[ServerFile]:
    """app.processes and app.schedules: a unit each, and the script that restarts them (docs/deploying.md)."""
    app, paths, one_server = plan.app.name, plan.paths, not plan.app_server
    if not one_server and not (plan.app.processes or plan.app.schedules):
        return []
    files = [ServerFile(paths.restart_processes, "scripts/processes.sh.j2", "0755")]
    if not one_server:
        files.append(ServerFile(paths.schedule_once, "scaled/schedule-once.sh.j2", "0755"))
    for name, command in plan.app.processes:
        unit = f"{app}-{name}.service"
        values = {"name": name, "exec_start": command, "command": _as_written(command, plan)}
        files.append(ServerFile(unit_file(unit), "systemd/process.service.j2", enables=(unit,), values=values))
    for name, schedule, command in plan.app.schedules:
        job = {"name": name, "schedule": schedule, "exec_start": command, "command": _as_written(command, plan)}
        timer = f"{app}-{name}.timer"
        files += [
            ServerFile(
                unit_file(f"{app}-{name}.service"), "systemd/schedule.service.j2", values=job | {"catch_up": False}
            ),
            ServerFile(unit_file(timer), "systemd/schedule.timer.j2", enables=(timer,), values=job),
        ]
        if not one_server:
            # The catch-up of a run missed while no server ran the job, started by the boot without waiting for it: a
            # long job must not hold the boot past its lifecycle hook, and it runs as hardened as the timer's.
            files.append(
                ServerFile(
                    unit_file(f"{app}-{name}-catch-up.service"),
                    "systemd/schedule.service.j2",
                    values=job | {"catch_up": True},
                )
            )
    # Their list: what the operator's verbs read (status, move), and on one server what configure removes a unit that
    # left the config by (scripts/configure/units-removed.sh.j2).
    files.append(ServerFile(f"{paths.config_dir}/units", "systemd/units.list.j2"))
    return files


def _as_written(exec_line: str, plan: HostPlan) -> str:
    """The command as the config wrote it, for the units' comments."""
    python = f"{plan.paths.current_dir}/venv/bin/python {plan.paths.current_dir}/manage.py "
    return exec_line.replace(python, "manage.py ").replace(f"{plan.paths.current_dir}/venv/bin/", "")


@dataclass(frozen=True)
class Rendered:
    """A declared file with its text, as a document or a step carries it."""

    file: ServerFile
    text: str

    @property
    def path(self) -> str:
        return self.file.path

    @property
    def mode(self) -> str:
        return self.file.mode


def rendered(plan: HostPlan, stage: str, **context: object) -> list[Rendered]:
    """The plan's files of one stage that the program renders (not those the server writes itself), with their text."""
    return [
        Rendered(file, file.text(plan, **context))
        for file in server_files(plan)
        if file.stage == stage and not file.written_by
    ]


def notified(files: list[ServerFile], kind: str) -> dict[str, list[str]]:
    """unit → the paths whose change restarts it (kind "restarts") or reloads it ("reloads"), in the list's order."""
    found: dict[str, list[str]] = {}
    for file in files:
        for unit in getattr(file, kind):
            found.setdefault(unit, []).append(file.path)
    return found


def enabled(files: list[ServerFile]) -> list[str]:
    """The units the files link to start at boot, in the list's order."""
    return list(dict.fromkeys(unit for file in files for unit in file.enables))


def systemd_units(files: list[ServerFile]) -> list[str]:
    """The units whose files or drop-ins are among `files` (template units left out): what a reload must re-read."""
    units = []
    for file in files:
        if file.path.startswith(SYSTEMD_DIR + "/"):
            unit = file.path.removeprefix(SYSTEMD_DIR + "/").split("/")[0].removesuffix(".d")
            if "@." not in unit:
                units.append(unit)
    return list(dict.fromkeys(units + enabled(files)))


def render_python_modules(plan: HostPlan) -> dict[str, str]:
    """The settings overlay, the WSGI (or ASGI) wrapper, config/appmodules.py and server/shippedstatic.py (file name →
    text), in plan.paths.python_dir: the deploy's check says with appmodules where a release's settings leave DEBUG
    on, and for a git source whose modules are not set the deploy runs it to find them (the overlay and the wrapper
    read its answer); with shippedstatic the check decides where the release's static files come from."""
    folder = plan.paths.python_dir + "/"
    return {
        file.path.removeprefix(folder): file.text(plan) for file in server_files(plan) if file.path.startswith(folder)
    }


def render_app_units(plan: HostPlan) -> dict[str, str]:
    """The systemd units of app.processes and app.schedules (file name → text)."""
    units = set(plan.units) | {f"{plan.app.name}-{name}-catch-up.service" for name, _, _ in plan.app.schedules}
    return {
        name: file.text(plan)
        for file in server_files(plan)
        if (name := file.path.removeprefix(SYSTEMD_DIR + "/")) in units
    }


def render_user_data(plan: HostPlan) -> str:
    """The single server's first-boot document, `#cloud-config`. Holds no secret at all."""
    return render("user-data.yaml.j2", plan, boot_files=rendered(plan, FIRST_BOOT))


def configure_context(plan: HostPlan, **context: object) -> dict[str, object]:
    """What the single server's configure step (scripts/configure-host.sh.j2) takes from the list: the files it
    installs, each one's install arguments, and what each notifies."""
    declared = [file for file in server_files(plan) if file.stage == AFTER_BOOT]
    restart_files = notified(declared, "restarts")
    # Units whose handler is an include of its own (scripts/configure/): a check before, a fallback after.
    own = {"gunicorn.service", "pgbouncer.service", "redis-server.service", f"{plan.app.name}-metadata-block.service"}
    return {
        "files": rendered(plan, AFTER_BOOT, **context),
        "install_args": {file.path: f"{file.path} {file.mode} {file.owner} {file.group}" for file in declared},
        "restart_files": restart_files,
        "reload_files": notified(declared, "reloads"),
        "enabled": enabled(declared),
        "reloaded": systemd_units(declared),
        "plain_restarts": [unit for unit in restart_files if unit not in own | set(plan.units)],
        "app_files_marker": APP_FILES_MARKER,  # where app.files follow the env file on stdin (server/appfiles.py)
    }
