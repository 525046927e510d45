"""The read-only views of the server — `status` and `releases` — as bash scripts run as root. Pure functions of
the layout, like remote.py; the tests shellcheck them."""

from __future__ import annotations

import shlex

from .remote import STAMP, Layout, check_stamp, redeploy, root_script

# The data volume's fill level past which `status` warns: the server's backup and deploy warn at the same
# (`volume_warn_percent` in server/host.py; a test keeps the two equal).
VOLUME_WARN_PERCENT = 80

# Dates in UTC, as the release and backup stamps are.
_RELEASES = """\
set -euo pipefail
releases={releases}
live=$(basename "$(readlink -f {current})")
[ -f "$releases/.history" ] || {{ echo "no release yet"; exit 0; }}
# The live release is the newest, even where a power loss kept the history from saying so yet (activate mends it).
while read -r id; do
    [ -d "$releases/$id" ] || continue
    mark=" "; [ "$id" = "$live" ] && mark="*"
    printf '%s %s  built %s\\n' "$mark" "$id" "$(date -u -d "@$(stat -c %Y "$releases/$id")" '+%Y-%m-%d %H:%M UTC')"
done < <({{ grep -vx "$live" "$releases/.history" || true; echo "$live"; }} | tac)
"""


def releases(layout: Layout) -> str:
    """The kept releases, newest first; `*` marks the live one."""
    paths = layout.paths
    script = _RELEASES.format(releases=shlex.quote(paths.releases_dir), current=shlex.quote(paths.current_dir))
    return root_script(script, "releases")


_STATUS = """\
set -uo pipefail
now=$(date +%s)
age() {{ local s=$((now - $1)); if ((s < 7200)); then echo "$((s / 60)) min"; else echo "$((s / 3600)) h"; fi; }}
live=$(readlink -f {current} || true)
if [ -d "$live" ]; then
    echo "release:      $(basename "$live"), live for $(age "$(stat -c %Y {current})")"
else
    echo "release:      none live"
fi
kept=$(grep -vx "$(basename "$live")" {releases}/.history 2> /dev/null | tac | tr '\\n' ' ')
echo "kept:         ${{kept:-none}}"
# Damage made by hand to what the deploy left (the live release's folder, its virtualenv), as the server's own
# activate checks it, with what nginx answers; and the one command that repairs it: its deploy run again.
damage=$({activate} --check 2> /dev/null || true)
if [ -n "$damage" ]; then
    echo "damage:       $damage"
    echo "repair:       ${{1:-the deploy step run again}}"
fi
if [ -e {flag} ]; then echo "maintenance:  ON (visitors get 503)"; else echo "maintenance:  off"; fi
echo
echo "services:"
# The app's processes and schedules: the units the configure step installed (listed in {units}).
for unit in nginx.service gunicorn.socket gunicorn.service \\
    $(systemctl list-units --all --plain --no-legend 'postgresql@*.service' | awk '{{print $1}}') \\
    pgbouncer.service redis-server.service {app}-backup.timer $(cat {units} 2> /dev/null); do
    systemctl cat "$unit" > /dev/null 2>&1 || continue
    printf '  %-28s %s\\n' "$unit" "$(systemctl is-active "$unit")"
done
if systemctl is-active --quiet {app}-gunicorn-retry.timer; then
    echo "  gunicorn gave up after a crash loop: it is tried again within a minute ({app}-gunicorn-retry.timer)"
fi
failed=$(systemctl --failed --plain --no-legend | awk '{{print $1}}' | tr '\\n' ' ')
[ -z "$failed" ] || echo "  FAILED: $failed"
echo
echo "disk:"
# /data is its own volume on EC2; where it is not (a guest without one), print the root's line once.
df -h --output=target,size,used,avail,pcent / {data} | awk '!seen[$0]++ {{ print "  " $0 }}'
used=$(df --output=pcent {data} | tail -n 1 | tr -d ' %')
if [ "${{used:-0}}" -ge {warn_percent} ]; then
    printf '  WARNING: %s is %s %% full (PostgreSQL stops when it is full): %s\\n' {data} "$used" \
        "delete old backups, lower backupRetentionDays or grow dataVolumeGb"
fi
echo "memory:"
free -m | sed 's/^/  /'
echo
latest=$(find {backups} -maxdepth 1 -name 'db-*.dump' -printf '%T@ %f\\n' 2> /dev/null | sort -n | tail -n 1)
if [ -n "$latest" ]; then
    echo "last backup:  ${{latest#* }}, $(age "${{latest%%.*}}") ago"
else
    echo "last backup:  none in {backups}"
fi
echo "next backup:  $(systemctl show -p NextElapseUSecRealtime --value {app}-backup.timer 2> /dev/null)"
shopt -s nullglob
certificates=(/etc/letsencrypt/live/*/cert.pem)
if [ ${{#certificates[@]}} -eq 0 ]; then
    echo "certificate:  none (plain HTTP)"
fi
for certificate in "${{certificates[@]}}"; do
    expires=$(date -d "$(openssl x509 -enddate -noout -in "$certificate" | cut -d= -f2)" +%s)
    echo "certificate:  $(basename "$(dirname "$certificate")") expires in $(((expires - now) / 86400)) days"
done
"""


def status(layout: Layout, stack: str | None = None) -> str:
    """Release, damage and its repair (the deploy run again: `redeploy`, for `stack`), services (the app's processes
    and schedules too), disk, memory, backups, certificate: what an operator checks first."""
    quoted = {
        "activate": layout.paths.activate,
        "current": layout.paths.current_dir,
        "releases": layout.paths.releases_dir,
        "flag": layout.paths.maintenance_flag,
        "backups": layout.paths.backup_dir,
        "data": layout.paths.data_dir,
        "app": layout.app,
        "units": f"{layout.paths.config_dir}/units",
    }
    script = _STATUS.format(
        warn_percent=VOLUME_WARN_PERCENT, **{key: shlex.quote(value) for key, value in quoted.items()}
    )
    return root_script(script, "status", redeploy(layout, stack))


_FIND_BACKUP = """\
set -euo pipefail
dir={backups}
stamp=${{1:-}}
if [ -z "$stamp" ]; then
    latest=$(find "$dir" -maxdepth 1 -name 'db-*.dump' -printf '%f\\n' | sort | tail -n 1)
    [ -n "$latest" ] || {{ echo "no backup in $dir (run the backup verb)" >&2; exit 1; }}
    stamp=${{latest#db-}}
    stamp=${{stamp%.dump}}
fi
[[ "$stamp" =~ ^{stamp}$ ]] || {{ echo "'$stamp' is not a backup stamp like 20261128T033000Z" >&2; exit 2; }}
if [ ! -f "$dir/db-$stamp.dump" ] && [ -x {uploader} ]; then
    {uploader} download "$stamp" "$dir" >&2
fi
[ -f "$dir/db-$stamp.dump" ] || {{ echo "backup $stamp is not in $dir" >&2; exit 1; }}
for name in "db-$stamp.dump" "media-$stamp.tar.gz"; do
    [ ! -f "$dir/$name" ] || echo "$name $(stat -c %s "$dir/$name")"
done
"""


def find_backup(layout: Layout, stamp: str | None) -> str:
    """Names and sizes (one `NAME BYTES` a line) of the backup `stamp` (default the newest) on the server, fetched
    from S3 first when only the bucket has it."""
    check_stamp(stamp)
    paths = layout.paths
    script = _FIND_BACKUP.format(
        backups=shlex.quote(paths.backup_dir), uploader=shlex.quote(paths.s3backup), stamp=STAMP
    )
    return root_script(script, "download-backup", *([stamp] if stamp else []))


def read_backup_file(layout: Layout, name: str) -> str:
    return shlex.join(["sudo", "-n", "cat", "--", f"{layout.paths.backup_dir}/{name}"])


# --- an app server of the scaled profile (run through Run Command, as root) -------------------------------

_APP_SERVER = """\
set -uo pipefail
now=$(date +%s)
live=$(readlink -f {current} || true)
if [ -d "$live" ]; then
    echo "release $(basename "$live") (live $(((now - $(stat -c %Y {current})) / 60)) min)"
else
    echo "release: none live"
fi
states=""
for unit in nginx.service gunicorn.socket gunicorn.service amazon-ssm-agent.service {app}-media-credentials.service \\
    $(cat {units} 2> /dev/null); do
    systemctl cat "$unit" > /dev/null 2>&1 || continue
    states="$states ${{unit%.service}}=$(systemctl is-active "$unit")"
done
echo "services:$states"
failed=$(systemctl --failed --plain --no-legend | awk '{{print $1}}' | tr '\\n' ' ')
[ -z "$failed" ] || echo "FAILED: $failed"
memory=$(free -m | awk '/^Mem:/ {{print $3 "/" $2}}')
echo "disk / $(df --output=pcent / | tail -n 1 | tr -d ' ') used; memory $memory MiB"
"""


def app_server_status(layout: Layout) -> str:
    """A scaled profile's app server in four lines: its release, its services (the app's processes too), any
    failed unit, disk and memory. The same on every server of the group, so `status` puts them side by side."""
    quoted = {
        "current": layout.paths.current_dir,
        "units": f"{layout.paths.config_dir}/units",
        "app": layout.app,
    }
    script = _APP_SERVER.format(**{key: shlex.quote(value) for key, value in quoted.items()})
    return root_script(script, "status")


# The scaled profile's releases are recorded by the first server of each (cloud-init/scaled/release-once.sh.j2)
# in the app's database; the connection is the env file's DATABASE_URL, its password handed to psql in the
# environment (never on a command line, which other users could read).
_RECORDED_RELEASES = """\
set -euo pipefail
url=$(sed -n "s/^DATABASE_URL='\\(.*\\)'$/\\1/p" {env_file})
if ! [[ "$url" =~ ^postgres(ql)?://([^:@/]+):(.*)@([^@/:]+):([0-9]+)/([^?/]+)(\\?.*)?$ ]]; then
    echo "{env_file} has no DATABASE_URL this can read" >&2
    exit 1
fi
export PGUSER=${{BASH_REMATCH[2]}} PGPASSWORD=${{BASH_REMATCH[3]}} PGHOST=${{BASH_REMATCH[4]}}
export PGPORT=${{BASH_REMATCH[5]}} PGDATABASE=${{BASH_REMATCH[6]}} PGSSLMODE=require PGCONNECT_TIMEOUT=15
live=$(basename "$(readlink -f {current})")
psql --no-psqlrc --quiet --no-align --tuples-only --field-separator=' ' -v ON_ERROR_STOP=1 -c \\
    "SELECT release_id, to_char(installed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), installed_by
     FROM djangoship_release ORDER BY installed_at DESC" |
    while read -r id at time by; do
        mark=" "; [ "$id" = "$live" ] && mark="*"
        printf '%s %s  first installed %s %s UTC by %s\\n' "$mark" "$id" "$at" "$time" "$by"
    done
"""


def recorded_releases(layout: Layout) -> str:
    """The releases the group has run, newest first, from the database; `*` marks the one this server runs."""
    paths = layout.paths
    script = _RECORDED_RELEASES.format(env_file=shlex.quote(paths.env_file), current=shlex.quote(paths.current_dir))
    return root_script(script, "releases")
