#!/usr/bin/env bash
# Build the container image from the repository's Dockerfile with podman and check that it
# runs as documented. By hand, as root; not part of CI (it needs podman, and the release
# build inside the image takes many minutes).
#
#   scripts/image-check.sh                      # base images, build, run checks
#   RSGI_IMAGE_NO_BUILD=1 scripts/image-check.sh  # check the image `rsgi` already built
#
# Needs: podman (apt-get install podman), curl, nsenter, debootstrap (only when
# debian:12 cannot be pulled), /usr/bin/python3 with python3-yaml.
#
# What it does, printing one line per check:
# 1. Base images: `debian:12` and `debian:12-slim` as they are in local storage, else
#    pulled, else (no registry reachable) made here: `debootstrap --variant=minbase
#    bookworm` (kept in target/image-check/bookworm.minbase), with the APT sources of the
#    official image (bookworm, bookworm-updates, bookworm-security) and its apt
#    docker-clean setting (no .deb or package cache kept), `podman import`ed as
#    localhost/debian:12 and tagged localhost/debian:12-slim: the same rootfs for both (the
#    official slim image only drops documentation and locales). The host's
#    /usr/local/share/ca-certificates/*.crt go in too (a TLS-intercepting proxy's CA:
#    rustup and cargo in the build use HTTPS); the image label org.rsgi.base says so.
# 2. `podman build -t rsgi .` (log: target/image-check/build.log); the image's USER is
#    numeric and not root, rsgi/rsgid/rsgictl find all their shared libraries (ldd), rsgi
#    has no libpython (CPython's core is linked in).
# 3. examples/vassals mounted read-only at /etc/rsgi/vassals, the metrics port published
#    on 127.0.0.1: /readyz and /livez answer 200 from the host, PID 1 is rsgid, the hello
#    vassal answers "Hello World" on 127.0.0.1:8001 in the container's network namespace
#    (nsenter), `rsgictl health` says both example vassals are ready, every process in
#    the container runs as uid 10001 (user rsgi), the log is JSON lines; `podman stop`
#    (SIGTERM, then SIGKILL after 40 s, the examples' grace period) ends it with exit code
#    0 within stop_timeout + 1 s and without SIGKILL, rsgid's last log line "rsgid stopped".
# 4. The vassal of examples/kubernetes/deployment.yaml's ConfigMap (http-socket
#    0.0.0.0:8000, chdir /srv/hello), with a read-only root filesystem: GET / through the
#    published port answers "Hello World"; beside it a vassal importing 14 C modules of the
#    standard library (_ssl, _sqlite3, _ctypes, ...: none may fail, some must come from
#    lib-dynload, i.e. find the C API exported by the stripped rsgi); stop as in 3.
#
# This machine's quirks, applied only when detected (and printed): cgroups v1 with a
# controller left on the v2 hierarchy (crun refuses: "cgroups in hybrid mode not
# supported") -> `--runtime runc`; no CAP_SYS_RESOURCE (podman asks for RLIMIT_NOFILE
# 1048576 by default) -> explicit `--ulimit nofile` and `nproc` within the hard limits.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
WORK="$ROOT/target/image-check"
IMAGE=rsgi
NAME="rsgi-image-check-$$"
say() { printf '==> %s\n' "$*" >&2; }
ok() { printf 'ok   %s\n' "$*"; }
die() { printf 'FAIL %s\n' "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (podman, nsenter, debootstrap)"
for tool in podman curl nsenter; do
    command -v "$tool" >/dev/null || die "$tool missing (apt-get install podman curl util-linux)"
done
/usr/bin/python3 -c 'import yaml' 2>/dev/null || die "python3-yaml missing (apt-get install python3-yaml)"
mkdir -p "$WORK"
containers=()
cleanup() {
    for c in "${containers[@]}"; do podman rm -f -v "$c" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

# --- podman on this machine -------------------------------------------------------------
PODMAN=(podman)
LIMITS=()
if grep -q . /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null && [ -d /sys/fs/cgroup/memory ]; then
    command -v runc >/dev/null || die "hybrid cgroups (v1 + $(cat /sys/fs/cgroup/unified/cgroup.controllers) on v2): crun refuses them; apt-get install runc"
    PODMAN+=(--runtime runc)
    say "hybrid cgroups ($(tr '\n' ' ' </sys/fs/cgroup/unified/cgroup.controllers)on v2): podman --runtime runc"
fi
cap_eff=$((16#$(awk '/^CapEff/ {print $2}' /proc/self/status)))
if (( ((cap_eff >> 24) & 1) == 0 )); then
    nofile="$(ulimit -Hn)"
    nproc="$(ulimit -Hu)"
    # podman lowers its own RLIMIT_NPROC to 32768 before it starts the runtime.
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
    LIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
    say "no CAP_SYS_RESOURCE: ${LIMITS[*]}"
fi
pm() { "${PODMAN[@]}" "$@"; }
printf 'podman: %s; runtime: %s\n' "$(podman --version)" "$(pm info --format '{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Version}}' | head -n 1)"

# --- 1. base images ---------------------------------------------------------------------
base_label() { pm image inspect --format '{{index .Labels "org.rsgi.base"}}' "$1" 2>/dev/null; }
if ! pm image exists debian:12 || ! pm image exists debian:12-slim; then
    say "pulling debian:12 and debian:12-slim"
    if ! { timeout 300 podman pull docker.io/library/debian:12 \
            && timeout 300 podman pull docker.io/library/debian:12-slim; } >"$WORK/pull.log" 2>&1; then
        say "no registry ($(tail -n 1 "$WORK/pull.log")); making debian:12 with debootstrap"
        command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
        R="$WORK/bookworm.minbase"
        if [ ! -f "$R/.complete" ]; then
            rm -rf "$R"
            debootstrap --variant=minbase bookworm "$R" http://deb.debian.org/debian \
                >"$WORK/debootstrap.log" 2>&1 || die "debootstrap failed (see $WORK/debootstrap.log)"
            rm -f "$R/etc/apt/sources.list" "$R"/var/cache/apt/archives/*.deb
            rm -rf "$R"/var/lib/apt/lists/*
            cat >"$R/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
            touch "$R/.complete"
        fi
        # The host's local CA certificates (Debian's place for a site's own CAs, e.g. of a
        # TLS-intercepting proxy), so that HTTPS in the build (rustup, crates.io) trusts
        # what this host trusts: the build's `apt-get install ca-certificates` adds them.
        # apt's caches as the official image keeps them: none (its docker-clean).
        clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"'
        printf 'DPkg::Post-Invoke { %s; };\nAPT::Update::Post-Invoke { %s; };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
            "$clean" "$clean" >"$R/etc/apt/apt.conf.d/docker-clean"
        label=debootstrap-minbase-bookworm
        rm -rf "$R/usr/local/share/ca-certificates"
        mkdir -p "$R/usr/local/share/ca-certificates"
        if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
            cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
            label="$label+host-local-ca($(cd /usr/local/share/ca-certificates && echo *.crt | tr ' ' ','))"
        fi
        tar -C "$R" --numeric-owner --exclude=./.complete -cf - . \
            | pm import --change 'CMD ["bash"]' \
                --change "LABEL org.rsgi.base=$label" - localhost/debian:12 >"$WORK/import.log" 2>&1 \
            || die "podman import failed (see $WORK/import.log)"
        pm tag localhost/debian:12 localhost/debian:12-slim
    fi
fi
for b in debian:12 debian:12-slim; do
    printf 'base %-15s %s %s\n' "$b" "$(pm image inspect --format '{{.Id}}' "$b" | cut -c1-12)" \
        "$(base=$(base_label "$b"); echo "${base:-(pulled)}")"
done
ok "base images"

# --- 2. build ---------------------------------------------------------------------------
if [ -z "${RSGI_IMAGE_NO_BUILD:-}" ]; then
    say "podman build -t $IMAGE . (log: $WORK/build.log)"
    t0=$(date +%s)
    pm build "${LIMITS[@]}" -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
        || { tail -n 30 "$WORK/build.log"; die "podman build failed (see $WORK/build.log)"; }
    ok "podman build -t $IMAGE . in $(( $(date +%s) - t0 )) s"
    versions="$(grep -E '^(rustc|cargo) [0-9]' "$WORK/build.log" || true)"
    sed 's/^/     build stage: /' <<<"${versions:-(rustc --version: a cached layer)}"
fi
pm image exists "$IMAGE" || die "no image $IMAGE (build it, or unset RSGI_IMAGE_NO_BUILD)"
user="$(pm image inspect --format '{{.Config.User}}' "$IMAGE")"
[[ "$user" =~ ^[0-9]+(:[0-9]+)?$ ]] || die "USER '$user' is not numeric (Kubernetes runAsNonRoot cannot verify it)"
[ "${user%%:*}" != 0 ] || die "USER is root"
ok "USER $user (numeric, not root); image size $(( $(pm image inspect --format '{{.Size}}' "$IMAGE") / 1000000 )) MB"
libs="$(pm run --rm "${LIMITS[@]}" --entrypoint ldd "$IMAGE" /usr/bin/rsgi /usr/bin/rsgid /usr/bin/rsgictl)"
if grep -q 'not found' <<<"$libs"; then echo "$libs"; die "a shared library is missing in the image"; fi
if grep -q libpython <<<"$libs"; then die "rsgi links libpython dynamically (expected static)"; fi
ok "ldd: every library found, no libpython: $(grep -o '^\s*lib[^ ]*' <<<"$libs" | sort -u | tr -d '\t ' | tr '\n' ' ')"

# --- helpers ----------------------------------------------------------------------------
# wait_http URL CODE SECONDS: poll until GET URL answers CODE.
wait_http() {
    local deadline=$(( $(date +%s) + $3 )) code
    while :; do
        code="$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" || true)"
        [ "$code" = "$2" ] && return 0
        [ "$(date +%s)" -lt "$deadline" ] || { echo "last answer: $code"; return 1; }
        sleep 0.5
    done
}
# check_processes NAME: PID 1 is rsgid; every process runs as uid 10001.
check_processes() {
    local pid n bad
    pid="$(pm inspect --format '{{.State.Pid}}' "$1")"
    [ "$(cat "/proc/$pid/comm")" = rsgid ] || die "PID 1 of the container is $(cat "/proc/$pid/comm"), not rsgid"
    pm top "$1" pid user huser args >"$WORK/top.txt"
    n=$(( $(wc -l <"$WORK/top.txt") - 1 ))
    bad="$(awk 'NR > 1 && ($2 != "rsgi" || $3 != "10001")' "$WORK/top.txt")"
    [ -z "$bad" ] || { cat "$WORK/top.txt"; die "processes not running as rsgi (10001): $bad"; }
    ok "PID 1 is rsgid (host pid $pid); all $n processes run as rsgi (uid 10001):"
    sed 's/^/     /' "$WORK/top.txt"
}
# stop_and_check NAME: podman stop (SIGTERM; SIGKILL after 40 s); exit code 0, no SIGKILL,
# within stop_timeout (25 s) + 1 s.
stop_and_check() {
    local t0 t1 code
    t0=$(date +%s.%N)
    pm stop -t 40 "$1" >/dev/null 2>"$WORK/stop.err"
    t1=$(date +%s.%N)
    code="$(pm inspect --format '{{.State.ExitCode}}' "$1")"
    if grep -qi sigkill "$WORK/stop.err"; then cat "$WORK/stop.err"; die "podman stop had to SIGKILL"; fi
    [ "$code" = 0 ] || { pm logs --tail 20 "$1"; die "exit code $code after SIGTERM (expected 0)"; }
    awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 26) }' \
        || die "stopping took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (> stop_timeout + 1 s)"
    pm logs "$1" >"$WORK/stop.log" 2>&1
    grep -q '"message":"rsgid stopped"' "$WORK/stop.log" || die "no \"rsgid stopped\" in the log"
    ok "podman stop: exit code 0 after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s, no SIGKILL; last line: $(tail -n 1 "$WORK/stop.log")"
}

# --- 3. examples/vassals ----------------------------------------------------------------
say "run 1: examples/vassals at /etc/rsgi/vassals (read-only)"
c="$NAME-examples"
containers+=("$c")
pm run -d --name "$c" "${LIMITS[@]}" -p 127.0.0.1::9192 \
    -v "$ROOT/examples/vassals:/etc/rsgi/vassals:ro" "$IMAGE" >/dev/null
metrics="$(pm port "$c" 9192/tcp | head -n 1)"
wait_http "http://$metrics/readyz" 200 90 || { pm logs "$c" | tail -n 30; die "/readyz is not 200 within 90 s"; }
ok "GET http://$metrics/readyz: 200 (container port 9192)"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$metrics/livez")" = 200 ] || die "/livez is not 200"
ok "GET http://$metrics/livez: 200"
pid="$(pm inspect --format '{{.State.Pid}}' "$c")"
body="$(nsenter -t "$pid" -n curl -sS -m 10 http://127.0.0.1:8001/)" || die "the hello vassal does not answer on 127.0.0.1:8001"
[ "$body" = "Hello World" ] || die "GET / of the hello vassal: '$body'"
ok "hello.ini: GET http://127.0.0.1:8001/ in the container's network namespace: Hello World"
for v in hello hello-uwsgi; do
    pm exec "$c" rsgictl health "$v" >/dev/null || die "rsgictl health $v: not ready"
done
ok "rsgictl health hello, hello-uwsgi: ready (control socket /run/rsgi/control.sock)"
pm exec "$c" rsgictl list | sed 's/^/     /'
check_processes "$c"
pm logs "$c" >"$WORK/run1.log" 2>&1
notjson="$(grep -v -m 1 '^{' "$WORK/run1.log" || true)"
[ -z "$notjson" ] || die "a log line is not JSON: $notjson"
ok "log: $(wc -l <"$WORK/run1.log") lines so far, every one a JSON object"
stop_and_check "$c"

# --- 4. the Kubernetes example's ConfigMap vassal, read-only root -----------------------
say "run 2: examples/kubernetes/deployment.yaml's ConfigMap vassal, --read-only"
mkdir -p "$WORK/k8s-vassals"
/usr/bin/python3 - "$ROOT/examples/kubernetes/deployment.yaml" "$WORK/k8s-vassals" <<'PY'
import pathlib, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap")
for key, text in cm["data"].items():
    (pathlib.Path(sys.argv[2]) / key).write_text(text)
PY
# Beside it, a vassal that imports the standard library's C modules: the image's
# libpython3.11-stdlib is complete, and extension modules from lib-dynload find the C API
# in the (stripped) rsgi.
mkdir -p "$WORK/stdlib-app"
printf '[uwsgi]\nhttp-socket = 127.0.0.1:8003\nchdir = /srv/stdlib-check\nmodule = app\n' \
    >"$WORK/k8s-vassals/stdlib-check.ini"
cat >"$WORK/stdlib-app/app.py" <<'PY'
import importlib

MODULES = ["_asyncio", "_bz2", "_ctypes", "_curses", "_decimal", "_hashlib", "_json",
           "_lzma", "_sqlite3", "_ssl", "_uuid", "pyexpat", "readline", "zlib"]


def application(environ, start_response):
    lines = []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
            lines.append(f"{name} ok {getattr(mod, '__file__', None) or 'built-in'}")
        except Exception as e:
            lines.append(f"{name} FAIL {type(e).__name__}: {e}")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("\n".join(lines) + "\n").encode()]
PY
c="$NAME-k8s"
containers+=("$c")
pm run -d --name "$c" "${LIMITS[@]}" --read-only -p 127.0.0.1::8000 -p 127.0.0.1::9192 \
    -v "$WORK/k8s-vassals:/etc/rsgi/vassals:ro" -v "$WORK/stdlib-app:/srv/stdlib-check:ro" \
    "$IMAGE" >/dev/null
metrics="$(pm port "$c" 9192/tcp | head -n 1)"
app="$(pm port "$c" 8000/tcp | head -n 1)"
wait_http "http://$metrics/readyz" 200 90 || { pm logs "$c" | tail -n 30; die "/readyz is not 200 within 90 s"; }
ok "GET http://$metrics/readyz: 200"
body="$(curl -sS -m 10 "http://$app/")" || die "no answer on the published port 8000"
[ "$body" = "Hello World" ] || die "GET / on port 8000: '$body'"
ok "deployment.yaml's hello.ini (chdir /srv/hello): GET http://$app/ (container port 8000): Hello World"
pid="$(pm inspect --format '{{.State.Pid}}' "$c")"
mods="$(nsenter -t "$pid" -n curl -sS -m 10 http://127.0.0.1:8003/)" || die "the stdlib-check vassal does not answer"
if grep -q FAIL <<<"$mods" || [ "$(grep -c ' ok ' <<<"$mods")" -lt 14 ]; then echo "$mods"; die "standard library modules missing"; fi
grep -q 'lib-dynload/.*\.so$' <<<"$mods" || { echo "$mods"; die "no extension module came from lib-dynload"; }
ok "stdlib-check: 14 C modules import ($(grep -c lib-dynload <<<"$mods") of them from lib-dynload: $(grep lib-dynload <<<"$mods" | cut -d' ' -f1 | tr '\n' ' ' | sed 's/ $//'); the rest built in)"
check_processes "$c"
stop_and_check "$c"
ok "all checks passed"
