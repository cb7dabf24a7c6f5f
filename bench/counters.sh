#!/usr/bin/env bash
# The cost of rsgi's always-on shared counters (the metrics source, issue 6): the hello
# app, 1 worker, keep-alive wrk, counters on and off (RSGI_NO_COUNTERS=1) alternating in
# PAIRS pairs of DURATION each; prints each pair's ratio and the median cost.
#   bench/counters.sh [PAIRS] [DURATION]       (defaults: 5 pairs of 10 s)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh   # die
PAIRS="${1:-5}"
DURATION="${2:-10s}"
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk, or bench/run.sh)"
command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
cargo build --release -q -p rsgi
RSGI="$PWD/target/release/rsgi"
APP="$PWD/tests/apps/hello.py"   # the hello app of bench/bench.py
PORT=18931
run() {  # $1 = "on" | "off"; prints req/s
    local env=()
    [ "$1" = off ] && env=(RSGI_NO_COUNTERS=1)
    env "${env[@]}" "$RSGI" --http-socket "127.0.0.1:$PORT" --master --processes 1 \
        --wsgi-file "$APP" --disable-logging >/dev/null 2>&1 &
    local pid=$! up=
    for _ in $(seq 1 500); do
        if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then up=1; break; fi
        sleep 0.01
    done
    if [ -z "$up" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        die "rsgi (counters $1) never answered on 127.0.0.1:$PORT (port taken? its output goes to /dev/null: run it by hand to see it)"
    fi
    wrk -t2 -c64 -d2s "http://127.0.0.1:$PORT/" >/dev/null   # warm-up
    wrk -t2 -c64 -d"$DURATION" "http://127.0.0.1:$PORT/" | awk '/Requests\/sec/ { print $2 }'
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
ratios=()
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$PAIRS"); do
    on=$(run on); off=$(run off)
    r=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.4f", a / b }')
    ratios+=("$r")
    echo "pair $i: counters on $on req/s, off $off req/s, on/off $r"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v m="$median" 'BEGIN { printf "median on/off: %.4f (counting costs %.1f%% of throughput; target < 3%%)\n", m, (1 - m) * 100 }'
