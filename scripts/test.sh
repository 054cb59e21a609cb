#!/usr/bin/env bash
# Run every test: unit tests and the black-box tests against real Dovecot instances
# (each test starts its own on free loopback ports). Installs Dovecot and the other
# test dependencies from Debian's packages first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --locked --no-fail-fast "$@"
