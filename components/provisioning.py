"""The remote commands that turn a booted server into the site, over SSH to the Elastic IP.

    connect (host key) ─┬─ boot (first boot done) ─ configure (env file, database, gunicorn, nginx) ─┬─ deploy
                        └─ [upload] ─ build (the release's virtualenv) ─────────────────────────────┘   → superuser

The build needs neither the database nor the app's settings, so Pulumi runs it beside boot and configure: on
a first boot the dependencies download and install while cloud-init installs PostgreSQL and nginx, and a
release that changes its dependencies installs them while configure runs. The deploy then checks, migrates
and switches.

Each command runs its whole script as root; the script travels on stdin, before any secret the script reads
there (server/rootstep.py says why not in the command line), and is one of the command's triggers, so
`pulumi preview --diff` shows what changed in it. Secrets travel only on stdin, and only to a server proven by
its host key: the connect step installs the program's own host key (components/keys.py says why), every later
step pins it.

pulumi-command re-runs a command when any of its inputs changes and replaces it when its `triggers` change,
so each input holds exactly what the step depends on: the instance id (a new server re-runs every step), and
the rendered text or release id of that step. Configure also runs again with every new release: it compares
each file on the server with the program's rendering and rewrites (and reloads) what differs, so a deploy
also repairs a file changed by hand. None has a `delete` step: `pulumi destroy` must not need the server
alive.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from config.settings import Settings
from server.appfiles import configure_stdin
from server.envfile import single_server_env_file
from server.files import configure_context
from server.host import (
    HostPlan,
    build_id,
    digest,
    remote_script,
    render_nginx_site,
    render_postgres_config,
    site_hosts,
)
from server.release import Release
from server.rootstep import root_command, root_stdin

from .keys import HostKey

BOOT_TIMEOUT_SECONDS = 1500
STEP_TIMEOUTS = pulumi.CustomTimeouts(create="30m", update="30m")


@dataclass
class SiteProvisionerArgs:
    settings: Settings
    plan: HostPlan
    release: Release
    public_ip: pulumi.Output[str]
    instance_id: pulumi.Output[str]
    private_key: pulumi.Output[str]
    host_key: HostKey  # the server's SSH host key: installed by the connect step, pinned by every later one
    secret_key: pulumi.Output[str]
    db_password: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    app_env: pulumi.Output[dict[str, str]]
    app_files: pulumi.Output[dict[str, str]]  # secret always: path → content, after the env file on configure's stdin
    redis_password: pulumi.Output[str] | None  # `redis: true`: into REDIS_URL, on the configure step's stdin
    server_ready: list[pulumi.Resource]  # e.g. the EIP association: SSH to the address needs it
    deploy_key: pulumi.Output[str] | None = None  # secret: the deploy key's private half (ssh:// sources)


class SiteProvisioner(pulumi.ComponentResource):
    def __init__(self, name: str, args: SiteProvisionerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:index:SiteProvisioner", name, None, opts)
        plan, settings, release = args.plan, args.settings, args.release
        # The connect step's connection: a new instance refuses connections until sshd is up, so keep dialling
        # (the step timeouts bound it). It cannot know the host key yet — cloud-init made one — and sends only
        # the program's host key, which the connect step installs.
        first_connection = remote.ConnectionArgs(
            host=args.public_ip,
            user=settings.ssh_user,
            private_key=args.private_key,
            dial_error_limit=-1,
            per_dial_timeout=15,
        )
        # Every later step: the server must prove the program's host key, or the step fails without sending
        # anything. sshd is up by then, so the provider's default of 10 dials is left: a wrong key fails the
        # step within minutes rather than retrying until the step's timeout.
        connection = remote.ConnectionArgs(
            host=args.public_ip,
            user=settings.ssh_user,
            private_key=args.private_key,
            host_key=args.host_key.public_key,
            per_dial_timeout=15,
        )

        def step(
            label: str,
            script: pulumi.Input[str],
            script_name: str,
            triggers: list[pulumi.Input[str]],
            after: list[pulumi.Resource],
            secret: pulumi.Input[str] | None = None,
            via: remote.ConnectionArgs = connection,
        ) -> remote.Command:
            """A command that runs `script` as root under `script_name` (its $0), with `secret` on its stdin
            (server/rootstep.py). The script's text is a trigger: `pulumi preview --diff` shows what changed in it,
            secret stdin or not."""
            text = pulumi.Output.from_input(script)
            stdin = pulumi.Output.all(text, secret or "").apply(lambda parts: root_stdin(parts[0], parts[1]))
            return remote.Command(
                f"{name}-{label}",
                connection=via,
                create=text.apply(lambda script_text: root_command(script_text, script_name)),
                stdin=stdin,
                triggers=[args.instance_id, text, *triggers],
                opts=pulumi.ResourceOptions(parent=self, depends_on=after, custom_timeouts=STEP_TIMEOUTS),
            )

        key_script = remote_script("install-host-key", plan)
        self.connect = step(
            "connect",
            key_script,
            "install-host-key",
            [],
            args.server_ready,
            secret=args.host_key.private_key,
            via=first_connection,
        )
        wait_script = remote_script("wait-for-boot", plan, boot_timeout_seconds=BOOT_TIMEOUT_SECONDS)
        self.boot = step("boot", wait_script, "wait-for-boot", [], [self.connect])

        def configure_script(public_ip: str) -> str:
            hosts = site_hosts(plan, public_ip)
            return remote_script(
                "configure-host",
                plan,
                **configure_context(plan, health_host=hosts[0]),
                release_id=build_id(
                    release.id, plan
                ),  # the release this run comes with (scripts/configure/gunicorn.sh)
                postgres_config=render_postgres_config(plan),
                nginx_site_http=render_nginx_site(plan, https=False, hosts=hosts),
                nginx_site_https=render_nginx_site(plan, https=True, hosts=hosts) if plan.tls else "",
            )

        configure_text = args.public_ip.apply(configure_script)
        env_file = pulumi.Output.all(
            args.secret_key, args.db_password, args.public_ip, args.app_env, args.redis_password or "", args.app_files
        ).apply(
            lambda values: configure_stdin(
                single_server_env_file(
                    plan,
                    secret_key=values[0],
                    db_password=values[1],
                    hosts=site_hosts(plan, values[2]),
                    extra=values[3],
                    redis_password=values[4],
                ),
                values[5],
            )
        )
        self.configure = step(
            "configure",
            configure_text,
            "configure-host",
            # With each new release too: the server converges to the program's files (see above).
            [build_id(release.id, plan)],
            [self.boot],
            secret=pulumi.Output.secret(env_file),
        )

        build_after: list[pulumi.Resource] = [self.connect]
        self.upload: remote.CopyToRemote | None = None
        if release.archive is not None:
            # The app folder, as a reproducible archive; the deploy unpacks it into releases/<id>.
            self.upload = remote.CopyToRemote(
                f"{name}-upload",
                connection=connection,
                source=pulumi.FileAsset(str(release.archive)),
                remote_path=f"{plan.paths.upload_dir}/{release.id}.tar.gz",
                triggers=[args.instance_id, release.id],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.connect], custom_timeouts=STEP_TIMEOUTS),
            )
            build_after = [self.upload]

        def deploy_script(build_only: bool) -> str:
            return remote_script(
                "build" if build_only else "deploy",
                plan,
                release_id=build_id(release.id, plan),
                archive_id=release.id,
                source_kind="archive" if release.archive is not None else "git",
                git_url=release.git_url,
                git_ref=release.git_ref,
                git_commit=release.git_commit,
                boot_timeout_seconds=BOOT_TIMEOUT_SECONDS,
            )

        # A private repository's deploy key: on stdin, saved root-only by the script (never in its text).
        deploy_key = args.deploy_key if plan.app.git_ssh else None
        self.build = step(
            "build",
            deploy_script(build_only=True),
            f"build-{release.id}",
            [build_id(release.id, plan)],
            build_after,
            secret=deploy_key,
        )
        deploy_text = deploy_script(build_only=False)
        deploy_triggers: list[pulumi.Input[str]] = [build_id(release.id, plan)]
        if plan.app.processes:
            # A change to the app's processes re-runs the deploy: its activation starts them on the live release
            # and fails, with their journal, when one cannot start (configure only restarts running ones).
            deploy_triggers.append(digest(repr(plan.app.processes)))
        self.deploy = step(
            "deploy",
            deploy_text,
            f"deploy-{release.id}",
            deploy_triggers,
            [self.configure, self.build],
            secret=deploy_key,
        )

        superuser_script = remote_script(
            "create-superuser", plan, admin_user=settings.admin_user, admin_email=settings.admin_email
        )
        self.superuser = step(
            "superuser",
            superuser_script,
            "create-superuser",
            [],
            [self.deploy],
            secret=args.admin_password,
        )
        self.register_outputs({"releaseId": release.id})
