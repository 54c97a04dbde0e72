#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deploy/docker/dev-secrets.sh [DIR] — writes the development secrets docker-compose.yml
# mounts (default DIR: ./var/secrets, the directory ./run uses, same formats): a self-signed
# TLS certificate for the gateway's device port and policyd's admin API (names localhost,
# gateway, policyd), the KEK, the seal keyring, an admin token and policyd's tokens file.
# Files that exist are kept. Compose bind-mounts file secrets with their host owner and mode,
# and the containers run as uid 10001, so the files are made world-readable inside a 0700
# directory: fine for a developer machine, never for production (use real secret stores).
set -euo pipefail
dir=${1:-./var/secrets}
mkdir -p "$dir"
chmod 0700 "$dir"
umask 077

gen() { # name command...
  local f="$dir/$1"; shift
  if [ ! -s "$f" ]; then "$@" >"$f.tmp" && mv "$f.tmp" "$f"; fi
}
if [ ! -s "$dir/tls.key" ] || [ ! -s "$dir/tls.crt" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "/CN=entitle-dev" \
    -addext "subjectAltName=DNS:localhost,DNS:gateway,DNS:policyd,IP:127.0.0.1" \
    -keyout "$dir/tls.key" -out "$dir/tls.crt" >/dev/null 2>&1
fi
gen kek.hex openssl rand -hex 32
gen seal.keyring sh -c 'printf "1 %s\n" "$(openssl rand -hex 32)"'
gen admin-token openssl rand -hex 24
gen admin-tokens sh -c "printf '%s read,write\n' \"\$(cat '$dir/admin-token')\""

chmod 0644 "$dir/tls.crt" "$dir/tls.key" "$dir/kek.hex" "$dir/seal.keyring" "$dir/admin-tokens"
echo "dev secrets in $dir (admin bearer token: $dir/admin-token)"
