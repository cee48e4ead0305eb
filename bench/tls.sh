#!/usr/bin/env bash
# TLS cost on the daemon's TCP API (SPEC §5: "TLS request rate >= 70 % of
# plaintext on keep-alive connections").
#
# Starts two real `oj daemon`s from the same binary in the same run: one with
# plain TCP, one with TLS (certificates made here with openssl), then
#   1. requests/s of GET /v1/status on ONE keep-alive connection, plaintext vs
#      TLS (curl's URL globbing sends every request over the same connection);
#      prints the ratio and checks it against the target 0.7;
#   2. full TLS handshakes/s (openssl s_time -new, no session reuse), and
#      resumed handshakes/s (-reuse) for comparison.
#
# Usage: bench/tls.sh [REQUESTS] [SECONDS]      (defaults 3000 and 5)
#   OJ_BIN=path/to/oj  use that binary (default: builds target/release/oj)
# Needs: curl, openssl (both are only used by this script, not by oj).
# Exit status: 0 when the ratio meets the target, 1 otherwise.
set -euo pipefail

N=${1:-3000}
SECS=${2:-5}
TARGET=0.7
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_workdir tls

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- certificates (the recipe of docs/tls.md) --------------------------------
(
  cd "$WORK"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=oj bench CA" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout tls.key -out tls.csr
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > tls.ext
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile tls.ext -out tls.crt
) >/dev/null 2>&1

TOKEN=bench-token-$(openssl rand -hex 8)
PLAIN_PORT=$(free_port)
TLS_PORT=$(free_port)

start_daemon() { # name port tls(true|false)
  local name=$1 port=$2 tls=$3 home=$WORK/$1
  mkdir -p "$home/config/oj" "$home/state" "$home/runtime"
  cat > "$home/config/oj/config.toml" <<EOF
[listen]
tcp = "127.0.0.1:$port"
auth_token = "$TOKEN"
[tls]
enabled = $tls
cert = "$WORK/tls.crt"
key = "$WORK/tls.key"
[notify]
backend = "none"
[log]
level = "warn"
EOF
  env -i PATH="$PATH" HOME="$home" XDG_CONFIG_HOME="$home/config" XDG_STATE_HOME="$home/state" \
    XDG_RUNTIME_DIR="$home/runtime" "$OJ_BIN" daemon >"$home/out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "daemon $name did not listen on $port:" >&2; cat "$home/out" >&2; exit 1
}

start_daemon plain "$PLAIN_PORT" false
start_daemon tls "$TLS_PORT" true

# --- 1. keep-alive request rate ------------------------------------------------
rate() { # url [curl args...] -> requests/s over one connection
  local url=$1; shift
  local start end
  curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "$@" "$url?[1-200]"   # warm-up
  start=$(date +%s.%N)
  curl -s -o /dev/null --fail -H "Authorization: Bearer $TOKEN" "$@" "$url?[1-$N]"
  end=$(date +%s.%N)
  python3 -c "print(f'{$N/($end-$start):.0f}')"
}

# Interleaved rounds, best of each: the machine may be busy with other work,
# and interleaving exposes both sides to the same noise.
max() { if (( $1 > $2 )); then echo "$1"; else echo "$2"; fi; }
plain=0 tls=0 tls_h2=0
for _ in 1 2 3; do
  plain=$(max "$plain" "$(rate "http://127.0.0.1:$PLAIN_PORT/v1/status" --http1.1)")
  tls=$(max "$tls" "$(rate "https://localhost:$TLS_PORT/v1/status" --http1.1 --cacert "$WORK/ca.crt")")
  tls_h2=$(max "$tls_h2" "$(rate "https://localhost:$TLS_PORT/v1/status" --http2 --cacert "$WORK/ca.crt")")
done
ratio=$(python3 -c "print(f'{$tls/$plain:.2f}')")

# --- 2. handshakes/s -----------------------------------------------------------
hs() { # extra s_time args -> connections per real second
  openssl s_time -connect "127.0.0.1:$TLS_PORT" -CAfile "$WORK/ca.crt" -time "$SECS" "$@" 2>/dev/null \
    | awk '/connections in [0-9]+ real seconds/ {printf "%.0f\n", $1/$4; exit}'
}
full=$(hs -new)
resumed=$(hs -reuse)

echo "oj TLS benchmark (best of 3 interleaved runs of $N requests on one keep-alive connection; $SECS s per handshake run)"
printf '  plaintext HTTP/1.1        %8s req/s\n' "$plain"
printf '  TLS HTTP/1.1              %8s req/s\n' "$tls"
printf '  TLS HTTP/2                %8s req/s\n' "$tls_h2"
printf '  ratio TLS/plaintext       %8s (target >= %s)\n' "$ratio" "$TARGET"
printf '  full handshakes           %8s /s\n' "${full:-?}"
printf '  resumed handshakes        %8s /s\n' "${resumed:-?}"

python3 -c "import sys; sys.exit(0 if $ratio >= $TARGET else 1)"
