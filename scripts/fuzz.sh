#!/usr/bin/env bash
# Bounded fuzzing of writ's parsers of untrusted input (targets in fuzz/fuzz_targets/):
#   identity_token  the broker's first decode of a workload identity JWT
#   writ_inspect    writ_verify::inspect (and so `writ inspect`) on any bytes
#   writ_verify     the verifier on signed writs of fuzzed Datalog, with fuzzed requests
#   policy_file     policy TOML files
#   writ_request    POST /v1/writs bodies, parsed and decided
#   revocation_sse  the verifier's revocation stream (SSE parser, entries, view)
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 10 s, every target)
#        FUZZ_SECONDS=60 scripts/fuzz.sh
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET, read-only here) and a scratch
# corpus in a temporary directory, so a run leaves the repository as it was. A crash stops the
# script with a non-zero status; libFuzzer's reproducer lands in fuzz/artifacts/TARGET/. Keep
# every crash as a regression test (a #[test] beside the code that replays the input), then fix.
#
# Needs cargo-fuzz (installed here from crates.io if missing) and a C++ compiler (libFuzzer is
# built from source). Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets stable rustc
# take the -Z flags cargo-fuzz passes. No sanitizer (the crates forbid unsafe code; libFuzzer's
# coverage and Rust's own checks find the panics), debug assertions and overflow checks on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-${FUZZ_SECONDS:-10}}
shift || true
all=(identity_token writ_inspect writ_verify policy_file writ_request revocation_sse)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! command -v cargo-fuzz >/dev/null; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi

export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --debug-assertions --release)

cd fuzz
start=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "fuzz: built in $(( $(date +%s) - start )) s" >&2

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  echo "fuzz: $target for ${seconds}s" >&2
  # -rss_limit_mb: a target's memory is bounded; -max_len: inputs up to 16 KiB (the broker's and
  # the verifier's own size limits are larger for writs, but nothing new happens past that).
  log="$scratch/$target.log"
  status=0
  cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=16384 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" | tr '\n' ' ' >&2 || true
  echo >&2
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target FAILED (status $status); reproducer in fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, $(( $(date +%s) - start )) s in all" >&2
