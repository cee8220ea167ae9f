#!/usr/bin/env bash
# Installs what Mailroom's tests use beyond Go: Python 3 (smtplib is in its
# standard library), swaks (with TLS), curl, mutt and tmux (to drive it), openssl. Does nothing when all are
# present; otherwise runs apt-get update once and installs the missing ones.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
command -v swaks >/dev/null || need+=(swaks)
command -v curl >/dev/null || need+=(curl)
command -v mutt >/dev/null || need+=(mutt)
command -v tmux >/dev/null || need+=(tmux)
command -v openssl >/dev/null || need+=(openssl)
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl libio-socket-ssl-perl)
if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Pebble, Let's Encrypt's ACME test server, for the ACME test (a Go module).
gobin="$(go env GOPATH)/bin"
if [ ! -x "$gobin/pebble" ]; then
  echo "test-deps: installing pebble" >&2
  GOFLAGS=-mod=mod go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1
fi
