#!/usr/bin/env bash
# Installs everything the service needs on a Debian/Ubuntu machine that has Python >= 3.11 and git:
# the system libraries WeasyPrint needs (Pango, HarfBuzz's subsetter, Noto CJK fonts), PostgreSQL
# server binaries where no pgserver wheel exists (Python 3.13+, ARM), and a virtualenv in .venv.
# Usage: scripts/setup.sh [--test]   (--test adds what the test suite needs: poppler-utils, and for the
# resident pages' browser tests Debian's chromium (driven by Playwright, whose bundled Node driver needs
# libatomic1, absent from a minimal Debian 12), zbar-tools (QR decoding) and pgbouncer (the scale tests
# run the ledger through it in transaction mode; its system service is never started))
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "需要 Python >= 3.11 / Python >= 3.11 is required (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi

needs_system_pg() {
  # pgserver ships wheels for CPython 3.10-3.12 on x86-64 only.
  "$PYTHON" -c 'import sys, platform; sys.exit(not (sys.version_info >= (3, 13) or platform.machine() != "x86_64"))'
}

packages=(fonts-noto-cjk libharfbuzz-subset0 libpango-1.0-0 libpangoft2-1.0-0)
# Tests also run the embedded cluster on the system's binaries, so both sources stay tested.
[ "$want_test" = 1 ] && packages+=(poppler-utils postgresql chromium zbar-tools libatomic1 pgbouncer)
# The pages' Merkle verifier (JavaScript) is tested under Node too; any Node >= 18 will do.
[ "$want_test" = 1 ] && ! command -v node >/dev/null 2>&1 && packages+=(nodejs)
# Debian ships venv without ensurepip unless python3-venv is installed: try it for real.
if [ ! -x .venv/bin/python ]; then
  probe=$(mktemp -d)
  "$PYTHON" -m venv "$probe/v" >/dev/null 2>&1 || packages+=(python3-venv)
  rm -rf "$probe"
fi
if needs_system_pg && [ "$want_test" = 0 ]; then
  packages+=(postgresql)
fi

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "安装系统依赖 / installing: ${missing[*]}"
    # The service runs its own private cluster: never let the postgresql package create or start
    # a system-wide one.
    mkdir -p /etc/postgresql-common
    if [ ! -f /etc/postgresql-common/createcluster.conf ] || ! grep -q '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
      echo "create_main_cluster = false" >> /etc/postgresql-common/createcluster.conf
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "缺少系统软件包 / missing system packages. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras=""
[ "$want_test" = 1 ] && extras="[dev]"
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)${extras:+-dev}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${extras}"
  touch "$stamp"
fi
