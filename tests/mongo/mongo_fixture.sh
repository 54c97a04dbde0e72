#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Mongo-wire test server as a ctest fixture (see CMakeLists.txt beside this file):
#
#   mongo_fixture.sh start STATE   build entitle-mongo-test-server (server/, FerretDB embedded)
#                                  into STATE and, unless MONGO_URI is set, start it on a free
#                                  loopback port; its URI goes to STATE/uri
#   mongo_fixture.sh stop STATE    SIGTERM the server started by `start`, wait for it
#   mongo_fixture.sh run STATE -- CMD...
#                                  run CMD with MONGO_URI (from the environment, else STATE/uri)
#                                  and ENTITLE_MONGO_SERVER (the built binary, when there is one)
#
# Exit 77 means skipped, with the reason on stdout: no Go toolchain and no MONGO_URI. The
# Go toolchain builds through the module proxy configured on the machine (go env GOPROXY),
# with go.sum pinning every module.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
state=${2:-}
[ -n "$cmd" ] && [ -n "$state" ] || { echo "usage: $0 start|stop|run STATE [-- CMD...]" >&2; exit 2; }
mkdir -p "$state"
bin=$state/entitle-mongo-test-server
scale=${ENTITLE_TEST_TIMEOUT_MULTIPLIER:-1}

# ENTITLE_GO=/path/to/go picks a toolchain; ENTITLE_GO=none acts as if there were none.
find_go() {
  if [ -n "${ENTITLE_GO:-}" ]; then
    [ "$ENTITLE_GO" != none ] && echo "$ENTITLE_GO"
    return 0
  fi
  if command -v go >/dev/null 2>&1; then
    command -v go
  elif [ -x /usr/local/go/bin/go ]; then
    echo /usr/local/go/bin/go
  fi
}

stop_server() {
  [ -f "$state/pid" ] || return 0
  local pid
  pid=$(cat "$state/pid")
  rm -f "$state/pid"
  # Only our own server: the pid must still be that binary.
  if kill -0 "$pid" 2>/dev/null && grep -q entitle-mongo-test-server "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "mongo test server $pid ignored SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$state/uri"
}

case "$cmd" in
start)
  stop_server
  go=$(find_go)
  if [ -z "$go" ]; then
    if [ -n "${MONGO_URI:-}" ]; then
      echo "no Go toolchain: the suites use MONGO_URI from the environment"
      exit 0
    fi
    echo "skipped: no Go toolchain to build the Mongo-wire test server and MONGO_URI is unset"
    exit 77
  fi
  echo "building the Mongo-wire test server with $("$go" version)"
  # GOTOOLCHAIN=local: never fetch another toolchain; go.sum must already list every module.
  (cd "$here/server" && GOTOOLCHAIN=local GOFLAGS=-buildvcs=false "$go" build -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
  if [ -n "${MONGO_URI:-}" ]; then
    echo "MONGO_URI is set: the suites use that server, not a local one"
    exit 0
  fi
  rm -rf "$state/data" "$state/uri"
  # setsid: the server must outlive this script (ctest waits for our stdout to close).
  setsid "$bin" -dir "$state/data" -uri-file "$state/uri" -log-level error \
    </dev/null >"$state/server.log" 2>&1 &
  echo $! >"$state/pid"
  deadline=$((SECONDS + 60 * scale))
  while [ ! -s "$state/uri" ]; do
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "mongo test server exited during start-up:" >&2
      cat "$state/server.log" >&2
      rm -f "$state/pid"
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "mongo test server did not start within $((60 * scale)) s" >&2
      stop_server
      exit 1
    fi
    sleep 0.1
  done
  echo "mongo test server (FerretDB, sqlite handler) at $(cat "$state/uri"), pid $(cat "$state/pid")"
  ;;
stop)
  stop_server
  echo "mongo test server stopped"
  ;;
run)
  shift 2
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || { echo "run: no command" >&2; exit 2; }
  if [ -x "$bin" ]; then
    export ENTITLE_MONGO_SERVER=$bin
  fi
  if [ -z "${MONGO_URI:-}" ]; then
    if [ -s "$state/uri" ]; then
      MONGO_URI=$(cat "$state/uri")
      export MONGO_URI
    elif [ -z "$(find_go)" ]; then
      echo "skipped: no Go toolchain to build the Mongo-wire test server and MONGO_URI is unset"
      exit 77
    else
      echo "the mongo test server is not running: see the mongo_server_start test" >&2
      exit 1
    fi
  fi
  exec "$@"
  ;;
*)
  echo "usage: $0 start|stop|run STATE [-- CMD...]" >&2
  exit 2
  ;;
esac
