#!/usr/bin/env bash
# Start or stop a throwaway Courier-IMAP 5.0 + Courier POP3 (IMAP, IMAPS, POP3, POP3S)
# for mailferry's cross-server tests. The same interface as scripts/testbed.sh (Dovecot):
#
#   scripts/testbed-courier.sh start DIR USER:PASSWORD...   start an instance whose files all live in DIR
#   scripts/testbed-courier.sh stop DIR                      stop it (the files stay until you remove DIR)
#
# Courier comes unpacked from Debian's packages into $MAILFERRY_TESTBED_ROOT/courier
# (default /opt/mailferry-testbed/courier) by scripts/install-deps.sh: its packages
# conflict with Dovecot's, so they are not installed.
#
# Environment for `start` (all optional):
#   IMAP_PORT IMAPS_PORT POP3_PORT POP3S_PORT   loopback ports (default 12143 12993 12110 12995)
#   CERT_DIR     reuse cert.pem/key.pem from this directory instead of making new ones
#
# Courier's programs read their configuration (/etc/courier/authdaemonrc, userdb.dat),
# load authentication modules (/usr/lib/courier-authlib) and meet at the authdaemond
# socket (/run/courier/authdaemon/socket) at paths fixed when they were built. So an
# instance runs in a private mount namespace (`unshare -m`, needs root) where DIR/etc,
# DIR/run and the unpacked modules are bind-mounted over those paths: instances never
# see each other's users or sockets, and nothing of theirs is visible outside.
#
# Users (authdaemond + userdb, DIR/etc/userdb.dat) log in with the names given and
# their passwords (LOGIN, AUTHENTICATE PLAIN; POP3 USER/PASS and AUTH PLAIN); their
# Maildirs (DIR/mail/USER) are owned by the unprivileged user `mail`. Courier's layout
# is the `INBOX.` prefix with `.` as separator, without special-use attributes;
# `start` creates INBOX.Sent, INBOX.Drafts, INBOX.Trash and INBOX.Junk for each user.
# DIR/cert.pem is the self-signed certificate (CN=localhost, SAN localhost and
# 127.0.0.1); clients trust it with `--ca-file DIR/cert.pem`. DIR/courier.log holds
# what the daemons print.
set -euo pipefail

die() { echo "testbed-courier: $*" >&2; exit 1; }

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop DIR [USER:PASSWORD...]"
ROOT=${MAILFERRY_TESTBED_ROOT:-/opt/mailferry-testbed}/courier

case "$cmd" in
stop)
  # The instance's processes are those in its private mount namespace (couriertcpd
  # makes itself a process group of its own, so a group would miss some).
  [ -s "$dir/mntns" ] || exit 0
  ns=$(cat "$dir/mntns")
  members() {
    local p
    for p in /proc/[0-9]*; do
      [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
    done
    return 0
  }
  for sig in TERM TERM TERM KILL KILL; do
    pids=$(members)
    [ -n "$pids" ] || exit 0
    # shellcheck disable=SC2086
    kill -"$sig" $pids 2>/dev/null || true
    for _ in $(seq 1 20); do [ -n "$(members)" ] || exit 0; sleep 0.05; done
  done
  exit 0 ;;
start) ;;
*) die "unknown command '$cmd' (start or stop)" ;;
esac
shift 2

[ -x "$ROOT/usr/lib/courier/courier/imaplogin" ] || die "Courier is not unpacked in $ROOT: run scripts/install-deps.sh"
[ "$(id -u)" = 0 ] || die "needs root (a private mount namespace, and logins that switch to the user mail)"
command -v unshare >/dev/null || die "unshare (util-linux) is missing"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 755 "$dir"
uid=$(id -u mail); gid=$(id -g mail)
mkdir -p "$dir/etc" "$dir/run/authdaemon" "$dir/mail"
chmod 750 "$dir/run/authdaemon"
chown "$uid:$gid" "$dir/mail"

if [ -n "${CERT_DIR:-}" ] && [ -f "$CERT_DIR/cert.pem" ]; then
  cp "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem" "$dir/"
elif [ ! -f "$dir/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"
fi
chmod 644 "$dir/cert.pem"; chmod 600 "$dir/key.pem"
# couriertls wants the key and the certificate in one file.
cat "$dir/key.pem" "$dir/cert.pem" > "$dir/etc/server.pem"; chmod 600 "$dir/etc/server.pem"
# The RFC 7919 group: no slow parameter generation.
openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out "$dir/etc/dhparams.pem" 2>/dev/null \
  || die "openssl could not write DH parameters"

# Users: userdb.dat (home, Maildir, uid) and userdbshadow.dat (password hashes),
# written with Courier's own makedatprog as makeuserdb would.
makedat=$ROOT/usr/lib/courier/courier-authlib/makedatprog
: > "$dir/users"
{
  for up in "$@"; do
    u=${up%%:*}
    printf '%s\tuid=%s|gid=%s|home=%s|mail=%s|_=\n' "$u" "$uid" "$gid" "$dir/mail/$u" "$dir/mail/$u/Maildir"
  done
  echo .
} | "$makedat" - "$dir/etc/userdb.tmp" "$dir/etc/userdb.dat" || die "makedatprog failed (userdb.dat)"
{
  for up in "$@"; do
    printf '%s\tsystempw=%s\n' "${up%%:*}" "$(printf '%s' "${up#*:}" | openssl passwd -6 -stdin)"
  done
  echo .
} | "$makedat" - "$dir/etc/userdbshadow.tmp" "$dir/etc/userdbshadow.dat" || die "makedatprog failed (userdbshadow.dat)"
chmod 600 "$dir/etc/userdbshadow.dat"
for up in "$@"; do
  u=${up%%:*}
  echo "$u" >> "$dir/users"
  m="$dir/mail/$u/Maildir"
  for f in "" .Sent .Drafts .Trash .Junk; do
    mkdir -p "$m/$f/cur" "$m/$f/new" "$m/$f/tmp"
    [ -z "$f" ] || touch "$m/$f/maildirfolder"
  done
  printf 'INBOX.Sent\nINBOX.Drafts\nINBOX.Trash\nINBOX.Junk\n' > "$m/courierimapsubscribed"
  chown -R "$uid:$gid" "$dir/mail/$u"
done

cat > "$dir/etc/authdaemonrc" <<CONF
authmodulelist="authuserdb"
authmodulelistorig="authuserdb"
daemons=2
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=0
DEFAULTOPTIONS=""
LOGGEROPTS=""
CONF

# The settings Debian's /etc/courier/imapd, imapd-ssl, pop3d and pop3d-ssl hold,
# for this instance. No IMAP_EMPTYTRASH: Courier would purge old messages from Trash.
cat > "$dir/etc/env" <<CONF
PATH=$ROOT/usr/bin:$ROOT/usr/sbin:/usr/bin:/bin
LD_LIBRARY_PATH=$ROOT/usr/lib
IMAP_CAPABILITY="IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE"
IMAP_CAPABILITY_TLS="\$IMAP_CAPABILITY AUTH=PLAIN"
IMAP_KEYWORDS=1
IMAP_ACL=1
IMAP_PROXY=0
IMAP_IDLE_TIMEOUT=60
IMAP_MAILBOX_SANITY_CHECK=1
IMAP_DISABLETHREADSORT=0
IMAP_CHECK_ALL_FOLDERS=0
IMAP_OBSOLETE_CLIENT=0
IMAP_UMASK=022
IMAP_USELOCKS=1
IMAP_SHAREDINDEXFILE=$dir/etc/shared/index
IMAP_ENHANCEDIDLE=0
IMAP_TRASHFOLDERNAME=Trash
IMAP_MOVE_EXPUNGE_TO_TRASH=0
IMAP_TLS_REQUIRED=0
IMAPDSTARTTLS=YES
POP3AUTH="PLAIN LOGIN"
POP3AUTH_TLS="PLAIN LOGIN"
POP3_PROXY=0
POP3_TLS_REQUIRED=0
MIME_UNICODE_MESSAGE_TYPE=message/global
COURIERTLS=$ROOT/usr/bin/couriertls
TLS_CERTFILE=$dir/etc/server.pem
TLS_DHPARAMS=$dir/etc/dhparams.pem
TLS_VERIFYPEER=NONE
SENDMAIL=/bin/false
CONF

lib=$ROOT/usr/lib/courier/courier
tcpd="$ROOT/usr/sbin/couriertcpd -address=127.0.0.1 -maxprocs=100 -maxperip=100 -nodnslookup -noidentlookup"
cat > "$dir/run.sh" <<RUN
set -e
readlink /proc/\$\$/ns/mnt > "$dir/mntns"
mount --bind "$dir/etc" /etc/courier
mount --bind "$dir/run" /run/courier
mount --bind "$ROOT/usr/lib/courier-authlib" /usr/lib/courier-authlib
set -a
. "$dir/etc/env"
set +a
$ROOT/usr/lib/courier/courier-authlib/authdaemond &
IMAP_TLS=0 $tcpd ${IMAP_PORT:-12143} $lib/imaplogin $ROOT/usr/bin/imapd Maildir &
IMAP_TLS=1 IMAP_STARTTLS=NO $tcpd ${IMAPS_PORT:-12993} $ROOT/usr/bin/couriertls -server -tcpd $lib/imaplogin $ROOT/usr/bin/imapd Maildir &
POP3_TLS=0 POP3_STARTTLS=YES $tcpd ${POP3_PORT:-12110} $lib/courierpop3login $lib/courierpop3d Maildir &
POP3_TLS=1 POP3_STARTTLS=NO $tcpd ${POP3S_PORT:-12995} $ROOT/usr/bin/couriertls -server -tcpd $lib/courierpop3login $lib/courierpop3d Maildir &
wait
RUN

for d in /etc/courier /run/courier /usr/lib/courier-authlib; do [ -d "$d" ] || mkdir -p "$d"; done
rm -f "$dir/mntns"
setsid unshare -m --propagation private env -i bash "$dir/run.sh" </dev/null >>"$dir/courier.log" 2>&1 &
for _ in $(seq 1 100); do [ -s "$dir/mntns" ] && break; sleep 0.02; done
[ -s "$dir/mntns" ] || die "courier did not start; see $dir/courier.log"

# Ready when a user can log in over IMAPS (authdaemond answers) and POP3S answers.
python3 - "$dir" "${IMAPS_PORT:-12993}" "${POP3S_PORT:-12995}" "$@" <<'PY' || die "not ready; see $dir/courier.log"
import imaplib, poplib, ssl, sys, time
d, imaps, pop3s, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
ctx = ssl.create_default_context(cafile=d + "/cert.pem")
deadline = time.time() + 10
while True:
    try:
        imap = imaplib.IMAP4_SSL("localhost", imaps, ssl_context=ctx, timeout=10)
        if users:
            name, pw = users[0].split(":", 1)
            imap.login(name, pw)
        imap.logout()
        pop = poplib.POP3_SSL("localhost", pop3s, context=ctx, timeout=10)
        pop.quit()
        break
    except (OSError, imaplib.IMAP4.error, poplib.error_proto) as e:
        if time.time() > deadline:
            sys.exit("testbed-courier: %s" % e)
        time.sleep(0.05)
PY
