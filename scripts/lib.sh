# Helpers shared by scripts/test.sh, bench/run.sh and bench/counters.sh; sourced, not run. Debian 12:
# system packages with apt-get (as root, or with sudo), a virtualenv kept in step with a
# requirements file.

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- system packages -------------------------------------------------------------------

APT_UPDATED=
SUDO=()
# need_root WHAT...: sudo for the apt-get calls when not root; WHAT says why, if it fails.
need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
        SUDO=(sudo)
    fi
}
# apt_update: `apt-get update`, once per run.
apt_update() {
    if [ -z "$APT_UPDATED" ]; then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
}
# apt_install PACKAGE...
apt_install() {
    say "installing system packages: $*"
    need_root "$@"
    apt_update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- a virtualenv ------------------------------------------------------------------------

# ensure_venv PYTHON VENV REQUIREMENTS WHAT: a virtualenv at VENV made with PYTHON, holding
# REQUIREMENTS; made again when REQUIREMENTS or PYTHON's version changes (their hash is
# kept in VENV/.requirements.sha256). WHAT names it in the messages ("test", "bench").
ensure_venv() {
    local python="$1" venv="$2" requirements="$3" what="$4"
    local want_hash stamp="$venv/.requirements.sha256"
    [ -f "$requirements" ] || die "$requirements is missing"
    want_hash="$( (cat "$requirements"; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want_hash" ]; then
        say "$what virtualenv is up to date ($venv)"
        return
    fi
    say "creating the $what virtualenv at $venv (with $python)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
        # Debian splits venv/ensurepip into python3-venv.
        rm -rf "$venv"
        apt_install python3-venv
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" \
        || die "pip could not install $requirements into $venv (its output is above)"
    echo "$want_hash" > "$stamp"
}
