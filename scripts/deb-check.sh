#!/usr/bin/env bash
# Build the Debian package (packaging/build-deb.sh: release build, lintian, contents),
# then install it with `dpkg -i` on a clean Debian 12 and check that the example vassal
# answers. By hand, as root; not part of CI (it downloads Debian 12 from
# deb.debian.org: debootstrap, then apt-get for the package's dependencies).
#
#   scripts/deb-check.sh                     # build + check
#   RSGI_DEB_NO_BUILD=1 scripts/deb-check.sh # package the release binaries already built
#
# How:
# - `debootstrap bookworm` (the default variant: what a minimal Debian 12 install has)
#   into target/deb-check/bookworm.pristine once; every run copies it to a fresh
#   target/deb-check/root, so each install is on a clean system;
# - everything runs in new mount, PID and network namespaces (`unshare`): /proc and
#   /dev are mounted into the chroot there and vanish with it, and the example vassal's
#   127.0.0.1:8001 and the metrics port cannot collide with anything on this machine;
# - `dpkg -i rsgi_*.deb` (which stops at the missing Python stdlib: a fresh Debian has
#   no Python), `apt-get -f install` for the dependencies, then the package must be
#   installed (`ii`), the user `rsgi` exist, and the unit be enabled;
# - no systemd in a chroot: rsgid is started by hand as rsgid.service starts it
#   (RuntimeDirectory=rsgi -> /run/rsgi 0755, then /usr/bin/rsgid with no argument:
#   /etc/rsgi/rsgid.toml); then GET http://127.0.0.1:8001/ must answer "Hello World",
#   the app must run as user rsgi, `rsgictl list` and GET /readyz must say ready, and a
#   SIGTERM must stop everything; then `dpkg -i` again keeps an edited conffile, and
#   `dpkg --purge` leaves nothing of the package behind.
# The summary goes to stdout (packaging/RESULTS.md keeps the last one).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot, mount)"
for tool in debootstrap unshare chroot curl lintian; do
    command -v "$tool" >/dev/null || die "$tool missing (apt-get install debootstrap lintian curl)"
done

DEB="$(packaging/build-deb.sh | tail -n 1)"
[ -f "$DEB" ] || die "no package built"
WORK="$ROOT/target/deb-check"
PRISTINE="$WORK/bookworm.pristine"
R="$WORK/root"
mkdir -p "$WORK"
if [ ! -f "$PRISTINE/.complete" ]; then
    say "debootstrap bookworm (once; kept in $PRISTINE)"
    rm -rf "$PRISTINE"
    debootstrap bookworm "$PRISTINE" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
        || die "debootstrap failed (see $WORK/debootstrap.log)"
    touch "$PRISTINE/.complete"
fi
say "a fresh copy of the clean system"
rm -rf "$R"
cp -a "$PRISTINE" "$R"
rm -f "$R/.complete"
cp "$DEB" "$R/tmp/"
cp /etc/resolv.conf "$R/etc/resolv.conf"
PKG="/tmp/$(basename "$DEB")"

# Stage 1, with the network (apt-get needs it): install.
say "dpkg -i $(basename "$DEB")"
unshare --mount --propagation private --pid --fork sh -eu -c '
R="$1"; PKG="$2"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
inroot() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
echo "--- dpkg -i (expected to stop at missing dependencies on a clean system)"
inroot dpkg -i "$PKG" || true
echo "--- apt-get -f install (the dependencies from Debian 12)"
inroot apt-get update -qq
inroot apt-get -f install -y -qq -o Dpkg::Use-Pty=0 >/dev/null
' sh "$R" "$PKG" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; die "install failed"; }

state="$(chroot "$R" dpkg-query -W -f='${db:Status-Abbrev} ${Version}' rsgi)"
[ "${state%% *}" = "ii" ] || die "rsgi is not installed: $state (see $WORK/install.log)"
chroot "$R" getent passwd rsgi >/dev/null || die "the postinst made no user rsgi"
[ -L "$R/etc/systemd/system/multi-user.target.wants/rsgid.service" ] \
    || die "the postinst did not enable rsgid.service"
depends="$(chroot "$R" dpkg-query -W -f='${Depends}' rsgi)"
py="$(chroot "$R" dpkg-query -W -f='${Version}' libpython3.11-stdlib)"

# Stage 2, without the network (a private loopback): run it as the unit would.
say "rsgid by hand in the chroot"
unshare --mount --propagation private --pid --fork --net sh -eu -c '
R="$1"
ip link set lo up
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
inroot() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# RuntimeDirectory=rsgi, RuntimeDirectoryMode=0755, then ExecStart=/usr/bin/rsgid.
inroot sh -c "mkdir -p /run/rsgi && chmod 0755 /run/rsgi"
# (not through inroot: $! must be rsgid itself, which chroot and env exec)
chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/rsgid >"$R/tmp/rsgid.log" 2>&1 &
pid=$!
# The app processes, from the chroot'"'"'s /proc (this PID namespace only).
apps() { for d in "$R"/proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" = rsgi ] && echo "${d##*/}"; done; true; }
body=""
for _ in $(seq 1 150); do
    body="$(curl -fsS --max-time 2 http://127.0.0.1:8001/ 2>/dev/null)" && break
    sleep 0.2
done
[ "$body" = "Hello World" ] || { echo "FAIL: the example vassal did not answer: [$body]"; cat "$R/tmp/rsgid.log"; kill $pid; exit 1; }
echo "GET http://127.0.0.1:8001/ -> $body"
rsgi_uid="$(inroot id -u rsgi)"
app_uids="$(for p in $(apps); do awk "/^Uid:/ {print \$2}" "$R/proc/$p/status"; done | sort -u | tr "\n" " ")"
[ "$app_uids" = "$rsgi_uid " ] || { echo "FAIL: the app runs as uid(s) $app_uids, not rsgi ($rsgi_uid)"; kill $pid; exit 1; }
echo "app processes: $(apps | wc -l), all as user rsgi (uid $rsgi_uid)"
for _ in $(seq 1 50); do
    ready="$(curl -s --max-time 2 -o /dev/null -w "%{http_code}" http://127.0.0.1:9192/readyz || true)"
    [ "$ready" = 200 ] && break
    sleep 0.2
done
[ "$ready" = 200 ] || { echo "FAIL: GET /readyz answered $ready"; kill $pid; exit 1; }
echo "GET http://127.0.0.1:9192/readyz -> $ready"
echo "rsgictl list:"; inroot rsgictl list | sed "s/^/    /"
kill -TERM $pid
for _ in $(seq 1 100); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
if kill -0 $pid 2>/dev/null; then echo "FAIL: rsgid still runs 20 s after SIGTERM"; exit 1; fi
left="$(apps | wc -l)"
[ "$left" = 0 ] || { echo "FAIL: $left app processes left after rsgid stopped"; exit 1; }
echo "SIGTERM: rsgid and every app process gone"
# An upgrade (the same version again: postinst configure with the old version) keeps
# the conffiles as they are; a purge removes them and the unit.
echo "# local edit" >>"$R/etc/rsgi/rsgid.toml"
inroot dpkg -i "/tmp/$2" >/dev/null
grep -q "^# local edit" "$R/etc/rsgi/rsgid.toml" || { echo "FAIL: the upgrade lost a local edit of rsgid.toml"; exit 1; }
echo "dpkg -i again (upgrade path): ok, the edited conffile kept"
inroot dpkg --purge rsgi >/dev/null
for f in /etc/rsgi/rsgid.toml /etc/rsgi/vassals/hello.ini /usr/bin/rsgid /lib/systemd/system/rsgid.service /etc/systemd/system/multi-user.target.wants/rsgid.service; do
    [ ! -e "$R$f" ] || { echo "FAIL: $f is still there after dpkg --purge"; exit 1; }
done
echo "dpkg --purge: binaries, unit, conffiles and the enablement symlink gone"
' sh "$R" "$(basename "$DEB")" >"$WORK/run.log" 2>&1 || { cat "$WORK/run.log" >&2; die "the installed package does not work"; }

cat <<SUMMARY
deb-check $(date -u +%Y-%m-%dT%H:%MZ) on $(. /etc/os-release && echo "$PRETTY_NAME") (commit $(git rev-parse --short HEAD))
package: $(basename "$DEB") ($(du -k "$DEB" | cut -f1) KiB)
Depends: $depends
clean system: debootstrap bookworm (default variant), libpython3.11-stdlib $py pulled by apt-get -f install
installed: $state; user rsgi: $(chroot "$R" getent passwd rsgi); rsgid.service enabled
$(sed 's/^/run: /' "$WORK/run.log")
SUMMARY
