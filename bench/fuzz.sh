#!/usr/bin/env bash
# Fuzzes the two decoders of untrusted input for a bounded time (NOT run in
# CI): `config_loader` (config file, user profile, env vars, --set through
# oj_config::load) and `job_spec` (POST /v1/jobs bodies through serde,
# JobSpec::from_json and validate). The targets live in fuzz/ (cargo-fuzz
# layout, its own workspace); their seeds in fuzz/seeds/<target>.
#
# Usage: bench/fuzz.sh [SECONDS] [TARGET...]    (default 60 s each, both targets)
# Needs cargo-fuzz (installed here with `cargo install cargo-fuzz` when
# missing) and a nightly toolchain (`rustup toolchain install nightly`).
# Without nightly, it builds the targets as plain binaries and replays the
# seeds and any saved corpus through them instead (no new inputs found, but
# the same assertions run).
# Exit status: 0 when no target crashed; 1 when one did (the input is in
# fuzz/artifacts/<target>/; replay it with
# `cargo run --manifest-path fuzz/Cargo.toml --bin <target> -- <file>`).
set -uo pipefail

SECS=${1:-60}
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=(config_loader job_spec)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FUZZ=$ROOT/fuzz
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$FUZZ/target}

replay() { # target dirs...
  cargo run -q --release --manifest-path "$FUZZ/Cargo.toml" --bin "$@"
}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "bench/fuzz.sh: no nightly toolchain (cargo-fuzz needs one): replaying seeds instead" >&2
  rc=0
  for t in "${TARGETS[@]}"; do
    dirs=("$FUZZ/seeds/$t"); [[ -d "$FUZZ/corpus/$t" ]] && dirs+=("$FUZZ/corpus/$t")
    replay "$t" "${dirs[@]}" || rc=1
  done
  exit $rc
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "bench/fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz || { echo "bench/fuzz.sh: cannot install cargo-fuzz" >&2; exit 1; }
fi

rc=0
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$FUZZ/corpus/$t"
  echo "bench/fuzz.sh: fuzzing $t for $SECS s" >&2
  log=$(mktemp -t "oj-fuzz-$t.XXXXXX")
  # First dir = the corpus libFuzzer grows; seeds are read only. No
  # sanitizer: the fuzzed code is safe Rust (what is sought is a panic), and
  # AddressSanitizer made config_loader ten times slower.
  (cd "$ROOT" && cargo +nightly fuzz run --sanitizer none --fuzz-dir "$FUZZ" "$t" "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) >"$log" 2>&1
  code=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -o '[0-9]*')
  corpus=$(ls "$FUZZ/corpus/$t" | wc -l)
  if [[ $code -eq 0 ]]; then
    summary+=("$t: ok, ${execs:-?} runs in $SECS s, coverage ${cov:-?} edges, corpus $corpus inputs")
  else
    rc=1
    summary+=("$t: FAILED (exit $code), see $log and $FUZZ/artifacts/$t/")
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 >&2
  fi
done
printf '%s\n' "${summary[@]}"
exit $rc
