#!/usr/bin/env bash
# The benchmark, in one command: installs what it needs, builds rsgi, runs everything,
# writes bench/RESULTS.md. Not run by CI. See bench/README.md.
#
#   bench/run.sh                        # the full run (about 90 min on 2 cores)
#   bench/run.sh --sections throughput --apps hello --reps 1    # a part of it
#   bench/run.sh --report-only target/bench-out/results.json    # rewrite RESULTS.md
#
# Every argument goes to bench/bench.py (`bench/run.sh --help` lists them).
#
# What it installs when missing (Debian 12, as root or with sudo): wrk, nginx-light,
# libpython3.11-dev and build-essential (uWSGI compiles from source), python3-venv; and
# a virtualenv at target/bench-venv (made with /usr/bin/python3) holding
# bench/requirements.txt: uWSGI, gunicorn, granian and Django from PyPI.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
SYSTEM_PYTHON=/usr/bin/python3
VENV="$ROOT/target/bench-venv"
REQUIREMENTS="$ROOT/bench/requirements.txt"
# say, die, apt_install, ensure_venv
. "$ROOT/scripts/lib.sh"

# --help and --report-only need nothing installed or built (bench.py is stdlib only).
for arg in "$@"; do
    case "$arg" in
    -h | --help | --report-only | --report-only=*)
        python="$VENV/bin/python"
        [ -x "$python" ] || python="$SYSTEM_PYTHON"
        exec "$python" "$ROOT/bench/bench.py" "$@"
        ;;
    esac
done

# --- system packages -------------------------------------------------------------------

case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
export PATH
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
dpkg -s libpython3.11-dev >/dev/null 2>&1 || missing+=(libpython3.11-dev)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
[ -x "$SYSTEM_PYTHON" ] || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi
command -v wrk >/dev/null 2>&1 || die "wrk is still missing"
command -v nginx >/dev/null 2>&1 || die "nginx is still missing after installing nginx-light"
[ -f /etc/nginx/uwsgi_params ] || die "/etc/nginx/uwsgi_params is missing (reinstall nginx-common)"

# --- the bench virtualenv --------------------------------------------------------------

ensure_venv "$SYSTEM_PYTHON" "$VENV" "$REQUIREMENTS" bench

# --- builds ----------------------------------------------------------------------------

say "cargo build --release (rsgi, rsgid, rsgictl)"
cargo build --release --quiet
say "cargo build --release bench/limit (the bare-hyper limit row)"
CARGO_TARGET_DIR="$ROOT/target/bench-limit" \
    cargo build --release --quiet --manifest-path "$ROOT/bench/limit/Cargo.toml"

# --- run -------------------------------------------------------------------------------

say "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine disturbs the figures)"
exec "$VENV/bin/python" "$ROOT/bench/bench.py" "$@"
