#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Requests per second of Entitle's HTTP core (bench_http, one loop) against nginx
# (one worker, access_log off) serving a static file of the same 128 bytes, both on
# 127.0.0.1 and measured with the same wrk settings. Prints both numbers and the ratio
# entitle/nginx. Exits 77 (skipped) if wrk or nginx is missing.
#
#   http_vs_nginx.sh path/to/bench_http [duration=5s] [connections=32] [threads=1]
#
# Use an optimised build without sanitizers for meaningful numbers. When taskset exists
# each server is pinned to CPU 0 and wrk to CPU 1 so they do not steal from each other.
set -euo pipefail

BENCH=${1:?usage: http_vs_nginx.sh path/to/bench_http [duration] [connections] [threads]}
DUR=${2:-5s}
CONNS=${3:-32}
THREADS=${4:-1}

for tool in wrk nginx curl; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "skip: $tool not installed" >&2
        exit 77
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

PIN_SRV=()
PIN_WRK=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    PIN_SRV=(taskset -c 0)
    PIN_WRK=(taskset -c 1)
fi

TMP=$(mktemp -d)
BENCH_PID=
NGINX_PID=
cleanup() {
    [ -n "$BENCH_PID" ] && kill "$BENCH_PID" 2>/dev/null && wait "$BENCH_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

port_in_use() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_up() {
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$1/"; then return 0; fi
        sleep 0.05
    done
    echo "server on port $1 did not come up" >&2
    return 1
}

# The same body for both servers: 128 bytes of 'x'.
mkdir -p "$TMP/www" "$TMP/logs"
head -c 128 /dev/zero | tr '\0' 'x' >"$TMP/www/index.html"
chmod 755 "$TMP" "$TMP/www"
chmod 644 "$TMP/www/index.html"

# --- Entitle
"${PIN_SRV[@]}" "$BENCH" --listen 127.0.0.1:0 >"$TMP/bench.out" 2>"$TMP/bench.err" &
BENCH_PID=$!
for _ in $(seq 1 100); do
    grep -q '^port ' "$TMP/bench.out" 2>/dev/null && break
    sleep 0.05
done
EPORT=$(awk '/^port /{print $2}' "$TMP/bench.out")
[ -n "$EPORT" ] || { echo "bench_http did not start" >&2; cat "$TMP/bench.err" >&2; exit 1; }
wait_up "$EPORT"

# --- nginx, foreground, own prefix and config
NPORT=
for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    if ! port_in_use "$p"; then NPORT=$p; break; fi
done
[ -n "$NPORT" ] || { echo "no free port for nginx" >&2; exit 1; }
cat >"$TMP/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 100000000;
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fastcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;
    default_type text/html;
    server {
        listen 127.0.0.1:$NPORT;
        root $TMP/www;
        location / { try_files /index.html =404; }
    }
}
CONF
"${PIN_SRV[@]}" "$NGINX" -p "$TMP" -e "$TMP/logs/error.log" -c "$TMP/nginx.conf" &
NGINX_PID=$!
wait_up "$NPORT"

# Both must serve the same 200 with 128 bytes.
for p in "$EPORT" "$NPORT"; do
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$p/")
    [ "$got" = "200 128" ] || { echo "port $p answered '$got'" >&2; exit 1; }
done

rps() {
    local out
    "${PIN_WRK[@]}" wrk -t"$THREADS" -c"$CONNS" -d1s "http://127.0.0.1:$1/" >/dev/null # warm-up
    out=$("${PIN_WRK[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$DUR" "http://127.0.0.1:$1/")
    if grep -q 'Non-2xx' <<<"$out"; then
        echo "$out" >&2
        echo "non-2xx responses from port $1" >&2
        exit 1
    fi
    awk '/^Requests\/sec:/{print $2}' <<<"$out"
}

E=$(rps "$EPORT")
N=$(rps "$NPORT")
echo "wrk -t$THREADS -c$CONNS -d$DUR, 128-byte body, one loop / one worker"
echo "entitle requests/sec: $E"
echo "nginx   requests/sec: $N"
awk -v e="$E" -v n="$N" 'BEGIN { printf "ratio entitle/nginx: %.2f\n", e / n }'
