#!/usr/bin/env bash
# Build the Debian package of rsgi (rsgid, rsgi, rsgictl, the systemd unit, the example
# vassal) from a release build, and check it: lintian must report no error, and the
# package must hold exactly the files listed below (dpkg-deb --contents).
#
#   packaging/build-deb.sh               # cargo build --release, package, check
#   RSGI_DEB_NO_BUILD=1 packaging/build-deb.sh   # package the release binaries already built
#
# Output: target/debian/rsgi_<version>-1_<arch>.deb, and its path on stdout's last line.
# Needs: dpkg-dev (dpkg-shlibdeps), binutils (strip), lintian; Debian 12.
#
# Why a script around dpkg-deb and not cargo-deb: it needs nothing beyond what every
# Debian has (no crate to install), and every file, permission, dependency and maintainer
# script of the package is written out here and in packaging/debian/, where a reviewer
# sees them. The maintainer scripts are what dh_installsystemd would generate.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[ -n "$VERSION" ] || die "no workspace version in Cargo.toml"
DEB_VERSION="$VERSION-1"
ARCH="$(dpkg --print-architecture)"
OUT="$ROOT/target/debian"
STAGE="$OUT/rsgi_${DEB_VERSION}_${ARCH}"
DEB="$OUT/rsgi_${DEB_VERSION}_${ARCH}.deb"
# RSGI_DEB_BIN_DIR: take the binaries from elsewhere (a quick look at the packaging
# with debug binaries; never for a real package).
REL="${RSGI_DEB_BIN_DIR:-$ROOT/target/release}"

if [ -z "${RSGI_DEB_NO_BUILD:-}" ]; then
    say "cargo build --release"
    cargo build --release --locked -p rsgid -p rsgi -p rsgictl >&2
fi
for b in rsgid rsgi rsgictl; do
    [ -x "$REL/$b" ] || die "$REL/$b missing (cargo build --release)"
done

say "staging $STAGE"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"
inst() { install -D -m "$1" "$2" "$STAGE/$3"; }
for b in rsgid rsgi rsgictl; do
    inst 0755 "$REL/$b" "usr/bin/$b"
    # Debug sections out (Debian ships them in -dbgsym packages); rsgi's exported
    # dynamic symbols (the C API, for extension modules) stay.
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$STAGE/usr/bin/$b"
done
# The unit as systemd/rsgid.service has it: its paths (/usr/bin, /etc/rsgi, /run/rsgi)
# are the package's.
inst 0644 systemd/rsgid.service lib/systemd/system/rsgid.service
inst 0644 packaging/debian/rsgid.toml etc/rsgi/rsgid.toml
inst 0644 packaging/debian/hello.ini etc/rsgi/vassals/hello.ini
inst 0644 examples/hello/app.py usr/share/rsgi/examples/hello/app.py
DOC="usr/share/doc/rsgi"
inst 0644 packaging/debian/copyright "$DOC/copyright"
inst 0644 packaging/debian/lintian-overrides usr/share/lintian/overrides/rsgi
inst 0644 README.md "$DOC/README.md"
inst 0644 systemd/README.md "$DOC/README.systemd.md"
inst 0644 CHANGELOG.md "$DOC/changelog"
gzip -9n "$STAGE/$DOC/README.md" "$STAGE/$DOC/README.systemd.md" "$STAGE/$DOC/changelog"
cat > "$STAGE/$DOC/changelog.Debian" <<CHANGES
rsgi ($DEB_VERSION) unstable; urgency=medium

  * Package built by packaging/build-deb.sh.

 -- rsgi maintainers <rsgi@example.invalid>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
CHANGES
gzip -9n "$STAGE/$DOC/changelog.Debian"
for s in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$s" "$STAGE/DEBIAN/$s"
done
install -m 0644 packaging/debian/conffiles "$STAGE/DEBIAN/conffiles"

# Dependencies: the shared libraries the binaries link (dpkg-shlibdeps; rsgi links
# CPython's core statically, so no libpython3.11 among them) plus the Python 3.11
# standard library the embedded interpreter imports at run time (the .py files and
# lib-dynload extension modules), at least the version rsgi was built against.
say "dpkg-shlibdeps"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debian"
printf 'Source: rsgi\n\nPackage: rsgi\nArchitecture: any\n' > "$work/debian/control"
shlibs="$(cd "$work" && dpkg-shlibdeps -O "$STAGE/usr/bin/rsgid" "$STAGE/usr/bin/rsgi" "$STAGE/usr/bin/rsgictl" 2>/dev/null \
    | sed -n 's/^shlibs:Depends=//p')"
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies"
py_version="$(dpkg-query -W -f='${Version}' libpython3.11-dev 2>/dev/null | sed 's/-.*//')"
[ -n "$py_version" ] || die "libpython3.11-dev is not installed (the build needs it)"
depends="$shlibs, libpython3.11-stdlib (>= $py_version), adduser"

size="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: rsgi
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: rsgi maintainers <rsgi@example.invalid>
Installed-Size: $size
Depends: $depends
Section: httpd
Priority: optional
Homepage: https://example.invalid/rsgi
Description: WSGI application server and emperor, a successor to uWSGI's Emperor
 rsgid supervises one rsgi application server per vassal file in
 /etc/rsgi/vassals (uWSGI's ini and XML dialect): it starts, reloads and
 retires them as the files come, change and go, holds their sockets across
 reloads and restarts, and answers health probes and Prometheus scrapes.
 .
 rsgi serves one Python WSGI app (it embeds CPython 3.11) over HTTP/1.1 and
 the uwsgi protocol that nginx's uwsgi_pass speaks; rsgictl controls rsgid.
CONTROL
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"

say "dpkg-deb --build"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >&2

say "checking the contents"
want="$(cat <<'LIST'
./etc/rsgi/rsgid.toml
./etc/rsgi/vassals/hello.ini
./lib/systemd/system/rsgid.service
./usr/bin/rsgi
./usr/bin/rsgictl
./usr/bin/rsgid
./usr/share/doc/rsgi/README.md.gz
./usr/share/doc/rsgi/README.systemd.md.gz
./usr/share/doc/rsgi/changelog.Debian.gz
./usr/share/doc/rsgi/changelog.gz
./usr/share/doc/rsgi/copyright
./usr/share/lintian/overrides/rsgi
./usr/share/rsgi/examples/hello/app.py
LIST
)"
got="$(dpkg-deb --contents "$DEB" | awk '$1 !~ /^d/ {print $6}' | sort)"
[ "$got" = "$want" ] || die "unexpected package contents:
$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got"))"
dpkg-deb --contents "$DEB" | awk '$6 ~ /^\.\/usr\/bin\/./ && $1 != "-rwxr-xr-x" {bad=1} $2 != "root/root" {bad=1} END {exit bad}' \
    || die "a file with the wrong mode or owner: $(dpkg-deb --contents "$DEB")"
[ "$(dpkg-deb -f "$DEB" Package)" = rsgi ] || die "control: wrong Package"
grep -q '^ExecStart=/usr/bin/rsgid$' "$STAGE/lib/systemd/system/rsgid.service" \
    || die "the unit does not start /usr/bin/rsgid"
say "Depends: $depends"

say "lintian"
command -v lintian >/dev/null || die "lintian missing (apt-get install lintian)"
# --fail-on error: warnings are listed (packaging/RESULTS.md says why each stays).
lintian --fail-on error --tag-display-limit 0 "$DEB" >&2 || die "lintian reported errors (above)"
echo "$DEB"
