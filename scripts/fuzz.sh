#!/usr/bin/env bash
# Fuzz every parser for SECONDS each (default 600), one target after another, with
# cargo-fuzz on the nightly toolchain. Not part of CI: CI replays the committed inputs
# (fuzz/regressions/<target>/) with stable Rust (`fuzz_regressions` tests in rsgi-proto,
# rsgi and rsgid).
#
#   scripts/fuzz.sh                 # every target, 600 s each
#   scripts/fuzz.sh 60              # every target, 60 s each
#   scripts/fuzz.sh 300 ini xml     # these targets only
#   scripts/fuzz.sh keep            # cmin each corpus, copy 30 inputs to fuzz/regressions/
#
# Needs: `rustup toolchain install nightly` and `cargo install cargo-fuzz`.
# One fuzzer process at a time (no -jobs/-workers: the machines are shared), under
# `nice -n 19`. The working corpus grows in fuzz/corpus/<target>/ (not committed), seeded
# from fuzz/regressions/<target>/; crashes, timeouts (-timeout, 10 s per input) and
# out-of-memory inputs (-rss_limit_mb) land in fuzz/artifacts/<target>/ and make the
# script exit 1. Logs: fuzz/logs/<target>.log. `keep` minimises the corpora and copies a
# spread of 30 inputs per target to fuzz/regressions/<target>/; a fixed crash's input
# goes there by hand (named after the bug).
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
ALL_TARGETS=(uwsgi_packet http_head ini xml control notify stats_addr)
if [ "${1:-}" = keep ]; then
    # `scripts/fuzz.sh keep [TARGET...]`: minimise each working corpus (cargo fuzz cmin)
    # and commit-ready copy up to 30 of its inputs, spread over the size range, to
    # fuzz/regressions/<target>/cmin-<name> (replacing the previous cmin-* inputs).
    shift
    TARGETS=("$@")
    [ "${#TARGETS[@]}" -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
    mkdir -p logs
    for t in "${TARGETS[@]}"; do
        [ -d "corpus/$t" ] || continue
        nice -n 19 cargo +nightly fuzz cmin -O "$t" "corpus/$t" -- -rss_limit_mb=2048 -timeout=10 \
            >"logs/$t.cmin.log" 2>&1 || { echo "cmin $t failed: fuzz/logs/$t.cmin.log" >&2; exit 1; }
        n=$(find "corpus/$t" -type f | wc -l)
        rm -f "regressions/$t"/cmin-*
        ls -S -r "corpus/$t" | awk -v n="$n" -v k=30 '{a[NR] = $0}
            END { if (n <= k) { for (i = 1; i <= n; i++) print a[i] }
                  else { for (i = 0; i < k; i++) print a[int(i * (n - 1) / (k - 1)) + 1] } }' \
            | sort -u | while read -r f; do cp "corpus/$t/$f" "regressions/$t/cmin-${f:0:12}"; done
        echo "$t: $n inputs after cmin, kept $(find "regressions/$t" -name 'cmin-*' | wc -l)"
    done
    exit 0
fi
SECONDS_EACH="${1:-600}"
shift || true
TARGETS=("$@")
if [ "${#TARGETS[@]}" -eq 0 ]; then
    TARGETS=("${ALL_TARGETS[@]}")
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
