#!/usr/bin/env bash
# Fuzz every parser for SECONDS each (default 600), one target after another, with
# cargo-fuzz on the nightly toolchain. Not part of CI: CI replays the committed inputs
# (fuzz/regressions/<target>/) with stable Rust (`fuzz_regressions` tests in rsgi-proto,
# rsgi and rsgid).
#
#   scripts/fuzz.sh                 # every target, 600 s each
#   scripts/fuzz.sh 60              # every target, 60 s each
#   scripts/fuzz.sh 300 ini xml     # these targets only
#
# Needs: `rustup toolchain install nightly` and `cargo install cargo-fuzz`.
# One fuzzer process at a time (no -jobs/-workers: the machines are shared), under
# `nice -n 19`. The working corpus grows in fuzz/corpus/<target>/ (not committed), seeded
# from fuzz/regressions/<target>/; crashes, timeouts (-timeout, 10 s per input) and
# out-of-memory inputs (-rss_limit_mb) land in fuzz/artifacts/<target>/ and make the
# script exit 1. Logs: fuzz/logs/<target>.log. To keep a new interesting input, minimise
# the corpus (`cargo +nightly fuzz cmin TARGET`), and copy the few inputs worth keeping
# (a fixed crash above all) to fuzz/regressions/<target>/.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${1:-600}"
shift || true
TARGETS=("$@")
if [ "${#TARGETS[@]}" -eq 0 ]; then
    TARGETS=(uwsgi_packet http_head ini xml control notify stats_addr)
fi
command -v cargo-fuzz >/dev/null || { echo "error: cargo-fuzz missing (cargo install cargo-fuzz)" >&2; exit 1; }

mkdir -p logs
failed=()
printf '%-14s %8s %12s %8s %s\n' target seconds execs corpus result
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    set +e
    nice -n 19 cargo +nightly fuzz run -O "$t" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 >"logs/$t.log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -n 1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then result=ok; else result="FOUND (exit $rc, see fuzz/logs/$t.log, fuzz/artifacts/$t/)"; failed+=("$t"); fi
    printf '%-14s %8s %12s %8s %s\n' "$t" "$SECONDS_EACH" "${execs:-?}" "$corpus" "$result"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "findings in: ${failed[*]}" >&2
    exit 1
fi
