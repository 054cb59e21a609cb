#!/usr/bin/env bash
# Start or stop a throwaway Dovecot for mailferry's tests, quick start and benchmark.
#
#   scripts/testbed.sh start DIR USER:PASSWORD...   start an instance whose files all live in DIR
#   scripts/testbed.sh stop DIR                      stop it (the files stay until you remove DIR)
#
# Environment for `start` (all optional):
#   IMAP_PORT IMAPS_PORT POP3_PORT POP3S_PORT   loopback ports (default 10143 10993 10110 10995)
#   SEPARATOR    hierarchy separator of the inbox namespace (default /)
#   NS_PREFIX    personal namespace prefix, e.g. "INBOX." (default empty)
#   MAX_CONN     mail_max_userip_connections (default 100)
#   SENT DRAFTS TRASH JUNK  names of the special-use folders (default Sent Drafts Trash Junk)
#   ARCHIVE      name of an \Archive folder (default: none)
#   NO_SPECIAL_USE=1  no special-use folders at all: none created, no \Sent etc. attributes
#                (clients create plain folders; SENT DRAFTS TRASH JUNK ARCHIVE are ignored)
#   QUOTA, MAX_MAIL_SIZE  e.g. 2M and 1M: a storage quota per user and a largest message
#   APPEND_LIMIT  bytes: announce APPENDLIMIT=n (RFC 7889) after login (Dovecot 2.3 does not
#                announce MAX_MAIL_SIZE itself)
#   PLAINTEXT_ONLY=1  no TLS at all (no STARTTLS, no IMAPS/POP3S listeners), to test refusals
#   CERT_DIR     reuse cert.pem/key.pem from this directory instead of making new ones
#   MAIL_LOCATION  Dovecot's mail_location, e.g. "mbox:/path/%u:INBOX=/path/%u/INBOX.mbox"
#                (default maildir:DIR/mail/%u); the caller makes its directories
#   MASTER_USER  ADMIN:PASSWORD: a master user (DIR/masters) that logs in to any mailbox,
#                by SASL PLAIN with the mailbox as authorization identity or as
#                `user*ADMIN` (auth_master_user_separator = *)
#   OAUTH2_INTROSPECT_URL  e.g. http://127.0.0.1:PORT/introspect: XOAUTH2 and OAUTHBEARER
#                logins, each token POSTed there (token=…) and accepted when the answer
#                is {"active": true, "username": "<the user>"} (DIR/oauth2.conf.ext)
#   OAUTH2_MECHANISMS  the OAuth2 mechanisms offered (default "xoauth2 oauthbearer")
#
# DIR/cert.pem is the self-signed certificate (CN=localhost, SAN localhost and 127.0.0.1);
# clients trust it with `--ca-file DIR/cert.pem`. DIR/users is the passwd-file: append
# `user:{PLAIN}password::::::` lines to add users while the server runs.
set -euo pipefail

die() { echo "testbed: $*" >&2; exit 1; }

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop DIR [USER:PASSWORD...]"

case "$cmd" in
stop)
  if [ -f "$dir/run/master.pid" ]; then
    pid=$(cat "$dir/run/master.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  exit 0 ;;
start) ;;
*) die "unknown command '$cmd' (start or stop)" ;;
esac
shift 2

command -v dovecot >/dev/null || die "dovecot is not installed: apt-get install -y dovecot-imapd dovecot-pop3d"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 755 "$dir"
mkdir -p "$dir/run" "$dir/state" "$dir/mail" "$dir/home"

if [ "$(id -u)" = 0 ]; then
  uid=$(id -u mail); gid=$(id -g mail)
  login_user=dovenull; internal_user=dovecot
else
  uid=$(id -u); gid=$(id -g)
  login_user=$(id -un); internal_user=$(id -un)
fi
chown "$uid:$gid" "$dir/mail" "$dir/home"

if [ -n "${CERT_DIR:-}" ] && [ -f "$CERT_DIR/cert.pem" ]; then
  cp "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem" "$dir/"
elif [ ! -f "$dir/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"
fi
chmod 644 "$dir/cert.pem"; chmod 600 "$dir/key.pem"

: > "$dir/users"
for up in "$@"; do
  echo "${up%%:*}:{PLAIN}${up#*:}::::::" >> "$dir/users"
done
chmod 644 "$dir/users"

mechanisms="plain login"
master_passdb=""
if [ -n "${MASTER_USER:-}" ]; then
  echo "${MASTER_USER%%:*}:{PLAIN}${MASTER_USER#*:}::::::" > "$dir/masters"
  chmod 644 "$dir/masters"
  master_passdb="auth_master_user_separator = *
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN $dir/masters
}"
fi
oauth2_passdb=""
if [ -n "${OAUTH2_INTROSPECT_URL:-}" ]; then
  mechanisms="plain login ${OAUTH2_MECHANISMS:-xoauth2 oauthbearer}"
  cat > "$dir/oauth2.conf.ext" <<OAUTH2
introspection_mode = post
introspection_url = $OAUTH2_INTROSPECT_URL
username_attribute = username
active_attribute = active
active_value = true
OAUTH2
  chmod 644 "$dir/oauth2.conf.ext"
  oauth2_passdb="passdb {
  driver = oauth2
  mechanisms = ${OAUTH2_MECHANISMS:-xoauth2 oauthbearer}
  args = $dir/oauth2.conf.ext
}"
fi

sep=${SEPARATOR:-/}
ssl=yes
if [ -n "${PLAINTEXT_ONLY:-}" ]; then
  ssl=no; IMAPS_PORT=0; POP3S_PORT=0
fi
cat > "$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
instance_name = mailferry-$(basename "$dir")-$$
log_path = $dir/dovecot.log
listen = 127.0.0.1
protocols = imap pop3
ssl = $ssl
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
disable_plaintext_auth = no
auth_mechanisms = $mechanisms
default_login_user = $login_user
default_internal_user = $internal_user
first_valid_uid = $uid
mail_location = ${MAIL_LOCATION:-maildir:$dir/mail/%u}
mail_max_userip_connections = ${MAX_CONN:-100}
pop3_uidl_format = %08Xu%08Xv
$master_passdb
$oauth2_passdb
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/home/%u
}
service imap-login {
  inet_listener imap {
    port = ${IMAP_PORT:-10143}
  }
  inet_listener imaps {
    port = ${IMAPS_PORT:-10993}
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = ${POP3_PORT:-10110}
  }
  inet_listener pop3s {
    port = ${POP3S_PORT:-10995}
    ssl = yes
  }
}
$(if [ -n "${QUOTA:-}${MAX_MAIL_SIZE:-}" ]; then cat <<QUOTACONF
mail_plugins = \$mail_plugins quota
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=${QUOTA:-0}
  quota_max_mail_size = ${MAX_MAIL_SIZE:-0}
}
QUOTACONF
fi)
# COMPRESS=DEFLATE (RFC 4978) for IMAP clients that ask for it.
protocol imap {
  mail_plugins = \$mail_plugins imap_zlib
$(if [ -n "${APPEND_LIMIT:-}" ]; then echo "  imap_capability = +APPENDLIMIT=${APPEND_LIMIT}"; fi)
}
namespace inbox {
  inbox = yes
  separator = $sep
  prefix = ${NS_PREFIX:-}
$(if [ -z "${NO_SPECIAL_USE:-}" ]; then cat <<SPECIALUSE
  mailbox "${SENT:-Sent}" {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox "${DRAFTS:-Drafts}" {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox "${TRASH:-Trash}" {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox "${JUNK:-Junk}" {
    special_use = \\Junk
    auto = subscribe
  }
SPECIALUSE
fi)
$(if [ -z "${NO_SPECIAL_USE:-}" ] && [ -n "${ARCHIVE:-}" ]; then cat <<ARCHIVECONF
  mailbox "$ARCHIVE" {
    special_use = \\Archive
    auto = subscribe
  }
ARCHIVECONF
fi)
}
CONF

dovecot -c "$dir/dovecot.conf" </dev/null >/dev/null 2>>"$dir/dovecot.log" || die "dovecot did not start; see $dir/dovecot.log"
for _ in $(seq 1 100); do
  [ -f "$dir/run/master.pid" ] && break; sleep 0.05
done
[ -f "$dir/run/master.pid" ] || die "dovecot did not write its pid file; see $dir/dovecot.log"
