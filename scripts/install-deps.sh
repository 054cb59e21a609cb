#!/usr/bin/env bash
# Install what mailferry's quick start, tests and benchmark need, from Debian's
# packages, only when missing: Dovecot (IMAP and POP3), openssl, python3, isync
# (mbsync, for the benchmark), procps (pkill, for the server-restart test) and the
# OpenSSL headers for the build.
set -euo pipefail
need=()
command -v dovecot >/dev/null || need+=(dovecot-imapd dovecot-pop3d)
[ -x /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
[ -x /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
command -v mbsync >/dev/null || need+=(isync)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v pkill >/dev/null || need+=(procps)
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing: ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
