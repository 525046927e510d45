"""Where an app's folders, files and programs are on a server: one layout for both profiles (the single server
and the scaled profile's app servers), so that the templates of both agree.

Templates reach every one as `{{ paths.NAME }}` (the host plan carries them as `paths`); the operator's
verbs (djangoship/remote.py's `Layout`) read the same paths. Pure data, no imports: the operator's command imports
it without the program's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass

DATA_DIR = "/data"  # the data volume's mount point (single server)
SYSTEMD_DIR = "/etc/systemd/system"  # where the server's own units and drop-ins go
# In each release, the link to its static folder; nginx serves current/<this>, so one switch moves both.
STATIC_LINK = ".djangoship-static"


@dataclass(frozen=True)
class ServerPaths:
    """Every path the server's files name. /srv, not a home directory: nginx (www-data) must traverse it."""

    # Folders and files (the host plan carries them under the same names).
    base_dir: str
    releases_dir: str
    current_dir: str
    media_root: str
    static_dir: str  # static files, one folder per release (outside the app's code)
    static_root: str  # STATIC_ROOT as the live release runs: its link to its folder of static_dir
    tools_dir: str  # the deploy's own tools (uv, poetry) and uv-managed Pythons
    python_dir: str  # the settings overlay and WSGI wrapper, on the app's PYTHONPATH
    config_dir: str
    env_file: str
    app_files_dir: str  # app.files (configure writes them, root:<app> 0640); releases link them
    maintenance_flag: str  # while it exists nginx serves the maintenance page (djangoship/remote.py sets it)
    socket_path: str
    upload_dir: str
    archives_dir: str  # root-only: the uploaded archive of the release deployed last, for a run of its deploy again
    deploy_key_file: str  # root-only: the stack's deploy key for an ssh:// or git@host: source
    git_known_hosts: str
    data_dir: str
    backup_dir: str
    redis_dir: str  # on the data volume
    metadata_block: str  # the nftables rules that keep every user but root from the instance metadata service
    metadata_block_listing: str  # the block as the kernel held it once loaded (`nft -s list`): a flush shows
    # Programs, on both profiles.
    manage: str  # the manage wrapper on PATH, what the deploy and operators call
    activate: str  # on PATH: the deploy calls it by name
    firstboot: str
    # Programs of the single server only.
    pg_upgrade: str
    restart_processes: str  # `<app>-processes restart`
    backup: str
    restore: str
    lib_dir: str  # the overlay's folder, the S3 uploader, the app servers' inner manage wrapper
    s3backup: str
    # Programs of an app server (profile scaled) only.
    aws: str
    django_manage: str  # the single server's manage wrapper, behind the app server's own
    deploy: str
    release_once: str
    superuser: str
    boot: str
    admin_password: str  # root-only file: the superuser's password, from SSM
    media_credentials: str  # the app's credentials for its uploads (the media role), served on loopback
    media_token: str  # what the app shows to get them: root and the app's group read it
    schedule_once: str  # a scheduled job once per due time across the app servers

    @classmethod
    def for_app(cls, app: str) -> ServerPaths:
        base, config, lib = f"/srv/{app}", f"/etc/{app}", f"/usr/local/lib/{app}"
        return cls(
            base_dir=base,
            releases_dir=f"{base}/releases",
            current_dir=f"{base}/current",
            media_root=f"{base}/media",
            static_dir=f"{base}/static",
            static_root=f"{base}/current/{STATIC_LINK}",
            tools_dir=f"{base}/tools",
            python_dir=f"{lib}/python",
            config_dir=config,
            env_file=f"{config}/env",
            app_files_dir=f"{config}/files",
            maintenance_flag=f"{config}/maintenance",
            socket_path=f"/run/{app}/gunicorn.sock",
            upload_dir=f"/var/tmp/{app}-uploads",
            archives_dir=f"{base}/archives",
            deploy_key_file=f"{config}/deploy-key",
            git_known_hosts=f"{config}/git-known-hosts",
            data_dir=DATA_DIR,
            backup_dir=f"{DATA_DIR}/backups",
            redis_dir=f"{DATA_DIR}/redis",
            metadata_block=f"{config}/metadata-block.nft",
            metadata_block_listing=f"/run/{app}-metadata-block.nft",
            manage=f"/usr/local/bin/{app}-manage",
            activate=f"/usr/local/sbin/{app}-activate",
            firstboot=f"/usr/local/sbin/{app}-firstboot",
            pg_upgrade=f"/usr/local/sbin/{app}-pg-upgrade",
            restart_processes=f"/usr/local/sbin/{app}-processes",
            backup=f"/usr/local/sbin/{app}-backup",
            restore=f"/usr/local/sbin/{app}-restore",
            lib_dir=lib,
            s3backup=f"{lib}/s3backup.py",
            aws=f"/usr/local/sbin/{app}-aws",
            django_manage=f"{lib}/manage",
            deploy=f"/usr/local/sbin/{app}-deploy",
            release_once=f"/usr/local/sbin/{app}-release-once",
            superuser=f"/usr/local/sbin/{app}-create-superuser",
            boot=f"/usr/local/sbin/{app}-boot",
            admin_password=f"{config}/admin-password",
            media_credentials=f"{lib}/media-credentials.py",
            media_token=f"/run/{app}-media/token",
            schedule_once=f"/usr/local/bin/{app}-schedule-once",
        )
