#!/usr/bin/env bash
# Installs what Mailroom's tests use beyond Go: Python 3 (smtplib is in its
# standard library) with flufl.bounce (Mailman's bounce detector) dkimpy (DKIM verifier) and pyspf, swaks (with TLS), curl, mutt and tmux (to drive it), openssl,
# unbound and ldnsutils (DANE), PostgreSQL (the shared store), Chromium (the dashboard's tests), the mail clients mbsync (isync), fetchmail, getmail6 and offlineimap3, Postfix (a real next hop
# for the relay test, which runs its own instance). Does nothing when all are present; otherwise runs
# apt-get update once and installs the missing ones.
# "test-deps.sh bench" installs only what the benchmarks need: Python 3, curl, Postfix (which ships
# smtp-source and smtp-sink), Dovecot and PostgreSQL.
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
only_bench=""
[ "${1:-}" = bench ] && only_bench=yes
need=()
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if [ -z "$only_bench" ]; then
  command -v swaks >/dev/null || need+=(swaks)
  command -v mutt >/dev/null || need+=(mutt)
  command -v tmux >/dev/null || need+=(tmux)
  command -v openssl >/dev/null || need+=(openssl)
  perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl libio-socket-ssl-perl)
  # Mailman's bounce detector reads Mailroom's reports in the tests.
  /usr/bin/python3 -c 'import flufl.bounce' 2>/dev/null || need+=(python3-flufl.bounce)
  # dkimpy verifies Mailroom's DKIM signatures (PyNaCl for ed25519).
  /usr/bin/python3 -c 'import dkim, nacl' 2>/dev/null || need+=(python3-dkim python3-nacl)
  # pyspf (with dnspython) is the second opinion on SPF results.
  /usr/bin/python3 -c 'import spf, dns.resolver' 2>/dev/null || need+=(python3-spf python3-dnspython)
  # Mail clients that read over IMAP and POP3 in the tests.
  command -v mbsync >/dev/null || need+=(isync)
  command -v fetchmail >/dev/null || need+=(fetchmail)
  command -v getmail6 >/dev/null || command -v getmail >/dev/null || need+=(getmail6)
  command -v offlineimap >/dev/null || need+=(offlineimap3)
  # Headless Chromium drives the web dashboard in its tests (chromedp).
  command -v chromium >/dev/null || need+=(chromium)
fi
# Postfix and Dovecot live in /usr/sbin, which may not be on a user's PATH.
postfix=""
[ -x /usr/sbin/postfix ] || command -v postfix >/dev/null || { need+=(postfix); postfix=new; }
# Dovecot: the server mail is moved from in the migration test, and the
# anchor of the IMAP and POP3 benchmarks. It starts only when a test runs it.
daemons="$postfix"
[ -x /usr/sbin/dovecot ] || { need+=(dovecot-imapd dovecot-pop3d); daemons=new; }
# PostgreSQL: the shared store's tests and benchmark start their own
# cluster (initdb in a temporary directory); the system's must not run.
pgsql=""
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql); daemons=new; pgsql=new
fi
# unbound: the validating resolver of the DANE test, over zones signed with
# ldns-signzone (ldnsutils); the test runs its own instance on loopback.
unbound=""
if [ -z "$only_bench" ]; then
  [ -x /usr/sbin/unbound ] || { need+=(unbound); daemons=new; unbound=new; }
  command -v ldns-signzone >/dev/null || need+=(ldnsutils)
fi
if [ -n "$daemons" ]; then
  # "No configuration": no /etc/postfix/main.cf, so the package sets up no
  # system mail server. While it installs, a policy-rc.d (unless the machine
  # has one, as Docker images do) forbids it to start any service.
  [ -n "$postfix" ] && echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# scripts/test-deps.sh: no service starts while packages install\nexit 101\n' |
      $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
fi
# apt_wait runs an apt-get command, waiting up to 10 minutes for the dpkg
# and package-list locks when another apt or dpkg (an unattended upgrade)
# holds them, instead of failing at once.
apt_wait() {
  local deadline=$((SECONDS + 600)) out
  while :; do
    if out=$($SUDO apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1); then
      return 0
    fi
    if ! grep -qi 'could not get lock\|unable to lock' <<<"$out" || [ $SECONDS -ge $deadline ]; then
      echo "$out" >&2
      return 1
    fi
    echo "test-deps: another apt/dpkg holds the lock; waiting" >&2
    sleep 5
  done
}
if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]}" >&2
  apt_wait update -qq
  DEBIAN_FRONTEND=noninteractive apt_wait install -y -qq --no-install-recommends "${need[@]}"
fi
if [ -n "$postfix" ]; then
  # The tests start Postfix with their own configuration directories; the
  # system instance must never run, now or at boot.
  if [ -f /etc/postfix/main.cf ] && $SUDO /usr/sbin/postfix status 2>/dev/null; then
    $SUDO /usr/sbin/postfix stop >/dev/null 2>&1 || true
  fi
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now postfix.service >/dev/null 2>&1 || true
  fi
fi
if [ -n "$pgsql" ] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now postgresql.service >/dev/null 2>&1 || true
fi
if [ -n "$unbound" ] && [ -d /run/systemd/system ]; then
  # The system instance must not run: it would fetch the root's trust
  # anchor from the internet and take port 53.
  $SUDO systemctl disable --now unbound.service unbound-resolvconf.service >/dev/null 2>&1 || true
fi
[ -n "$only_bench" ] && exit 0
# Pebble, Let's Encrypt's ACME test server, for the ACME test (a Go module).
gobin="$(go env GOPATH)/bin"
if [ ! -x "$gobin/pebble" ]; then
  echo "test-deps: installing pebble" >&2
  GOFLAGS=-mod=mod go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1
fi
