"""What the `move` verb (move.py) runs on the servers: on the single server over SSH, on an app server of the scaled
stack through Run Command, each as root. Pure functions of the layout, like remote.py; the tests shellcheck them.

Rows are counted as the app's own database role (the env file's DATABASE_URL), never as PostgreSQL's superuser
inside the app's database (the app owns its schemas: a name it planted must not run as the superuser). The dump is
pg_dump's, run as the superuser as the nightly backup runs it (cloud-init/backup/backup.sh.j2 says why that is safe).
"""

from __future__ import annotations

import shlex

from .remote import Layout, root_script

DUMP_NAME = "move.dump"  # in the single server's backup folder while the move downloads it, then removed

# Every table's exact row count and the sum of its rows' xmin (the transaction that wrote each row version): an
# insert, update or delete changes one or the other, a rolled-back one neither, vacuum neither. One
# `schema.table<TAB>rows<TAB>xmin sum` line each; the same query on both sides, as the app's role. (Not PostgreSQL's
# statistics of writes: a backend reports them when it gets round to it, so they may change with no row changed.)
COUNTS_SQL = (
    "SELECT name, (pg_catalog.xpath('/row/c/text()', counted))[1]::text, "
    "(pg_catalog.xpath('/row/x/text()', counted))[1]::text FROM ("
    "SELECT pg_catalog.format('%I.%I', schemaname, relname) AS name, pg_catalog.query_to_xml(pg_catalog.format("
    "'SELECT pg_catalog.count(*) AS c, COALESCE(pg_catalog.sum(xmin::text::bigint), 0) AS x FROM %I.%I', "
    "schemaname, relname), false, true, '') AS counted FROM pg_catalog.pg_stat_user_tables) AS tables ORDER BY 1"
)

# The app's connection from its env file; the password reaches psql in the environment, never on a command line.
_CONNECT = """\
url=$(sed -n "s/^DATABASE_URL='\\(.*\\)'$/\\1/p" {env_file})
if ! [[ "$url" =~ ^postgres(ql)?://([^:@/]+):(.*)@([^@/:]+):([0-9]+)/([^?/]+)(\\?.*)?$ ]]; then
    echo "{env_file} has no DATABASE_URL this can read" >&2
    exit 1
fi
export PGUSER=${{BASH_REMATCH[2]}} PGPASSWORD=${{BASH_REMATCH[3]}} PGHOST=${{BASH_REMATCH[4]}}
export PGPORT=${{BASH_REMATCH[5]}} PGDATABASE=${{BASH_REMATCH[6]}} PGSSLMODE={sslmode} PGCONNECT_TIMEOUT=15
"""


def _connect(layout: Layout, sslmode: str) -> str:
    return _CONNECT.format(env_file=shlex.quote(layout.paths.env_file), sslmode=sslmode)


def _counts(layout: Layout, sslmode: str) -> str:
    return (
        "set -euo pipefail\n"
        + _connect(layout, sslmode)
        + "psql --no-psqlrc --quiet --no-align --tuples-only --field-separator=$'\\t' -v ON_ERROR_STOP=1 -c "
        + shlex.quote(COUNTS_SQL)
        + "\n"
    )


# --- the single server (over SSH) ------------------------------------------------------------------------------

# Celery's messages in the app's Redis (kombu's Redis transport): each queue is a list, and a message a worker has
# taken but not yet acknowledged waits in the hash `unacked`. Every list counts: a queue's name is the app's.
PENDING_LUA = (
    "local n = 0 "
    "for _, key in ipairs(redis.call('KEYS', '*')) do "
    "if redis.call('TYPE', key)['ok'] == 'list' then n = n + redis.call('LLEN', key) end end "
    "return n + redis.call('HLEN', 'unacked')"
)

_DRAIN = """\
set -euo pipefail
drain=$1
url=$(sed -n "s/^REDIS_URL='\\(.*\\)'$/\\1/p" {env_file})
if [ -z "$url" ]; then
    echo "queue: no Redis on this server" >&2
    exit 0
fi
if ! [[ "$url" =~ ^redis://(:([^@]*)@)?([^:/@]+):([0-9]+)/([0-9]+)$ ]]; then
    echo "{env_file} has no REDIS_URL this can read" >&2
    exit 1
fi
export REDISCLI_AUTH=${{BASH_REMATCH[2]}}
ask=(redis-cli --no-auth-warning -h "${{BASH_REMATCH[3]}}" -p "${{BASH_REMATCH[4]}}" -n "${{BASH_REMATCH[5]}}")
deadline=$((SECONDS + drain))
next=0
while true; do
    left=$("${{ask[@]}}" EVAL {pending} 0)
    [[ "$left" =~ ^[0-9]+$ ]] || {{ echo "Redis answered: $left" >&2; exit 1; }}
    [ "$left" -gt 0 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "queue: $left job(s) still queued after $drain s: the worker did not empty the queue" >&2
        exit 4
    fi
    if [ "$SECONDS" -ge "$next" ]; then
        echo "queue: $left job(s) waiting for the worker ($SECONDS s)" >&2
        next=$((SECONDS + 10))
    fi
    sleep 1
done
echo "queue: empty" >&2
"""


def drain_queue(layout: Layout, seconds: int) -> str:
    """Wait (at most `seconds`) until the worker has taken every queued Celery job; exit 4 if it did not. Prints
    progress (to stderr, as it comes) every 10 s. Run with the maintenance page on: no request queues a new one."""
    script = _DRAIN.format(env_file=shlex.quote(layout.paths.env_file), pending=shlex.quote(PENDING_LUA))
    return root_script(script, "drain-queue", str(int(seconds)))


# The app's processes and schedules (the units the configure step installed, /etc/<app>/units; the same file on
# an app server): the timers first, so no job starts, then the services — a running job ends, a Celery worker's
# warm shutdown (SIGTERM) finishes the job it has taken.
_STOP_PROCESSES = """\
set -euo pipefail
mapfile -t units < <(grep -v '^$' {units} 2> /dev/null || true)
timers=() services=()
for unit in "${{units[@]}}"; do
    case $unit in *.timer) timers+=("$unit") ;; *.service) services+=("$unit") ;; esac
done
[ ${{#timers[@]}} -eq 0 ] || systemctl stop "${{timers[@]}}"
[ ${{#services[@]}} -eq 0 ] || systemctl stop "${{services[@]}}"
echo "stopped: ${{units[*]:-nothing to stop}}"
"""

# Started again: the timers, and the services that are not a timer's job (those run when their timer fires).
_START_PROCESSES = """\
set -euo pipefail
mapfile -t units < <(grep -v '^$' {units} 2> /dev/null || true)
start=()
for unit in "${{units[@]}}"; do
    case $unit in
    *.timer) start+=("$unit") ;;
    *.service) [[ " ${{units[*]}} " == *" ${{unit%.service}}.timer "* ]] || start+=("$unit") ;;
    esac
done
[ ${{#start[@]}} -eq 0 ] || systemctl start "${{start[@]}}"
echo "started: ${{start[*]:-nothing to start}}"
"""


def stop_processes(layout: Layout) -> str:
    return root_script(_STOP_PROCESSES.format(units=shlex.quote(f"{layout.paths.config_dir}/units")), "stop-processes")


def start_processes(layout: Layout) -> str:
    return root_script(
        _START_PROCESSES.format(units=shlex.quote(f"{layout.paths.config_dir}/units")), "start-processes"
    )


_SOURCE_STATE = """\
{counts}
# The uploads: `media<TAB>files<TAB>bytes<TAB>digest of every file's size, time and name`.
listing=$(find {media}/ -type f -printf '%s\\t%T@\\t%P\\n' | LC_ALL=C sort)
files=$(printf '%s' "$listing" | grep -c '' || true)
bytes=$(printf '%s\\n' "$listing" | awk -F'\\t' '{{ total += $1 }} END {{ print total + 0 }}')
printf 'media\\t%s\\t%s\\t%s\\n' "$files" "$bytes" "$(printf '%s\\n' "$listing" | sha256sum | cut -d' ' -f1)"
"""


def source_state(layout: Layout) -> str:
    """The single server's data as the move sees it: every table's rows and xmin sum, and the uploads' count, bytes
    and a digest of their listing. Two such answers alike mean nothing was written in between."""
    script = _SOURCE_STATE.format(counts=_counts(layout, "prefer"), media=shlex.quote(layout.paths.media_root))
    return root_script(script, "source-state")


_DUMP = """\
set -euo pipefail
umask 077
dir={backups}
install -d -m 0700 "$dir"
file="$dir/{name}"
rm -f "$file" "$file.partial"
trap 'rm -f "$file.partial"' EXIT
# Room first: the volume also holds PostgreSQL, which stops when it cannot write its WAL. The dump is at most the
# database's size; what stays free is the nightly backup's reserve (10 % of the volume, at least 256 MiB).
read -r size avail < <(df -B1 --output=size,avail "$dir" | tail -n 1)
reserve=$((size / 10 > 268435456 ? size / 10 : 268435456))
# (As the superuser in its own database `postgres`, names looked up in pg_catalog only: nothing of the app's.)
db_bytes=$(PGOPTIONS="-c search_path=pg_catalog" runuser -u postgres -- psql --no-psqlrc -d postgres -tAc \\
    "SELECT pg_database_size('{app}')")
if [ "$avail" -lt $((db_bytes + reserve)) ]; then
    echo "not enough space in $dir for the dump: $((avail / 1048576)) MiB free, the database is" \\
        "$((db_bytes / 1048576)) MiB and $((reserve / 1048576)) MiB must stay free for PostgreSQL" >&2
    exit 1
fi
runuser -u postgres -- pg_dump --format=custom --compress=6 {app} > "$file.partial"
# Checked before anything leaves the server: an archive pg_restore reads, with entries in it.
entries=$(pg_restore --list "$file.partial" | grep -vc '^;' || true)
[ "$entries" -gt 0 ] || {{ echo "the dump has no entries (pg_restore --list)" >&2; exit 1; }}
mv "$file.partial" "$file"
printf 'dump\\t%s\\t%s\\t%s\\n' "$(stat -c %s "$file")" "$(sha256sum "$file" | cut -d' ' -f1)" "$entries"
"""


def dump(layout: Layout) -> str:
    """pg_dump (custom format) into the backup folder, checked by `pg_restore --list`; prints `dump<TAB>bytes<TAB>
    sha256<TAB>entries`. The move downloads it (`read_dump`) and removes it (`remove_dump`)."""
    script = _DUMP.format(
        backups=shlex.quote(layout.paths.backup_dir),
        name=DUMP_NAME,
        app=layout.app,  # [a-z][a-z0-9_]* (configchecks.NAME), written bare as the backup script writes it
    )
    return root_script(script, "dump")


def read_dump(layout: Layout) -> str:
    return shlex.join(["sudo", "-n", "cat", "--", f"{layout.paths.backup_dir}/{DUMP_NAME}"])


def remove_dump(layout: Layout) -> str:
    return shlex.join(["sudo", "-n", "rm", "-f", "--", f"{layout.paths.backup_dir}/{DUMP_NAME}"])


def media_archive(layout: Layout) -> str:
    """The uploads as a tar.gz on stdout (the folder's contents, names relative to it)."""
    return shlex.join(["sudo", "-n", "tar", "-cz", "-C", f"{layout.paths.media_root}/", "."])


# --- an app server of the scaled stack (Run Command) -------------------------------------------------------------


def target_counts(layout: Layout) -> str:
    """Every table's rows in the scaled stack's database (RDS, over TLS), as `source_state` prints them."""
    return root_script(_counts(layout, "require"), "target-counts")


_RESTORE = """\
set -euo pipefail
umask 077
bucket=$1 key=$2 digest=$3
{connect}file=$(mktemp /var/tmp/{app}-move.XXXXXX)
trap 'rm -f "$file"' EXIT
{aws} fetch "$bucket" "$key" "$file"
if ! echo "$digest  $file" | sha256sum --check --status; then
    echo "the dump differs from the one the source made" >&2
    exit 1
fi
pg_restore --list "$file" > /dev/null
# One transaction: the database is the dump's, or unchanged. pg_restore 17 writes `SET transaction_timeout`, which
# an older server (RDS for PostgreSQL 16) refuses: left out, it only set the default.
pg_restore --no-owner --no-privileges --clean --if-exists --file=- "$file" |
    sed '/^SET transaction_timeout = /d' |
    psql --no-psqlrc --quiet --single-transaction -v ON_ERROR_STOP=1 --output=/dev/null
echo "restored the dump into $PGHOST/$PGDATABASE"
# The stack's release may be newer than the dump's: its migrations, once, here.
{manage} migrate --noinput
"""


def restore(layout: Layout, bucket: str, key: str, digest: str) -> str:
    """On one app server: the dump from the artifacts bucket (checked against the source's SHA-256 and by
    `pg_restore --list`) restored into RDS in one transaction, then the release's migrations."""
    script = _RESTORE.format(
        connect=_connect(layout, "require"),
        app=layout.app,
        aws=shlex.quote(layout.paths.aws),
        manage=shlex.quote(layout.paths.manage),
    )
    return root_script(script, "restore-moved", bucket, key, digest)
