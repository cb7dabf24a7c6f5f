# rsgid and rsgi in a container: build on Debian 12 with libpython3.11-dev, run on a slim
# Debian 12 with the matching Python 3.11 runtime (rsgi embeds CPython 3.11), as a
# non-root user. Vassal files go in /etc/rsgi/vassals (mount a ConfigMap there), the run
# directory (/run/rsgi: vassal sockets, the control socket) is a volume (an emptyDir).
#
#   docker build -t rsgi .
#   docker run --rm -p 9192:9192 -v "$PWD/examples/vassals:/etc/rsgi/vassals:ro" rsgi
#
# See examples/kubernetes/ for a Deployment with probes on /livez and /readyz.

FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
      libpython3.11-dev python3.11 pkg-config \
 && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rsgid -p rsgi -p rsgictl

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpython3.11 python3.11 tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin rsgi \
 && mkdir -p /etc/rsgi/vassals /run/rsgi \
 && chown rsgi:rsgi /run/rsgi
COPY --from=build /src/target/release/rsgid /src/target/release/rsgi /src/target/release/rsgictl /usr/bin/
COPY examples/kubernetes/rsgid.toml /etc/rsgi/rsgid.toml
USER rsgi
VOLUME ["/etc/rsgi/vassals", "/run/rsgi"]
EXPOSE 9192
# rsgid is PID 1 (it reaps orphans itself, see daemon/src/reaper.rs); no init needed.
ENTRYPOINT ["/usr/bin/rsgid", "--config", "/etc/rsgi/rsgid.toml"]
