#!/usr/bin/env bash
# Create or update a stack: the virtualenv, the state backend, the stack, then `pulumi up`.
#   ./scripts/up.sh [STACK] [pulumi up flags…]      (STACK defaults to dev)
# State goes to a local folder (~/.pulumi-state) unless you are already logged in to a backend or set
# PULUMI_BACKEND_URL (s3://…, Pulumi Cloud, …). Secrets in a local backend are encrypted with a
# passphrase: pulumi asks for it, or reads PULUMI_CONFIG_PASSPHRASE / PULUMI_CONFIG_PASSPHRASE_FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
stack=${1:-dev}
shift || true

command -v pulumi > /dev/null || { echo "up.sh: install the Pulumi CLI first: https://www.pulumi.com/docs/install/" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt

if [ -z "${PULUMI_BACKEND_URL:-}" ] && ! pulumi whoami > /dev/null 2>&1; then
    mkdir -p "$HOME/.pulumi-state"
    export PULUMI_BACKEND_URL="file://$HOME/.pulumi-state"
    echo "up.sh: state in $PULUMI_BACKEND_URL (local; set PULUMI_BACKEND_URL to use another backend)"
fi
pulumi stack select --create "$stack"
pulumi up "$@"
