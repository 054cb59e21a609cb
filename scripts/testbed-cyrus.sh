#!/usr/bin/env bash
# Start or stop a throwaway Cyrus IMAP 3.6 (IMAP, IMAPS, POP3, POP3S) for mailferry's
# cross-server tests. The same interface as scripts/testbed.sh (Dovecot):
#
#   scripts/testbed-cyrus.sh start DIR USER:PASSWORD...   start an instance whose files all live in DIR
#   scripts/testbed-cyrus.sh stop DIR                      stop it (the files stay until you remove DIR)
#
# Cyrus comes unpacked from Debian's packages into $MAILFERRY_TESTBED_ROOT/cyrus
# (default /opt/mailferry-testbed/cyrus) by scripts/install-deps.sh: its packages
# conflict with Dovecot's, so they are not installed.
#
# Environment for `start` (all optional):
#   IMAP_PORT IMAPS_PORT POP3_PORT POP3S_PORT   loopback ports (default 11143 11993 11110 11995)
#   LAYOUT       default:      Cyrus's default namespace, personal folders under "INBOX." with "."
#                              as separator (INBOX.Sent, INBOX.Projects.2024)
#                altnamespace: `altnamespace: yes` + `unixhierarchysep: yes`: no prefix, "/"
#                              as separator (Sent, Projects/2024)
#   CERT_DIR     reuse cert.pem/key.pem from this directory instead of making new ones
#
# Users log in with the names given (user@domain: `virtdomains: userid`), SASL PLAIN or
# LOGIN or the LOGIN command, checked against DIR/sasldb2. Each user's INBOX and the
# special-use folders Sent (\Sent), Drafts (\Drafts), Trash (\Trash) and Junk (\Junk)
# are created by Cyrus at the user's first login (autocreate); `start` logs every user
# in once, so they exist when it returns. The admin `cyrus` (password in DIR/admin-pw)
# may log in too. DIR/cert.pem is the self-signed certificate (CN=localhost, SAN
# localhost and 127.0.0.1); clients trust it with `--ca-file DIR/cert.pem`.
# `defaultpartition` is set although there is one partition: without it, each imapd that
# makes a user's INBOX picks a partition and reseeds rand() with srand(time(NULL)), and
# Cyrus 3.6 makes mailbox unique ids with rand(): imapds that did so in the same second
# give out the same ids, and since Cyrus keeps a mailbox's files in a directory named
# after its id, one mailbox's messages then show in another folder or another account.
# Cyrus logs only to syslog (lost when nothing listens on /dev/log); DIR/cyrus.log
# holds what the master itself prints.
set -euo pipefail

die() { echo "testbed-cyrus: $*" >&2; exit 1; }

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop DIR [USER:PASSWORD...]"
ROOT=${MAILFERRY_TESTBED_ROOT:-/opt/mailferry-testbed}/cyrus
BIN=$ROOT/usr/lib/cyrus/bin
export LD_LIBRARY_PATH=$ROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

case "$cmd" in
stop)
  # The master stops its children (imapd, pop3d) when it receives SIGTERM.
  [ -f "$dir/master.pid" ] && stop_pid "$(cat "$dir/master.pid")"
  exit 0 ;;
start) ;;
*) die "unknown command '$cmd' (start or stop)" ;;
esac
shift 2

[ -x "$BIN/master" ] || die "Cyrus is not unpacked in $ROOT: run scripts/install-deps.sh"
case "${LAYOUT:-default}" in
default) altns=no ;;
altnamespace) altns=yes ;;
*) die "LAYOUT must be default or altnamespace" ;;
esac

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 755 "$dir"
if [ "$(id -u)" = 0 ]; then user=mail; else user=$(id -un); fi
mkdir -p "$dir/conf" "$dir/spool"
for d in db proc socket log msg user quota sieve lock sync; do mkdir -p "$dir/conf/$d"; done
chown -R "$user:$(id -gn "$user")" "$dir/conf" "$dir/spool"

if [ -n "${CERT_DIR:-}" ] && [ -f "$CERT_DIR/cert.pem" ]; then
  cp "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem" "$dir/"
elif [ ! -f "$dir/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"
fi
chown "$user" "$dir/key.pem"
chmod 644 "$dir/cert.pem"; chmod 600 "$dir/key.pem"

cat > "$dir/imapd.conf" <<CONF
configdirectory: $dir/conf
partition-default: $dir/spool
defaultpartition: default
cyrus_user: $user
admins: cyrus
servername: localhost
virtdomains: userid
altnamespace: $altns
unixhierarchysep: $altns
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $dir/sasldb2
sasl_mech_list: PLAIN LOGIN
tls_server_cert: $dir/cert.pem
tls_server_key: $dir/key.pem
autocreate_quota: 0
autocreate_inbox_folders: Sent | Drafts | Trash | Junk
autocreate_subscribe_folder: Sent | Drafts | Trash | Junk
xlist-sent: Sent
xlist-drafts: Drafts
xlist-trash: Trash
xlist-junk: Junk
specialusealways: yes
popminpoll: 0
syslog_prefix: cyrus-$(basename "$dir")
CONF

cat > "$dir/cyrus.conf" <<CONF
START {
  recover cmd="$BIN/ctl_cyrusdb -r -C $dir/imapd.conf"
}
SERVICES {
  imap  cmd="$BIN/imapd -C $dir/imapd.conf" listen="127.0.0.1:${IMAP_PORT:-11143}" prefork=0
  imaps cmd="$BIN/imapd -s -C $dir/imapd.conf" listen="127.0.0.1:${IMAPS_PORT:-11993}" prefork=0
  pop3  cmd="$BIN/pop3d -C $dir/imapd.conf" listen="127.0.0.1:${POP3_PORT:-11110}" prefork=0
  pop3s cmd="$BIN/pop3d -s -C $dir/imapd.conf" listen="127.0.0.1:${POP3S_PORT:-11995}" prefork=0
}
EVENTS {
}
DAEMON {
}
CONF

# Users and the admin in the instance's own sasldb.
admin_pw=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
echo "$admin_pw" > "$dir/admin-pw"; chmod 600 "$dir/admin-pw"
: > "$dir/users"
add_user() { # NAME PASSWORD
  local name=$1 pw=$2 realm=
  case "$name" in *@*) realm=${name#*@}; name=${name%@*} ;; esac
  printf '%s' "$pw" | "$ROOT/usr/sbin/saslpasswd2" -p -c -f "$dir/sasldb2" ${realm:+-u "$realm"} "$name" \
    || die "saslpasswd2 could not add $1"
}
# The admin in the realm Cyrus gives unqualified names (its servername), so it can
# log in as `cyrus` and, as an admin, on behalf of any user (SASL PLAIN authzid).
add_user cyrus@localhost "$admin_pw"
for up in "$@"; do
  add_user "${up%%:*}" "${up#*:}"
  echo "${up%%:*}" >> "$dir/users"
done
chown "$user" "$dir/sasldb2"; chmod 600 "$dir/sasldb2"

"$BIN/master" -C "$dir/imapd.conf" -M "$dir/cyrus.conf" -p "$dir/master.pid" -d \
  </dev/null >>"$dir/cyrus.log" 2>&1 || die "cyrus master did not start; see $dir/cyrus.log"
for _ in $(seq 1 100); do
  [ -s "$dir/master.pid" ] && break; sleep 0.05
done
[ -s "$dir/master.pid" ] || die "cyrus master did not write its pid file; see $dir/cyrus.log"

# Log every user in once (over IMAPS, trusting DIR/cert.pem): Cyrus creates the INBOX
# and the special-use folders then.
python3 - "$dir" "${IMAPS_PORT:-11993}" "$@" <<'PY' || die "first login failed"
import imaplib, ssl, sys, time
d, port, users = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ctx = ssl.create_default_context(cafile=d + "/cert.pem")
for attempt in range(100):
    try:
        imap = imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx, timeout=10)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("testbed-cyrus: IMAPS port %d does not answer" % port)
imap.logout()
for up in users:
    name, pw = up.split(":", 1)
    imap = imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx, timeout=10)
    imap.login(name, pw)
    imap.logout()
PY
