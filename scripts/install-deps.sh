#!/usr/bin/env bash
# Install what mailferry's quick start, tests and benchmark need, from Debian's
# packages, only when missing: Dovecot (IMAP and POP3), openssl, python3, isync
# (mbsync, for the benchmark), procps (pkill, for the server-restart test) and the
# OpenSSL headers for the build; and, for the cross-server tests, Cyrus IMAP/POP3
# and Courier-IMAP/POP3 unpacked beside Dovecot (see below).
set -euo pipefail
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
updated=
apt_update() { [ -n "$updated" ] || { $SUDO apt-get update -qq; updated=1; }; }

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

# Cyrus and Courier for the cross-server tests (tests/it/cross_server.rs, started by
# scripts/testbed-cyrus.sh and scripts/testbed-courier.sh). Their packages conflict
# with dovecot-imapd/dovecot-pop3d (imap-server, pop3-server), so they are not
# installed: `apt-get download` + `dpkg -x` into $TESTBED_ROOT/{cyrus,courier}, no
# maintainer script runs and nothing becomes a system service. Only the shared
# libraries their programs load come from apt (none conflicts with Dovecot).
TESTBED_ROOT=${MAILFERRY_TESTBED_ROOT:-/opt/mailferry-testbed}
cyrus_pkgs=(cyrus-imapd cyrus-pop3d cyrus-common sasl2-bin)
courier_pkgs=(courier-imap courier-pop courier-base courier-authdaemon courier-authlib courier-authlib-userdb)
testbed_libs=(libidn12 libcourier-unicode4 libgamin0 libltdl7 libgdbm6 libgdbm-compat4 libxapian30 libpcre3
  libical3 libsasl2-2 libsasl2-modules libsasl2-modules-db libwrap0 libjansson4 libicu72 libxml2
  libsqlite3-0 libdb5.3 libcom-err2 util-linux perl)
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${testbed_libs[@]}" 2>/dev/null | awk '/ok installed/{print $1}')
for l in "${testbed_libs[@]}"; do
  grep -qx "$l" <<<"$installed" || need+=("$l")
done

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  apt_update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# DIR PACKAGE...: the packages' files under DIR, unless DIR/.complete says so already.
unpack() {
  local dir=$1; shift
  [ -f "$dir/.complete" ] && return 0
  echo "unpacking ${*} into $dir" >&2
  local tmp; tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download -qq "$@" >/dev/null 2>&1); then
    apt_update
    (cd "$tmp" && apt-get download -qq "$@" >/dev/null)
  fi
  $SUDO rm -rf "$dir.new"
  $SUDO mkdir -p "$dir.new"
  for deb in "$tmp"/*.deb; do $SUDO dpkg -x "$deb" "$dir.new"; done
  (cd "$tmp" && ls ./*.deb) | $SUDO tee "$dir.new/.complete" >/dev/null
  rm -rf "$tmp"
  $SUDO rm -rf "$dir"
  $SUDO mv "$dir.new" "$dir"
}
unpack "$TESTBED_ROOT/cyrus" "${cyrus_pkgs[@]}"
unpack "$TESTBED_ROOT/courier" "${courier_pkgs[@]}"

dovecot --version >/dev/null || { echo "install-deps: dovecot does not run any more" >&2; exit 1; }
