#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every check.
#
#   scripts/test.sh                 # fmt, clippy, build, all tests
#   scripts/test.sh e2e::flask      # extra arguments go to `cargo test` (a test filter)
#
# What it needs and installs when missing (Debian 12, as root, or with sudo):
#   - nginx (nginx-light) for the tests that put nginx's uwsgi_pass in front of rsgi;
#   - libpython3.11-dev, which pyo3 links against (PYO3_PYTHON=/usr/bin/python3, see
#     .cargo/config.toml);
#   - python3-venv, so /usr/bin/python3 can make a virtualenv;
#   - a virtualenv at target/e2e-venv made with /usr/bin/python3 (the same CPython the
#     rsgi binary embeds), holding tests/requirements.txt (Django, Flask, ...). It is
#     rebuilt when tests/requirements.txt changes.
# It is idempotent, and quick when everything is already there.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
SYSTEM_PYTHON=/usr/bin/python3
VENV="$ROOT/target/e2e-venv"
REQUIREMENTS="$ROOT/tests/requirements.txt"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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

missing=()
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    missing+=(nginx-light)
fi
if ! dpkg -s libpython3.11-dev >/dev/null 2>&1; then
    missing+=(libpython3.11-dev)
fi
[ -x "$SYSTEM_PYTHON" ] || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi
# nginx lives in /usr/sbin, which is not on every user's PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
export PATH
command -v nginx >/dev/null 2>&1 || die "nginx is still missing after installing nginx-light"
[ -f /etc/nginx/uwsgi_params ] || die "/etc/nginx/uwsgi_params is missing (reinstall nginx-common)"

# --- the test virtualenv ---------------------------------------------------------------

want_hash="$( (cat "$REQUIREMENTS"; "$SYSTEM_PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.requirements.sha256"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want_hash" ]; then
    say "creating the test virtualenv at $VENV (with $SYSTEM_PYTHON)"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! "$SYSTEM_PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        # Debian splits venv/ensurepip into python3-venv.
        rm -rf "$VENV"
        apt_install python3-venv
        "$SYSTEM_PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want_hash" > "$stamp"
else
    say "test virtualenv is up to date ($VENV)"
fi
export RSGI_TEST_VENV="$VENV"

# --- checks, build, tests --------------------------------------------------------------

say "cargo fmt --check"
cargo fmt --all -- --check || die "cargo fmt --check failed: run \`cargo fmt --all\`"
say "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings || die "clippy found problems (above)"
say "cargo build --workspace --bins"
cargo build --workspace --bins
say "cargo test --workspace $*"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo ends with the last crate's doc-tests, which
# are often "0 passed"): the sum over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
