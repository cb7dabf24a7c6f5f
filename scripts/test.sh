#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every check.
#
#   scripts/test.sh                 # fmt, clippy, build, all tests
#   scripts/test.sh e2e::flask      # extra arguments go to `cargo test` (a test filter)
#
# What it needs and installs when missing (Debian 12, as root, or with sudo):
#   - nginx (nginx-light) for the tests that put nginx's uwsgi_pass in front of rsgi;
#   - libpython3.11-dev, whose static libpython3.11.a vassal/build.rs links into rsgi
#     (PYO3_PYTHON=/usr/bin/python3, see .cargo/config.toml);
#   - as root, the user rsgi-tyrant (member of group rsgi-tyrant-extra), who owns the
#     vassal files of tyrant mode's tests;
#   - python3-venv, so /usr/bin/python3 can make a virtualenv;
#   - etcd-server and etcd-client (e2e::etcd; the tests run their own etcd, never the
#     distro's service), and openssl for the TLS test's certificates;
#   - promtool (for `promtool check metrics` in e2e::metrics), from Debian's prometheus
#     package: when it is not on PATH, only the promtool binary is unpacked from the
#     package into target/tools/bin. Installing the whole package would also enable and
#     start a Prometheus server (on :9090) wherever systemd runs, which a test run must
#     not do;
#   - a virtualenv at target/e2e-venv made with /usr/bin/python3 (the same CPython the
#     rsgi binary embeds), holding tests/requirements.txt (Django, Flask, ...). It is
#     rebuilt when tests/requirements.txt changes;
#   - with RSGI_TEST_DEB=1 (CI sets it in .ci/run): lintian and dpkg-dev, for
#     packaging/build-deb.sh (package contents, lintian; from the debug binaries), run
#     before the tests.
# It is idempotent, and quick when everything is already there.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
SYSTEM_PYTHON=/usr/bin/python3
VENV="$ROOT/target/e2e-venv"
REQUIREMENTS="$ROOT/tests/requirements.txt"
# say, die, need_root, apt_update, apt_install, ensure_venv
. "$ROOT/scripts/lib.sh"

# --- system packages -------------------------------------------------------------------

missing=()
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    missing+=(nginx-light)
fi
if ! dpkg -s libpython3.11-dev >/dev/null 2>&1; then
    missing+=(libpython3.11-dev)
fi
[ -x "$SYSTEM_PYTHON" ] || missing+=(python3)
# The Kubernetes manifests' check (e2e::artifacts) parses YAML with the system python.
dpkg -s python3-yaml >/dev/null 2>&1 || missing+=(python3-yaml)
# unshare and setpriv (e2e::pid1, e2e::unprivileged).
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# etcd (e2e::etcd): the tests start their own etcd on 127.0.0.1 with free ports and a
# temp data dir, and talk to it with etcdctl. Where systemd runs, the etcd-server package
# also enables and starts the distro's etcd service (on 127.0.0.1:2379); the tests never
# use it. openssl makes the TLS test's certificates.
[ -x /usr/bin/etcd ] || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The Debian package's check (RSGI_TEST_DEB=1, set by CI): lintian, dpkg-shlibdeps.
if [ -n "${RSGI_TEST_DEB:-}" ]; then
    command -v lintian >/dev/null 2>&1 || missing+=(lintian)
    command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi
# nginx lives in /usr/sbin, which is not on every user's PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
export PATH
command -v nginx >/dev/null 2>&1 || die "nginx is still missing after installing nginx-light"
[ -f /etc/nginx/uwsgi_params ] || die "/etc/nginx/uwsgi_params is missing (reinstall nginx-common)"

# promtool: the one on PATH, else target/tools/bin/promtool, unpacked from Debian's
# prometheus package (apt-get download + dpkg-deb: no service, nothing installed).
TOOLS="$ROOT/target/tools/bin"
if command -v promtool >/dev/null 2>&1; then
    RSGI_PROMTOOL="$(command -v promtool)"
elif [ -x "$TOOLS/promtool" ]; then
    RSGI_PROMTOOL="$TOOLS/promtool"
else
    say "unpacking promtool from Debian's prometheus package into $TOOLS"
    if ! apt-cache show prometheus >/dev/null 2>&1; then
        need_root prometheus
        apt_update
    fi
    deb_dir="$(mktemp -d)"
    # apt-get download writes into the working directory; _apt must be able to write it.
    chmod 0777 "$deb_dir"
    (cd "$deb_dir" && apt-get download -qq prometheus >/dev/null) \
        || die "apt-get download prometheus failed (is the Debian archive reachable?)"
    mkdir -p "$TOOLS"
    dpkg-deb --fsys-tarfile "$deb_dir"/prometheus_*.deb \
        | tar -xO ./usr/bin/promtool > "$TOOLS/promtool.tmp"
    chmod 0755 "$TOOLS/promtool.tmp"
    mv "$TOOLS/promtool.tmp" "$TOOLS/promtool"
    rm -rf "$deb_dir"
    RSGI_PROMTOOL="$TOOLS/promtool"
fi
"$RSGI_PROMTOOL" --version >/dev/null 2>&1 || die "$RSGI_PROMTOOL does not run"
export RSGI_PROMTOOL

# --- a second user for tyrant mode's tests (e2e::tyrant) ---------------------------------
# A real unprivileged user who owns vassal files, and a second group it belongs to.
if [ "$(id -u)" = 0 ]; then
    getent group rsgi-tyrant-extra >/dev/null || groupadd --system rsgi-tyrant-extra
    if ! getent passwd rsgi-tyrant >/dev/null; then
        useradd --system --user-group --no-create-home --shell /usr/sbin/nologin \
            --groups rsgi-tyrant-extra rsgi-tyrant
    fi
    id -nG rsgi-tyrant | tr ' ' '\n' | grep -qx rsgi-tyrant-extra \
        || usermod -a -G rsgi-tyrant-extra rsgi-tyrant
fi

# --- the test virtualenv ---------------------------------------------------------------

ensure_venv "$SYSTEM_PYTHON" "$VENV" "$REQUIREMENTS" test
export RSGI_TEST_VENV="$VENV"

# --- checks, build, tests --------------------------------------------------------------

say "cargo fmt --check"
cargo fmt --all -- --check || die "cargo fmt --check failed: run \`cargo fmt --all\`"
say "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings || die "clippy found problems (above)"
say "cargo build --workspace --bins"
cargo build --workspace --bins
if [ -n "${RSGI_TEST_DEB:-}" ]; then
    # The package's fast check: contents and lintian without errors, packaged from the
    # debug binaries just built (a release build would add most of CI's 30-minute budget
    # on a 2-core runner). A real package is built with packaging/build-deb.sh alone;
    # its install on a clean Debian 12 is scripts/deb-check.sh, by hand.
    say "packaging/build-deb.sh with the debug binaries (RSGI_TEST_DEB=1)"
    RSGI_DEB_NO_BUILD=1 RSGI_DEB_BIN_DIR="$ROOT/target/debug" packaging/build-deb.sh >/dev/null \
        || die "the Debian package check failed (above)"
fi
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
