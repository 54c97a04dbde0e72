#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages Entitle needs, idempotently. Sourced by ./run and ./test:
#   ent_install_packages <group>...   groups: build, run, test
# Runs apt-get as root, or through sudo; otherwise prints the missing packages and fails.

ENT_PKGS_BUILD=(build-essential cmake ninja-build pkg-config libuv1-dev node-llhttp libnng-dev
  libssl-dev libprotobuf-c-dev protobuf-c-compiler libsqlite3-dev libyaml-dev libjansson-dev
  libcurl4-openssl-dev libcmocka-dev libmongoc-dev libbson-dev)
ENT_PKGS_RUN=(openssl curl ca-certificates)
ENT_PKGS_TEST=(python3 python3-pip nginx-light wrk clang libclang-rt-14-dev)

ent_missing_packages() {
  local p missing=()
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  echo "${missing[@]}"
}

ent_install_packages() {
  local want=() g
  for g in "$@"; do
    case "$g" in
      build) want+=("${ENT_PKGS_BUILD[@]}") ;;
      run) want+=("${ENT_PKGS_RUN[@]}") ;;
      test) want+=("${ENT_PKGS_TEST[@]}") ;;
    esac
  done
  local missing
  missing=$(ent_missing_packages "${want[@]}")
  [ -z "$missing" ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo)
    else
      echo "entitle: these Debian packages are missing and I cannot install them (not root, no sudo):" >&2
      echo "  apt-get install -y $missing" >&2
      return 1
    fi
  fi
  echo "entitle: installing Debian packages: $missing"
  # shellcheck disable=SC2086
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/tmp/entitle-apt.log 2>&1; then
    "${sudo[@]}" apt-get update -q >/tmp/entitle-apt-update.log 2>&1 || true
    # shellcheck disable=SC2086
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/tmp/entitle-apt.log 2>&1; then
      echo "entitle: apt-get install failed for: $missing (log: /tmp/entitle-apt.log)" >&2
      tail -5 /tmp/entitle-apt.log >&2
      return 1
    fi
  fi
  # Debian's nginx package starts a system nginx on port 80; the benchmark runs its own.
  if [[ " $missing " == *" nginx-light "* ]]; then
    "${sudo[@]}" systemctl disable --now nginx >/dev/null 2>&1 || "${sudo[@]}" service nginx stop >/dev/null 2>&1 || true
  fi
}
