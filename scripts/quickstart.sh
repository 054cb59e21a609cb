#!/usr/bin/env bash
# The quick start: start two local Dovecot servers (a source on port 10993 and a
# target on 11993 that names its special-use folders differently), fill the source
# account from fixtures/, and migrate it into the target account with mailferry.
#
#   scripts/quickstart.sh          run it (again: the second run copies nothing new)
#   scripts/quickstart.sh stop     stop the demo Dovecots
#
# Everything lives in ./demo: the Dovecot files, the certificate (demo/cert.pem),
# the password file (demo/password) and mailferry's index (demo/index.sqlite).
set -euo pipefail
cd "$(dirname "$0")/.."
demo=$PWD/demo
if [ "${1:-}" = stop ]; then
  scripts/testbed.sh stop "$demo/source"
  scripts/testbed.sh stop "$demo/target"
  exit 0
fi

scripts/install-deps.sh
cargo build --release --locked
mf=target/release/mailferry

src=alice@source.example
dst=alice@target.example
port=10993
tport=11993
if [ ! -f "$demo/source/run/master.pid" ] || ! kill -0 "$(cat "$demo/source/run/master.pid")" 2>/dev/null; then
  scripts/testbed.sh stop "$demo/target" 2>/dev/null || true
  rm -rf "$demo"
  IMAP_PORT=10143 IMAPS_PORT=$port POP3_PORT=10110 POP3S_PORT=10995 \
    scripts/testbed.sh start "$demo/source" "$src:demo-password"
  # The target names its special-use folders differently and uses "." as its
  # hierarchy delimiter, so the mapping shows.
  SEPARATOR=. SENT="Sent Items" TRASH="Deleted Items" JUNK=Spam CERT_DIR="$demo/source" \
    IMAP_PORT=11143 IMAPS_PORT=$tport POP3_PORT=11110 POP3S_PORT=11995 \
    scripts/testbed.sh start "$demo/target" "$dst:demo-password"
  cp "$demo/source/cert.pem" "$demo/cert.pem"
  echo demo-password > "$demo/password"
  chmod 600 "$demo/password"
  sleep 0.3
  python3 scripts/seed.py --host localhost --port "$port" --user "$src" \
    --password-file "$demo/password" --ca-file "$demo/cert.pem"
fi

common=(--ca-file "$demo/cert.pem")
echo; echo "== mailferry check imaps://$dst@localhost:$tport"
"$mf" check "imaps://$dst@localhost:$tport" --password-file "$demo/password" "${common[@]}"
echo; echo "== mailferry migrate --dry-run"
"$mf" migrate --from "imaps://$src@localhost:$port" --to "imaps://$dst@localhost:$tport" \
  --from-password-file "$demo/password" --to-password-file "$demo/password" \
  --state "$demo/index.sqlite" "${common[@]}" --dry-run
echo; echo "== mailferry migrate"
"$mf" migrate --from "imaps://$src@localhost:$port" --to "imaps://$dst@localhost:$tport" \
  --from-password-file "$demo/password" --to-password-file "$demo/password" \
  --state "$demo/index.sqlite" "${common[@]}"
echo; echo "== mailferry verify"
"$mf" verify --from "imaps://$src@localhost:$port" --to "imaps://$dst@localhost:$tport" \
  --from-password-file "$demo/password" --to-password-file "$demo/password" "${common[@]}"
echo
echo "Done. The demo Dovecots keep running (source localhost:$port, target localhost:$tport);"
echo "stop them with: scripts/quickstart.sh stop"
