#!/usr/bin/env bash
# One command: install everything, then run the service with demo data on the embedded database.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ledger serve --demo "$@"
