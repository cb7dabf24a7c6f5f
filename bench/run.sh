#!/usr/bin/env bash
# The benchmark, in one command: installs what it needs, builds rsgi, runs everything,
# writes bench/RESULTS.md. Not run by CI. See bench/README.md.
#
#   bench/run.sh                        # the full run (about 55 min on 2 cores)
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

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
    if [ "$arg" = "--report-only" ]; then
        exec "$VENV/bin/python" "$ROOT/bench/bench.py" "$@"
    fi
done

# --- system packages -------------------------------------------------------------------

APT_UPDATED=
apt_install() {
    say "installing system packages: $*"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
        sudo=(sudo)
    fi
    if [ -z "$APT_UPDATED" ]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

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

want_hash="$( (cat "$REQUIREMENTS"; "$SYSTEM_PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.requirements.sha256"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want_hash" ]; then
    say "creating the bench virtualenv at $VENV (with $SYSTEM_PYTHON)"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! "$SYSTEM_PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        "$SYSTEM_PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want_hash" > "$stamp"
else
    say "bench virtualenv is up to date ($VENV)"
fi

# --- builds ----------------------------------------------------------------------------

say "cargo build --release (rsgi, rsgid, rsgictl)"
cargo build --release --quiet
say "cargo build --release bench/limit (the bare-hyper limit row)"
CARGO_TARGET_DIR="$ROOT/target/bench-limit" \
    cargo build --release --quiet --manifest-path "$ROOT/bench/limit/Cargo.toml"

# --- run -------------------------------------------------------------------------------

say "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine disturbs the figures)"
exec "$VENV/bin/python" "$ROOT/bench/bench.py" "$@"
