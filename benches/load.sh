#!/usr/bin/env bash
# Load run of writ's issuing path over HTTP (POST /v1/writs), one command:
#
#   benches/load.sh [--seconds 20] [--connections 32] [--threads 2] [--no-postgres] [--no-peer]
#
# Builds the release binaries, starts the test OIDC issuer (writ-test-issuer) on loopback with a
# long-lived Kubernetes-shaped RS256 token, starts `writ serve` with a temporary config, policy dir
# and root keys, and drives it with wrk: first with SQLite (a temporary file; WAL, synchronous=FULL),
# then with PostgreSQL (a fresh database on 127.0.0.1:5432, dropped afterwards). Every request
# verifies the identity token (RSA), decides policy, mints and signs a writ (Ed25519) and commits
# its record before answering 201.
#
# If ../shared/bench/openbao-jwt-login.sh exists beside the repository, the peer (OpenBao JWT
# login with durable storage) is run with the same token, key, issuer, audience and load, and the
# final table gives writ/OpenBao ratios. Without it the peer is simply not run.
#
# Environment: WRIT_BENCH_SECONDS (default 20), WRIT_BENCH_CONNECTIONS (32), WRIT_BENCH_THREADS (2),
# WRIT_BENCH_POSTGRES_URL (admin URL where a database may be created;
# default postgres://postgres@127.0.0.1:5432/postgres).
# Needs: cargo, curl, wrk (apt-get install -y wrk), python3 (free ports), psql for PostgreSQL.
#
# The load generator runs on the same machine as the broker: on a small machine they compete for
# the same cores, and the figures are a lower bound for the broker alone.
set -euo pipefail

seconds=${WRIT_BENCH_SECONDS:-20}
conns=${WRIT_BENCH_CONNECTIONS:-32}
threads=${WRIT_BENCH_THREADS:-2}
postgres=1 peer=1
pg_admin=${WRIT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --no-postgres) postgres=0; shift ;;
    --no-peer) peer=0; shift ;;
    -h|--help) sed -n 2,23p "$0"; exit 0 ;;
    *) echo "unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
peer_script=$repo/../shared/bench/openbao-jwt-login.sh

for tool in cargo curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/writ-load.XXXXXX")
# Only the processes this script started, by pid; each is forgotten once it has been reaped.
issuer_pid= writ_pid= wrk_pid= pg_db=
cleanup() {
  local status=$?
  for pid in $wrk_pid $writ_pid $issuer_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in $wrk_pid $writ_pid $issuer_pid; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$pg_db" ]; then
    psql -q -X "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 ||
      psql -q -X "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null 2>&1 ||
      echo "warning: could not drop the PostgreSQL database $pg_db" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# utime + stime of a process, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cutime + cstime of this script: the CPU time of the children it has waited for (wrk)
child_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; }
# percentage of all CPUs busy between two samples of the first line of /proc/stat
busy_pct() {
  printf '%s\n%s\n' "$1" "$2" | awk '{ idle[NR] = $5 + $6; t = 0; for (i = 2; i <= NF; i++) t += $i;
    total[NR] = t } END { d = total[2] - total[1]; printf "%.0f", (d > 0 ? 100 * (1 - (idle[2] - idle[1]) / d) : 0) }'
}
# wrk prints 812.00us, 1.23ms, 1.02s: milliseconds with two decimals
to_ms() {
  awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) sub(/ms$/,"",v);
        else if (v ~ /m$/) {sub(/m$/,"",v); v*=60000} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000};
        printf "%.2f", v}'
}

# --- header -------------------------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
echo "== writ load run: POST /v1/writs over HTTP on 127.0.0.1"
echo "machine: nproc=$(nproc) cpu=\"${cpu:-unknown}\" kernel=$(uname -r)"
echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' (dirty)')  date: $(date -u +%FT%TZ)"
echo "load: wrk $threads threads, $conns connections, ${seconds}s per backend; broker log level warn"
echo "note: wrk and the broker share this machine's $(nproc) cores; figures are a lower bound for the broker alone"
# Anything else running skews the figures: say so.
stat0=$(head -n 1 /proc/stat); sleep 1; stat1=$(head -n 1 /proc/stat)
busy=$(busy_pct "$stat0" "$stat1")
echo "machine busy before the run: ${busy}%$([ "$busy" -gt 10 ] && echo '  WARNING: other work is running; the figures will be low and noisy')"
echo

# --- build --------------------------------------------------------------------------------------
echo "building release binaries..."
(cd "$repo" && cargo build --quiet --release --bin writ -p writ &&
  cargo build --quiet --release -p writ-testkit --bin writ-test-issuer)
target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
writ=$target/release/writ
test_issuer=$target/release/writ-test-issuer

# --- identity issuer ----------------------------------------------------------------------------
namespace=bench service_account=writ-bench audience=writ
"$test_issuer" --port 0 --ttl 6h --audience "$audience" --namespace "$namespace" \
  --service-account "$service_account" --token-out "$work/identity.jwt" \
  --pubkey-out "$work/issuer.pem" >"$work/issuer.out" 2>"$work/issuer.err" &
issuer_pid=$!
issuer=
for _ in $(seq 1 100); do
  issuer=$(sed -n 's/^issuer=//p' "$work/issuer.out")
  [ -n "$issuer" ] && break
  kill -0 "$issuer_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$issuer" ] || { echo "writ-test-issuer did not start:" >&2; cat "$work/issuer.err" >&2; exit 1; }
jwt=$(tr -d '\n' <"$work/identity.jwt")
echo "identity issuer: $issuer (RS256, Kubernetes-shaped token for $namespace/$service_account, aud=$audience)"

# --- broker config ------------------------------------------------------------------------------
mkdir -p "$work/policies"
cat >"$work/policies/bench.toml" <<'TOML'
[[policy]]
name = "bench"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "bench", serviceaccount = { name = "writ-bench" } } }
resources = ["orders/*", "reports/2026/*"]
operations = ["read", "write"]
services = ["orders-api", "reports-api"]
max_ttl = "10m"
default_ttl = "5m"
TOML
body='{"task":"refund-order-42","rights":[{"resource":"orders/42","operations":["read"]}],"services":["orders-api"],"ttl":300}'
printf '%s' "$body" >"$work/body.json"
cat >"$work/writ.lua" <<LUA
wrk.method = "POST"
wrk.path = "/v1/writs"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $jwt"
wrk.body = '$body'
LUA
echo "request: $body"
echo

write_config() { # database_url listen name
  cat >"$work/$3.toml" <<TOML
listen = "$2"
database_url = "$1"
key_dir = "$work/$3-keys"
policy_dir = "$work/policies"

[[issuer]]
name = "kubernetes"
issuer = "$issuer"
audience = "$audience"
agent = "k8s:{kubernetes.io/namespace}/{kubernetes.io/serviceaccount/name}"
TOML
}

declare -A result_rps result_p50 result_p99
backends=()

# run_writ NAME DATABASE_URL: start a broker, check one request, load it, stop it.
run_writ() {
  local name=$1 url=$2 port code
  port=$(free_port)
  write_config "$url" "127.0.0.1:$port" "$name"
  WRIT_LOG=warn "$writ" serve --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  writ_pid=$!
  local addr=http://127.0.0.1:$port ready=0
  for _ in $(seq 1 150); do
    if curl -fs -o /dev/null "$addr/readyz"; then ready=1; break; fi
    kill -0 "$writ_pid" 2>/dev/null || break
    sleep 0.2
  done
  if [ "$ready" != 1 ]; then
    echo "writ ($name) did not become ready:" >&2; tail -n 20 "$work/$name.log" >&2; return 1
  fi
  code=$(curl -s -o "$work/$name-one.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H "Authorization: Bearer $jwt" \
    --data-binary @"$work/body.json" "$addr/v1/writs")
  if [ "$code" != 201 ]; then
    echo "writ ($name) refused the request ($code): $(cat "$work/$name-one.json")" >&2; return 1
  fi
  echo "writ ($name): one request answered 201; loading for ${seconds}s..."
  local cpu0 cpu1 stat0 stat1 wrk0 wrk1
  cpu0=$(cpu_ticks "$writ_pid") stat0=$(head -n 1 /proc/stat) wrk0=$(child_ticks)
  # in the background and waited for, so that a signal stops the run at once
  wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency -s "$work/writ.lua" "$addr" \
    >"$work/$name-wrk.txt" 2>&1 &
  wrk_pid=$!
  wait "$wrk_pid" || true
  wrk_pid=
  cpu1=$(cpu_ticks "$writ_pid") stat1=$(head -n 1 /proc/stat) wrk1=$(child_ticks)
  kill "$writ_pid" 2>/dev/null || true
  wait "$writ_pid" 2>/dev/null || true
  writ_pid=

  local f=$work/$name-wrk.txt rps p50 p99 n bad sock
  rps=$(awk '/Requests\/sec/{print $2}' "$f")
  p50=$(awk '$1=="50%"{print $2}' "$f" | to_ms)
  p99=$(awk '$1=="99%"{print $2}' "$f" | to_ms)
  n=$(awk '/requests in/{print $1}' "$f")
  bad=$(awk '/Non-2xx/{print $NF}' "$f")
  sock=$(sed -n 's/^ *Socket errors: //p' "$f")
  if [ -z "$rps" ] || [ -z "$n" ]; then
    echo "writ ($name): wrk gave no figures:" >&2; cat "$f" >&2; return 1
  fi
  # CPU time per request (broker, and wrk itself) and cores busy: where the machine's time went
  local cpu
  cpu=$(awk -v t0="$cpu0" -v t1="$cpu1" -v w0="$wrk0" -v w1="$wrk1" -v hz="$(getconf CLK_TCK)" \
    -v n="$n" -v s="$seconds" 'BEGIN { b = (t1 - t0) / hz; w = (w1 - w0) / hz
      printf "broker_cpu_us_per_req=%.0f broker_cores=%.2f wrk_cores=%.2f", b * 1e6 / n, b / s, w / s }')
  # the whole machine (broker, wrk, database server, kernel) during the run
  cpu+=" machine_busy=$(busy_pct "$stat0" "$stat1")%"
  echo "writ-$name rps=$rps p50_ms=$p50 p99_ms=$p99 requests=$n non2xx=${bad:-0} $cpu${sock:+ socket_errors=\"$sock\"}"
  if [ -n "${bad:-}" ] && [ "$bad" != 0 ]; then
    echo "writ ($name): $bad responses were not 2xx; the run does not count. wrk said:" >&2
    cat "$f" >&2; grep -v '^\s*$' "$work/$name.log" | tail -n 20 >&2; return 1
  fi
  if [ -n "$sock" ]; then
    echo "writ ($name): socket errors ($sock); the run does not count. wrk said:" >&2
    cat "$f" >&2; return 1
  fi
  if [ -s "$work/$name.log" ]; then
    echo "writ ($name) logged at warn or above during the run:"; tail -n 5 "$work/$name.log"
  fi
  result_rps[$name]=$rps result_p50[$name]=$p50 result_p99[$name]=$p99
  backends+=("$name")
}

# --- SQLite -------------------------------------------------------------------------------------
run_writ sqlite "sqlite://$work/writ.db"

# --- PostgreSQL ---------------------------------------------------------------------------------
pg_note=
if [ "$postgres" = 0 ]; then
  pg_note="not run (--no-postgres)"
elif ! command -v psql >/dev/null; then
  pg_note="not run (psql is missing)"
elif ! psql -q -X "$pg_admin" -c 'SELECT 1' >/dev/null 2>"$work/pg.err"; then
  pg_note="not run (cannot reach $pg_admin: $(head -n 1 "$work/pg.err"))"
else
  pg_db=writ_bench_$$_$RANDOM
  psql -q -X "$pg_admin" -c "CREATE DATABASE $pg_db" >/dev/null
  run_writ postgres "${pg_admin%/*}/$pg_db"
fi
[ -z "$pg_note" ] || echo "PostgreSQL: $pg_note"

# --- peer: OpenBao JWT login --------------------------------------------------------------------
peer_line= peer_note=
if [ "$peer" = 0 ]; then
  peer_note="not run (--no-peer)"
elif [ ! -f "$peer_script" ]; then
  peer_note="not run (no ../shared/bench/openbao-jwt-login.sh beside the repository)"
else
  echo
  echo "peer: $(cd "$(dirname "$peer_script")" && pwd)/$(basename "$peer_script") for ${seconds}s..."
  if peer_line=$(bash "$peer_script" --jwt "$work/identity.jwt" --pubkey "$work/issuer.pem" \
    --issuer "$issuer" --audience "$audience" --seconds "$seconds" --connections "$conns" \
    --threads "$threads" 2>"$work/peer.err" | tail -n 1) && [ -n "$peer_line" ]; then
    echo "$peer_line"
  else
    peer_note="failed: $(tail -n 3 "$work/peer.err" | tr '\n' ' ')"
    peer_line=
  fi
fi
[ -z "$peer_note" ] || echo "OpenBao peer: $peer_note"

# --- table --------------------------------------------------------------------------------------
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
echo
echo "== results (${seconds}s, $conns connections, $threads wrk threads, nproc=$(nproc))"
if [ -n "$peer_line" ]; then
  bao_rps=$(field rps "$peer_line") bao_p50=$(field p50_ms "$peer_line")
  bao_p99=$(field p99_ms "$peer_line") bao_storage=$(field storage "$peer_line")
  printf '%-22s %10s %9s %9s %14s %14s\n' backend rps p50_ms p99_ms rps_vs_bao p99_vs_bao
  for name in "${backends[@]}"; do
    awk -v n="writ-$name" -v r="${result_rps[$name]}" -v a="${result_p50[$name]}" \
      -v b="${result_p99[$name]}" -v br="$bao_rps" -v bp="$bao_p99" 'BEGIN {
        rr = r / br; pr = b / bp
        printf "%-22s %10.1f %9.2f %9.2f %8.2fx %-5s %8.2fx %-5s\n", n, r, a, b,
          rr, (rr >= 3 ? "ok" : "<3x"), pr, (pr <= 0.25 ? "ok" : ">1/4")
      }'
  done
  printf '%-22s %10.1f %9.2f %9.2f\n' "openbao-$bao_storage" "$bao_rps" "$bao_p50" "$bao_p99"
  echo "goal: writ >= 3x OpenBao's requests/s, and p99 <= 1/4 of OpenBao's"
else
  printf '%-22s %10s %9s %9s\n' backend rps p50_ms p99_ms
  for name in "${backends[@]}"; do
    printf '%-22s %10.1f %9.2f %9.2f\n' "writ-$name" "${result_rps[$name]}" \
      "${result_p50[$name]}" "${result_p99[$name]}"
  done
  echo "no writ/OpenBao ratios: the OpenBao peer was $peer_note"
fi
