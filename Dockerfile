# rsgid and rsgi in a container: build on Debian 12 with libpython3.11-dev, run on a slim
# Debian 12 with the Python 3.11 standard library (rsgi embeds CPython 3.11), as the
# non-root user rsgi (uid 10001). Vassal files go in /etc/rsgi/vassals (mount a ConfigMap
# there), the run directory (/run/rsgi: vassal sockets, the control socket) is a volume
# (an emptyDir).
#
#   docker build -t rsgi .        (or podman build)
#   docker run --rm -p 9192:9192 -v "$PWD/examples/vassals:/etc/rsgi/vassals:ro" rsgi
#
# See examples/kubernetes/ for a Deployment with probes on /livez and /readyz.
# scripts/image-check.sh builds this with podman and checks that it runs (by hand, not CI).

FROM debian:12 AS build
# python3: the build runs /usr/bin/python3 (.cargo/config.toml's PYO3_PYTHON; it comes
# with python3-minimal, which neither python3.11 nor libpython3.11-dev pulls in).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
      libpython3.11-dev python3 \
 && rm -rf /var/lib/apt/lists/*
# rustup-init itself from static.rust-lang.org, pinned and checked, as the official rust
# image does (sh.rustup.rs is a script that downloads the same file, unchecked).
# RUST_TOOLCHAIN: "stable" or a version (the workspace needs >= 1.85).
ARG RUST_TOOLCHAIN=stable
RUN set -eu; \
    case "$(dpkg --print-architecture)" in \
      amd64) triple=x86_64-unknown-linux-gnu \
             sum=20a06e644b0d9bd2fbdbfd52d42540bdde820ea7df86e92e533c073da0cdd43c ;; \
      arm64) triple=aarch64-unknown-linux-gnu \
             sum=e3853c5a252fca15252d07cb23a1bdd9377a8c6f3efa01531109281ae47f841c ;; \
      *) echo "no rustup-init checksum for $(dpkg --print-architecture)" >&2; exit 1 ;; \
    esac; \
    curl -sSf -o /tmp/rustup-init \
      "https://static.rust-lang.org/rustup/archive/1.28.2/$triple/rustup-init"; \
    echo "$sum  /tmp/rustup-init" | sha256sum -c -; \
    chmod +x /tmp/rustup-init; \
    /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain "$RUST_TOOLCHAIN"; \
    rm /tmp/rustup-init
ENV PATH=/root/.cargo/bin:$PATH
RUN rustc --version && cargo --version
WORKDIR /src
COPY . .
# Debug sections out, as packaging/build-deb.sh does (rsgi's exported dynamic symbols, the
# C API for extension modules, stay).
RUN cargo build --release --locked -p rsgid -p rsgi -p rsgictl \
 && cd target/release \
 && strip --strip-unneeded --remove-section=.comment --remove-section=.note rsgid rsgi rsgictl

FROM debian:12-slim
# libpython3.11-stdlib: the standard library of the CPython 3.11 that rsgi embeds (its
# core is linked into rsgi statically, vassal/build.rs); libexpat1: that core's pyexpat
# needs it (ldd /usr/bin/rsgi; the .deb depends on both). No init (tini, dumb-init):
# rsgid is PID 1, reaps orphans itself (daemon/src/reaper.rs) and stops on SIGTERM
# (drain, then exit 0).
# A fixed numeric uid/gid, and USER by number: Kubernetes' runAsNonRoot (the examples set
# it) refuses to start an image whose USER is a name ("cannot verify user is non-root").
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpython3.11-stdlib libexpat1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 rsgi \
 && useradd --system --uid 10001 --gid rsgi --home-dir /nonexistent \
      --shell /usr/sbin/nologin rsgi \
 && mkdir -p /etc/rsgi/vassals /run/rsgi \
 && chown rsgi:rsgi /run/rsgi \
 && ln -s /srv/hello /etc/rsgi/hello
COPY --from=build /src/target/release/rsgid /src/target/release/rsgi /src/target/release/rsgictl /usr/bin/
COPY examples/kubernetes/rsgid.toml /etc/rsgi/rsgid.toml
# The hello example app: examples/kubernetes/deployment.yaml's vassal serves /srv/hello,
# and examples/vassals/*.ini (chdir = %d../hello) find it through /etc/rsgi/hello when
# examples/vassals is mounted at /etc/rsgi/vassals. Your own image adds its apps the same way.
COPY examples/hello/app.py /srv/hello/app.py
USER 10001:10001
VOLUME ["/etc/rsgi/vassals", "/run/rsgi"]
EXPOSE 9192
ENTRYPOINT ["/usr/bin/rsgid", "--config", "/etc/rsgi/rsgid.toml"]
