#!/usr/bin/env python3
"""rsgi's side-by-side benchmark against uWSGI, gunicorn and granian (issue 7).

Run through bench/run.sh, which installs the peers and builds rsgi first; this file
only needs the Python standard library (it is run with the bench venv's python).

Sections (all by default; pick some with --sections):
  throughput  hello / json / django x workers 1, 2 x every server: 3 s warm-up, then
              `wrk -t2 -c64 -d10s --latency` with keep-alive and with
              `-H 'Connection: close'`; req/s, p50/p99, errors, server CPU, RSS/PSS of
              every process of the server (and nginx for the nginx rows) after the load.
  pairs       rows near their target, finer: both servers of a pair run at once, and
              wrk alternates between them in short slices (A B B A ...), so that the
              machine's drift, which moves single runs by 5-10% here, falls on both
              alike. Default: rsgi vs uWSGI on the Django rows and on hello with
              `Connection: close` (the rows whose targets are 1.05x and 1.0x), and
              every row behind nginx (target 1.2x).
  cold        launch -> first HTTP 200 (polled every 2 ms), median of 5.
  emperor     new ini mv-ed into the vassal dir -> first uwsgi 200 on its socket, rsgid
              and `uwsgi --emperor` (default 3 s scan).
  reload      reload under load: wrk for 16 s with reload.lua, reload at 4 s.
  vassals     rsgid's and uWSGI Emperor's RSS with 1, 10 and 50 hello vassals.

Raw results go to target/bench-out/<stamp>/results.json (plus every server's log);
the report to bench/RESULTS.md (or --results). `--report-only results.json` rewrites
the report from a saved run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
APPS = BENCH / "apps"
HELLO = ROOT / "tests" / "apps" / "hello.py"  # the tests' hello app serves the bench too
HOST = "127.0.0.1"

SERVERS = [
    "rsgi-http",
    "rsgi-nginx",
    "uwsgi-http",
    "uwsgi-nginx",
    "gunicorn-sync",
    "gunicorn-gthread",
    "granian",
]
PEERS = [s for s in SERVERS if not s.startswith("rsgi")]
SECTIONS = ["throughput", "pairs", "cold", "emperor", "reload", "vassals"]
APP_NAMES = ["hello", "json", "django"]
MODES = ["ka", "close"]
# `--base-bin DIR`: another rsgi build (an earlier commit) as the peer of a pair, to A/B
# two builds in one run: base-http / base-nginx run it exactly as rsgi-http / rsgi-nginx.
BASE_SERVERS = {"base-http": "rsgi-http", "base-nginx": "rsgi-nginx"}
NGINX_SERVERS = {"rsgi-nginx", "uwsgi-nginx", "base-nginx"}
GUNICORN = {"gunicorn-sync", "gunicorn-gthread"}


# ---------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------


def log(msg: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(d))
    return kids


def tree(*roots: int) -> list[int]:
    """roots and all their descendants (one pass over /proc)."""
    kids = children_map()
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if not Path(f"/proc/{pid}").exists():
            continue
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def memory(pids) -> tuple[float, float, int]:
    """(RSS MiB, PSS MiB, processes) summed over pids, from smaps_rollup."""
    rss = pss = 0
    n = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        n += 1
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss / 1024, pss / 1024, n


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def system_busy() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat: not idle, not iowait)."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children_cpu() -> float:
    """CPU seconds of this process' waited-for children (wrk)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Proc:
    """A process started in its own session; stop() kills its whole tree by pid."""

    def __init__(self, argv, logfile: Path, env=None, cwd=None):
        self.started = time.monotonic()  # the launch, for the cold-start times
        self.argv = [str(a) for a in argv]
        self.logfile = logfile
        self.fh = open(logfile, "ab")
        self.fh.write(("$ " + " ".join(self.argv) + "\n").encode())
        self.fh.flush()
        self.p = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self.fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.p.pid

    def pids(self) -> list[int]:
        return tree(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + timeout
        for pid in pids:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                try:
                    # a zombie child of ours that is not self.p: reap it
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                st = Path(f"/proc/{pid}/stat")
                try:
                    if ") Z " in st.read_text():
                        break
                except OSError:
                    break
                time.sleep(0.005)
        self.fh.close()

    def signal(self, sig) -> None:
        os.kill(self.pid, sig)


def response_status(s: socket.socket, request: bytes) -> int | None:
    """Send request on the connected s; the status code of the answer's first line."""
    s.sendall(request)
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(256)
        if not chunk:
            break
        data += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


def http_status(port: int, timeout: float = 1.0) -> int | None:
    """GET / on HOST:port; the status, or None if it could not be had."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            return response_status(s, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    except OSError:
        return None


def uwsgi_packet() -> bytes:
    pairs = {
        b"REQUEST_METHOD": b"GET",
        b"REQUEST_URI": b"/",
        b"PATH_INFO": b"/",
        b"QUERY_STRING": b"",
        b"SERVER_PROTOCOL": b"HTTP/1.1",
        b"SERVER_NAME": b"localhost",
        b"SERVER_PORT": b"80",
        b"REMOTE_ADDR": b"127.0.0.1",
        b"HTTP_HOST": b"localhost",
    }
    body = b"".join(
        len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
        for k, v in pairs.items()
    )
    return b"\x00" + len(body).to_bytes(2, "little") + b"\x00" + body


UWSGI_PACKET = uwsgi_packet()


def uwsgi_status(path: Path, timeout: float = 5.0) -> int | None:
    """A uwsgi-protocol GET / on the unix socket path; the status, or None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            return response_status(s, UWSGI_PACKET)
    except OSError:
        return None


def wait_until(check, deadline_s: float, every: float = 0.002, since: float | None = None) -> float | None:
    """Poll check() every `every` s; the seconds it took to be true (counted from
    `since`, a time.monotonic(), if given), or None after deadline_s."""
    t0 = time.monotonic() if since is None else since
    while True:
        if check():
            return time.monotonic() - t0
        if time.monotonic() - t0 > deadline_s:
            return None
        time.sleep(every)


# ---------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(num: str, unit: str) -> float:
    return float(num) * UNIT[unit]


def wrk_argv(url, duration, close=False, script=None) -> list:
    """wrk's command line: 2 threads, 64 connections, latency percentiles."""
    argv = ["wrk", "-t2", "-c64", f"-d{duration}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    if script:
        argv += ["-s", str(script)]
    return argv + [url]


def parse_wrk(out: str) -> dict:
    """The figures of wrk's output: req/s, latencies in ms, socket errors and non-2xx."""
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    r["requests"] = int(m.group(1)) if m else 0
    r["secs"] = to_ms(*m.groups()[1:]) / 1e3 if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        r[f"p{pct}"] = to_ms(*m.groups()) if m else None
    m = re.search(r"Latency\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m)", out)
    r["max_ms"] = to_ms(*m.groups()) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["sock_err"] = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    r["errors"] = sum(r["sock_err"]) + r["non2xx"]
    return r


def wrk(url, duration, close=False) -> dict:
    """Run wrk; its figures, and its whole output under "raw"."""
    out = subprocess.run(
        wrk_argv(url, duration, close), capture_output=True, text=True, timeout=duration + 60
    ).stdout
    return {"raw": out, **parse_wrk(out)}


def lean(r: dict) -> dict:
    """A wrk result without its raw output unless something went wrong."""
    if r["errors"] == 0:
        r.pop("raw", None)
    return r


# ---------------------------------------------------------------------------------
# the servers
# ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.venv = Path(args.venv).resolve()
        self.bin = Path(args.rsgi_bin).resolve()
        self.base_bin = Path(args.base_bin).resolve() if args.base_bin else None
        self.limit = Path(args.limit_bin).resolve()
        self.tmp = Path(tempfile.mkdtemp(prefix="rsgi-bench-"))
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs = self.out / "logs"
        self.logs.mkdir(exist_ok=True)
        self.env = dict(os.environ)
        self.env["PATH"] = f"{self.venv}/bin:" + self.env.get("PATH", "")
        self.env.pop("PYTHONPATH", None)
        self.is_root = os.geteuid() == 0
        self.logging = args.logging == "on"
        self.seq = 0
        self.django_dir = None
        self.results: dict = {}  # what results.json holds, saved after every run

    # -- apps ---------------------------------------------------------------------

    def make_django(self) -> Path:
        if self.django_dir:
            return self.django_dir
        d = self.tmp / "django"
        d.mkdir()
        subprocess.run(
            [self.venv / "bin" / "django-admin", "startproject", "benchsite", d],
            check=True,
            env=self.env,
        )
        settings = d / "benchsite" / "settings.py"
        text = settings.read_text()
        text = re.sub(r"^DEBUG = True$", "DEBUG = False", text, flags=re.M)
        text = re.sub(r"^ALLOWED_HOSTS = \[\]$", "ALLOWED_HOSTS = ['*']", text, flags=re.M)
        assert "DEBUG = False" in text and "ALLOWED_HOSTS = ['*']" in text
        settings.write_text(text)
        shutil.copy(APPS / "django" / "views.py", d / "benchsite" / "views.py")
        shutil.copy(APPS / "django" / "urls.py", d / "benchsite" / "urls.py")
        self.django_dir = d
        return d

    def app_spec(self, app: str) -> dict:
        """file: for --wsgi-file; dir + module: for module-style servers."""
        if app == "hello":
            return {"file": HELLO, "dir": HELLO.parent, "module": "hello"}
        if app == "json":
            return {"file": APPS / "jsonapp.py", "dir": APPS, "module": "jsonapp"}
        if app == "django":
            d = self.make_django()
            return {"file": None, "dir": d, "module": "benchsite.wsgi"}
        raise ValueError(app)

    def app_args(self, spec) -> list:
        """The app options, the same for rsgi and uWSGI."""
        args = ["--home", self.venv]
        if spec["file"]:
            args += ["--wsgi-file", spec["file"]]
        else:
            args += ["--chdir", spec["dir"], "--pythonpath", spec["dir"], "--module", spec["module"]]
        if not self.logging:
            args.append("--disable-logging")
        return args

    def server_argv(self, server: str, app: str, w: int, port: int, sock: Path) -> list:
        spec = self.app_spec(app)
        v = self.venv / "bin"
        if server == "limit":
            return [self.limit, f"{HOST}:{port}"]
        if server in BASE_SERVERS:
            argv = self.server_argv(BASE_SERVERS[server], app, w, port, sock)
            return [self.base_bin / "rsgi"] + argv[1:]
        if server == "rsgi-http":
            return [self.bin / "rsgi", "--http-socket", f"{HOST}:{port}", "--master",
                    "--processes", w] + self.app_args(spec)
        if server == "rsgi-nginx":
            return [self.bin / "rsgi", "--socket", f"unix:{sock}", "--master",
                    "--processes", w] + self.app_args(spec)
        if server == "uwsgi-http":
            return [v / "uwsgi", "--master", "--processes", w, "--http-socket", f"{HOST}:{port}",
                    "--add-header", "Connection: close"] + self.app_args(spec)
        if server == "uwsgi-nginx":
            return [v / "uwsgi", "--master", "--processes", w, "--socket", sock] + self.app_args(spec)
        if server in GUNICORN:
            argv = [v / "gunicorn", "--workers", w, "--bind", f"{HOST}:{port}", "--chdir", spec["dir"]]
            if server == "gunicorn-sync":
                argv += ["--worker-class", "sync"]
            else:
                argv += ["--worker-class", "gthread", "--threads", "4"]
            return argv + [spec["module"] + ":application"]
        if server == "granian":
            return [v / "granian", "--interface", "wsgi", "--workers", w, "--host", HOST,
                    "--port", port, "--working-dir", spec["dir"], spec["module"] + ":application"]
        raise ValueError(server)

    def nginx_conf(self, port: int, sock: Path, d: Path) -> Path:
        user = "user root;\n" if self.is_root else ""
        conf = d / "nginx.conf"
        conf.write_text(
            f"""{user}worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {HOST}:{port};
        location / {{
            include /etc/nginx/uwsgi_params;
            uwsgi_pass unix:{sock};
        }}
    }}
}}
"""
        )
        return conf

    def scratch(self, prefix: str) -> Path:
        """A new directory under the scratch dir; self.seq also numbers the logs."""
        self.seq += 1
        d = self.tmp / f"{prefix}{self.seq}"
        d.mkdir()
        return d

    def start(self, server: str, app: str, w: int, tag: str = ""):
        """Start a server (and, for the nginx rows, nginx in front, answering first).
        Returns (server Proc, nginx Proc or None, the port wrk talks to)."""
        d = self.scratch("run")
        sock = d / "app.sock"
        port = free_port()
        nginx = None
        if server in NGINX_SERVERS:
            conf = self.nginx_conf(port, sock, d)
            nginx = Proc(["nginx", "-c", conf, "-p", d], self.logs / f"{self.seq}-nginx.log", env=self.env)
            # so that a cold start times the server, not nginx's own start
            if wait_until(lambda: http_status(port) is not None, 10) is None:
                nginx.stop()
                raise RuntimeError(f"nginx for {server} never answered on {HOST}:{port} "
                                   f"(see {nginx.logfile})")
        argv = self.server_argv(server, app, w, port, sock)
        try:
            proc = Proc(argv, self.logs / f"{self.seq}-{tag}{server}-{app}-w{w}.log", env=self.env, cwd=d)
        except BaseException:
            if nginx:
                nginx.stop()  # it outlived the run when the server could not start
            raise
        return proc, nginx, port

    def stop(self, proc, nginx):
        proc.stop()
        if nginx:
            nginx.stop()

    # -- throughput ---------------------------------------------------------------

    def start_answering(self, server, app, w):
        """`start`, then wait for the first 200 (stopping it all if none comes)."""
        proc, nginx, port = self.start(server, app, w)
        if wait_until(lambda: http_status(port) == 200, 60, every=0.01) is None:
            self.stop(proc, nginx)
            raise RuntimeError(f"{server} {app} w{w} never answered 200 (see {proc.logfile})")
        return proc, nginx, port

    def throughput_one(self, server, app, w) -> dict:
        proc, nginx, port = self.start_answering(server, app, w)
        url = f"http://{HOST}:{port}/"
        roots = [proc.pid] + ([nginx.pid] if nginx else [])
        try:
            a = self.args
            wrk(url, a.warmup)
            c0, t0 = cpu_seconds(tree(*roots)), time.monotonic()
            busy0, wrk0 = system_busy(), children_cpu()
            ka = wrk(url, a.duration)
            pids = tree(*roots)
            wall = time.monotonic() - t0
            server_cpu = cpu_seconds(pids) - c0
            cores = server_cpu / wall
            # CPU the rest of the machine used meanwhile (other users' builds and
            # tests; also softirq work the kernel charged to no process of ours)
            other = (system_busy() - busy0 - server_cpu - (children_cpu() - wrk0)) / wall
            cl = wrk(url, a.duration, close=True)
            rss, pss, n = memory(tree(*roots))
        finally:
            self.stop(proc, nginx)
        return {"ka": lean(ka), "close": lean(cl), "cores": cores, "other_cores": max(other, 0.0),
                "rss": rss, "pss": pss, "procs": n}

    def section_throughput(self, runs: list):
        a = self.args
        configs = []
        for app in a.apps:
            for w in a.workers:
                for s in a.servers:
                    configs.append((s, app, w))
            if app == "hello" and "limit" in a.servers_extra:
                configs.append(("limit", "hello", 1))
        for rep in range(a.reps):
            # rotate the order every repetition so no server always runs first/last
            order = configs[rep % len(configs):] + configs[: rep % len(configs)]
            for s, app, w in order:
                if s in GUNICORN and rep >= a.gunicorn_reps:
                    continue
                log(f"throughput rep {rep + 1}/{a.reps}: {s} {app} w{w} (load {loadavg()})")
                load = loadavg()
                r = self.throughput_one(s, app, w)
                r.update(server=s, app=app, w=w, rep=rep, load=[load, loadavg()])
                runs.append(r)
                log(
                    f"  KA {r['ka']['rps']:,.0f} req/s p99 {r['ka']['p99']} ms err {r['ka']['errors']}"
                    f" | close {r['close']['rps']:,.0f} err {r['close']['errors']}"
                    f" | RSS {r['rss']:.1f} MiB | cores {r['cores']:.2f} (others {r['other_cores']:.2f})"
                )
                self.save()

    # -- pairs --------------------------------------------------------------------

    def section_pairs(self, runs: list):
        """Each round starts both servers of a pair afresh and warms both up; then wrk
        runs `--pair-slices` slices of `--pair-slice` seconds against each, in the order
        A B B A A B ... (B A A B ... every other round), so that a drift of the machine
        during the round falls on both alike. A round's req/s for a server is all its
        slices' requests over their time; the ratio is taken within the round."""
        a = self.args
        for num, den, app, w, mode in a.pairs:
            for rnd in range(a.pair_rounds):
                first, second = (num, den) if rnd % 2 == 0 else (den, num)
                log(f"pairs round {rnd + 1}/{a.pair_rounds}: {num} / {den} {app} w{w} {mode} "
                    f"(load {loadavg()})")
                started = []
                try:
                    for s in (first, second):
                        started.append((s, *self.start_answering(s, app, w)))
                    urls = {s: f"http://{HOST}:{port}/" for s, _, _, port in started}
                    for s in (first, second):
                        wrk(urls[s], a.warmup, close=mode == "close")
                    slices = {num: [], den: []}
                    for i in range(a.pair_slices):
                        s = first if i % 4 in (0, 3) else second
                        slices[s].append(lean(wrk(urls[s], a.pair_slice, close=mode == "close")))
                finally:
                    for _, proc, nginx, _ in started:
                        self.stop(proc, nginx)
                r = {"num": num, "den": den, "app": app, "w": w, "mode": mode, "round": rnd,
                     "first": first}
                for key, s in (("num_res", num), ("den_res", den)):
                    sl = slices[s]
                    secs = sum(x["secs"] for x in sl)
                    r[key] = {"rps": sum(x["requests"] for x in sl) / secs if secs else 0.0,
                              "p99": median([x["p99"] for x in sl if x["p99"] is not None]),
                              "errors": sum(x["errors"] for x in sl), "slices": sl}
                r["ratio"] = r["num_res"]["rps"] / r["den_res"]["rps"] if r["den_res"]["rps"] else None
                runs.append(r)
                log(f"  {num} {r['num_res']['rps']:,.0f} req/s, {den} {r['den_res']['rps']:,.0f}: "
                    f"{fmt(r['ratio'], '.3f')}")
                self.save()

    # -- cold start ---------------------------------------------------------------

    def section_cold(self, runs: list):
        a = self.args
        for app in [x for x in ("hello", "django") if x in a.apps]:
            for w in a.workers:
                for s in a.servers:
                    times = [self.cold_one(s, app, w) for _ in range(a.cold_reps)]
                    log(f"cold {s} {app} w{w}: {times}")
                    runs.append({"server": s, "app": app, "w": w, "times": times})
                    self.save()

    def cold_one(self, server, app, w) -> float | None:
        """Seconds from the server's launch to its first 200, or None (60 s)."""
        proc, nginx, port = self.start(server, app, w, tag="cold-")
        try:
            return wait_until(lambda: http_status(port, timeout=5) == 200, 60, since=proc.started)
        finally:
            self.stop(proc, nginx)

    # -- emperor: new ini -> first answer ------------------------------------------

    def vassal_ini(self, kind: str, sock=None, http_port=None, w=1, master=True) -> str:
        """A hello vassal: on HOST:http_port (HTTP) if given, else on a unix socket (uwsgi
        protocol): rsgid's default one, RUN/<ini name>.sock, or uWSGI's `socket = sock`."""
        lines = ["[uwsgi]", f"wsgi-file = {HELLO}", f"master = {'true' if master else 'false'}",
                 f"processes = {w}"]
        if not self.logging:
            lines.append("disable-logging = true")
        if http_port:
            lines.append(f"http-socket = {HOST}:{http_port}")
            if kind == "uwsgi":
                lines.append("add-header = Connection: close")
        elif kind == "uwsgi":
            lines.append(f"socket = {sock}")
        return "\n".join(lines) + "\n"

    def start_emperor(self, kind: str, vdir: Path, rdir: Path, tag: str) -> Proc:
        self.seq += 1
        logf = self.logs / f"{self.seq}-{kind}-emperor-{tag}.log"
        if kind == "rsgid":
            argv = [self.bin / "rsgid", "--vassals", vdir, "--run-dir", rdir, "--metrics", "off",
                    "--rsgi", self.bin / "rsgi"]
            if self.is_root:
                argv += ["--uid", "root"]
        else:
            argv = [self.venv / "bin" / "uwsgi", "--emperor", vdir]
        return Proc(argv, logf, env=self.env)

    def section_emperor(self, runs: list):
        a = self.args
        for kind in ("rsgid", "uwsgi"):
            base = self.scratch("emp")
            vdir, rdir, stage = base / "vassals", base / "run", base / "stage"
            for p in (vdir, rdir, stage):
                p.mkdir()
            base_sock = rdir / "base.sock"
            (vdir / "base.ini").write_text(self.vassal_ini(kind, sock=base_sock))
            emp = self.start_emperor(kind, vdir, rdir, "newini")
            try:
                if wait_until(lambda: uwsgi_status(base_sock) == 200, 30) is None:
                    raise RuntimeError(f"{kind} emperor: base vassal never answered ({emp.logfile})")
                time.sleep(0.5)
                times = []
                for i in range(a.emperor_reps):
                    name = f"new{i}"
                    sock = rdir / f"{name}.sock"
                    staged = stage / f"{name}.ini"
                    staged.write_text(self.vassal_ini(kind, sock=sock))
                    t0 = time.monotonic()
                    os.rename(staged, vdir / f"{name}.ini")
                    took = wait_until(lambda: uwsgi_status(sock, timeout=10) == 200, 30, since=t0)
                    times.append(took)
                    log(f"emperor {kind}: new ini -> first answer {took}")
                    time.sleep(0.5)
            finally:
                emp.stop()
            runs.append({"emperor": kind, "times": times})
            self.save()

    # -- reload under load --------------------------------------------------------

    def section_reload(self, runs: list):
        a = self.args
        for rep in range(a.reload_reps):
            for w in a.workers:
                for mode in ("close", "keepalive"):
                    for server in a.reload_servers:
                        log(f"reload rep {rep + 1}: {server} w{w} {mode} (load {loadavg()})")
                        r = self.reload_one(server, w, mode)
                        r.update(server=server, w=w, mode=mode, rep=rep)
                        log(f"  failed {r['failed']} max gap {r['max_gap']:.4f} s dip {r['dip']:.1f} s"
                            f" reloaded {r['reloaded']} req/s before {r['rps_before']:,.0f}")
                        runs.append(r)
                        self.save()

    def reload_one(self, server, w, mode) -> dict:
        a = self.args
        base = self.scratch("reload")
        wlog = base / "wrk"
        wlog.mkdir()
        port = free_port()
        if server in ("rsgid", "uwsgi-emperor"):
            kind = "rsgid" if server == "rsgid" else "uwsgi"
            vdir, rdir = base / "vassals", base / "run"
            vdir.mkdir()
            rdir.mkdir()
            ini = vdir / "hello.ini"
            ini.write_text(self.vassal_ini(kind, http_port=port, w=w))
            proc = self.start_emperor(kind, vdir, rdir, f"reload-w{w}-{mode}")
            trigger = lambda: os.utime(ini)  # noqa: E731
        else:
            srv = {"gunicorn": "gunicorn-sync"}.get(server, server)
            argv = self.server_argv(srv, "hello", w, port, base / "unused.sock")
            proc = Proc(argv, self.logs / f"{self.seq}-reload-{server}-w{w}-{mode}.log",
                        env=self.env, cwd=base)
            trigger = lambda: proc.signal(signal.SIGHUP)  # noqa: E731
        try:
            if wait_until(lambda: http_status(port) == 200, 60, every=0.01) is None:
                raise RuntimeError(f"reload {server}: never answered ({proc.logfile})")
            url = f"http://{HOST}:{port}/"
            wrk(url, 2, close=(mode == "close"))
            before = set(proc.pids())
            env = dict(self.env, RELOAD_LOG_DIR=str(wlog))
            wp = subprocess.Popen(
                wrk_argv(url, a.reload_duration, close=(mode == "close"), script=BENCH / "reload.lua"),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            )
            start = time.monotonic()
            time.sleep(a.reload_at)
            t_trigger = time.monotonic()
            trigger()
            out, _ = wp.communicate(timeout=a.reload_duration + 60)
            # the new generation is up once every wrk run is done: compare pids
            time.sleep(0.2)
            after = set(proc.pids())
        finally:
            proc.stop()
        r = parse_wrk(out)
        if "Requests/sec" not in out:
            r["raw"] = out  # keep wrk's output only when it has no summary
        buckets: dict[int, int] = {}
        for f in wlog.glob("thread-*.log"):
            for line in f.read_text().splitlines():
                ms, n = line.split()
                buckets[int(ms)] = buckets.get(int(ms), 0) + int(n)
        r.update(self.gaps(buckets, start, t_trigger))
        r["reloaded"] = bool(after - before)
        r["failed"] = r["errors"]
        return r

    @staticmethod
    def gaps(buckets: dict[int, int], start: float, trig: float) -> dict:
        """From the 2xx completions per ms (time.monotonic() ms): the longest gaps after and
        before trig, and the dip below half the throughput of the 2 s before trig."""
        if not buckets:
            return {"max_gap": float("nan"), "gap_at": None, "base_gap": None, "dip": float("nan"),
                    "rps_before": 0.0}
        trig_ms, start_ms = int(trig * 1000), int(start * 1000)
        # the run's own edges are not gaps: from 0.5 s in to the last response
        times = [t for t in sorted(buckets) if t >= start_ms + 500]
        max_gap, gap_at, base_gap = 0, None, 0
        for a_, b in zip(times, times[1:]):
            g = b - a_
            if b > trig_ms:
                if g > max_gap:
                    max_gap, gap_at = g, a_ - trig_ms
            else:
                base_gap = max(base_gap, g)
        # 100 ms buckets
        hund: dict[int, int] = {}
        for t, n in buckets.items():
            hund[t // 100] = hund.get(t // 100, 0) + n
        pre = [hund.get(b, 0) for b in range((trig_ms - 2000) // 100, trig_ms // 100)]
        base = statistics.mean(pre) if pre else 0
        last = max(buckets) // 100
        dip = sum(1 for b in range(trig_ms // 100, last) if hund.get(b, 0) < 0.5 * base) * 0.1
        return {"max_gap": max_gap / 1000, "gap_at": (gap_at or 0) / 1000, "base_gap": base_gap / 1000,
                "dip": dip, "rps_before": base * 10}

    # -- emperor RSS with N vassals -------------------------------------------------

    def section_vassals(self, runs: list):
        a = self.args
        for kind in ("rsgid", "uwsgi"):
            for master in (True, False):
                for n in a.vassal_counts:
                    r = self.vassals_one(kind, n, master)
                    log(f"vassals {kind} N={n} master={master}: emperor {r['emperor_rss']:.1f} MiB,"
                        f" total {r['rss']:.1f} MiB, {r['procs']} procs, up in {r['all_up']}")
                    runs.append(r)
                    self.save()

    def vassals_one(self, kind, n, master) -> dict:
        base = self.scratch("vassals")
        vdir, rdir = base / "vassals", base / "run"
        vdir.mkdir()
        rdir.mkdir()
        socks = []
        for i in range(n):
            name = f"hello{i:02d}"
            sock = rdir / f"{name}.sock"
            socks.append(sock)
            (vdir / f"{name}.ini").write_text(self.vassal_ini(kind, sock=sock, master=master))
        t0 = time.monotonic()
        emp = self.start_emperor(kind, vdir, rdir, f"N{n}-master{master}")
        try:
            pending = list(socks)

            def all_answer() -> bool:
                pending[:] = [s for s in pending if uwsgi_status(s, timeout=10) != 200]
                return not pending

            all_up = wait_until(all_answer, 120, every=0.01, since=t0)
            time.sleep(self.args.settle)
            pids = emp.pids()
            e_rss, e_pss, _ = memory([emp.pid])
            rss, pss, procs = memory(pids)
        finally:
            emp.stop()
        return {"emperor": kind, "n": n, "master": master, "emperor_rss": e_rss, "emperor_pss": e_pss,
                "rss": rss, "pss": pss, "procs": procs, "all_up": all_up,
                "per_vassal_rss": (rss - e_rss) / n, "per_vassal_pss": (pss - e_pss) / n}

    # -- bookkeeping --------------------------------------------------------------

    def save(self):
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1))


# ---------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------


def fmt(x, spec=",.0f", none="-"):
    return none if x is None else format(x, spec)


def machine_info() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "free": free,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def versions(venv: Path, rsgi_bin: Path, base_bin: Path | None = None) -> dict:
    def run(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001
            return f"? ({e})"

    py = venv / "bin" / "python"
    pkgs = run([py, "-c", "import importlib.metadata as m; print(' '.join(f'{p} {m.version(p)}' for p in "
                "('uWSGI','gunicorn','granian','Django')))"])
    return {
        "python": run([py, "--version"]),
        "packages": pkgs,
        "nginx": run(["nginx", "-v"]),
        "wrk": run(["wrk", "-v"]),
        "rsgi": run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"]),
        # the checkout the base build's directory lies in
        **({"base": f"{base_bin}: " + run(["git", "-C", str(base_bin), "log", "-1", "--format=%h %s"])}
           if base_bin else {}),
    }


def pick(runs, server, app, w) -> list:
    """The runs (throughput or cold) of one server, app and worker count."""
    return [r for r in runs if r["server"] == server and r["app"] == app and r["w"] == w]


def ratio_median(runs, num_key, den_key, app, w, mode):
    """Median over repetitions of rsgi/peer req/s measured in the same repetition."""
    by_rep: dict[int, dict[str, float]] = {}
    for r in runs:
        if r["app"] == app and (r["w"] == w or r["server"] == "limit"):
            by_rep.setdefault(r["rep"], {})[r["server"]] = r[mode]["rps"]
    return median([d[num_key] / d[den_key] for d in by_rep.values()
                   if d.get(num_key) and d.get(den_key)])


def label(mode: str) -> str:
    """How the report names a load mode."""
    return "KA" if mode == "ka" else "close"


def pair_groups(runs) -> dict:
    """The pair rounds by (rsgi, peer, app, workers, mode), in the order they ran."""
    groups: dict[tuple, list] = {}
    for r in runs:
        groups.setdefault((r["num"], r["den"], r["app"], r["w"], r["mode"]), []).append(r)
    return groups


def pair_summary(rs) -> dict:
    """One pair row's rounds in figures: the ratio per round (rounds without one left
    out), their median, and each server's p99 (median over its slices, then over the
    rounds)."""
    ratios = [r["ratio"] for r in rs if r["ratio"] is not None]
    return {"ratios": ratios, "ratio": median(ratios),
            "p99_num": median([r["num_res"]["p99"] for r in rs]),
            "p99_den": median([r["den_res"]["p99"] for r in rs])}


def report(results: dict, path: Path) -> None:
    m = results["machine"]
    a = results["args"]
    L = []
    L.append("# rsgi benchmark results\n")
    L.append(
        "Generated by `bench/run.sh` (driver: `bench/bench.py`); do not edit the tables by hand, "
        "rerun instead (`bench/run.sh --report-only target/bench-out/results.json` rewrites this "
        "file from a saved run). Absolute numbers move from run to run: quote the ratios, which "
        "come from the same repetition of the same run.\n"
    )
    L.append("## Machine and run\n")
    L.append(f"- date: {m['date']}; run took {results.get('elapsed_min', 0):.1f} min")
    L.append(f"- `nproc`: {m['nproc']}; CPU: {m['cpu']}; kernel {m['kernel']}")
    L.append("- `free -h`:\n\n```\n" + m["free"].rstrip() + "\n```")
    v = results["versions"]
    L.append(f"- {v['python']} (the bench venv, made with /usr/bin/python3; rsgi embeds the same "
             "CPython build, linked statically from Debian's libpython3.11.a, while uWSGI built "
             "from PyPI loads Debian's libpython3.11.so: worth 11-14% on the Django rows, see "
             f"the profile); {v['packages']}; {v['nginx']}; {v['wrk']}")
    L.append(f"- rsgi at commit {v['rsgi']}")
    if "base" in v:
        L.append(f"- base-http / base-nginx (`--base-bin`): {v['base']}")
    L.append(f"- command: `{results['command']}`")
    L.append(f"- access logging: **{a['logging']}** for both rsgi and uWSGI "
             f"({'`--disable-logging`' if a['logging'] == 'off' else 'default request logging'}); "
             "gunicorn and granian write no access log by default; nginx `access_log off`")
    L.append(f"- repetitions: throughput {a['reps']} (gunicorn rows: {a['gunicorn_reps']}), "
             f"cold start {a['cold_reps']}, new ini {a['emperor_reps']}, reload {a['reload_reps']}"
             + (f", alternating pairs {a['pair_rounds']} rounds" if "pairs" in results else ""))
    L.append("- load average (1/5/15 min) at the start and end of each section: " + "; ".join(
        f"{k} {results[k]['load'].get('start')} -> {results[k]['load'].get('end')}"
        for k in SECTIONS if k in results)
        + ". The load average counts the benchmark's own processes too (wrk and the server keep it "
        "at 3 or more on 2 cores; granian's thread pool pushes it higher), so it only hints at other "
        "work; the throughput table's `other cores` column measures it.")
    if "throughput" in results:
        others = [r["other_cores"] for r in results["throughput"]["runs"] if "other_cores" in r]
        if others:
            L.append(f"- CPU used by the rest of the machine during the keep-alive runs: median "
                     f"{median(others):.2f} cores, max {max(others):.2f} (of 2)")
    L.append("")
    L.append("### Exact commands\n")
    L.append("```")
    L.append("# servers (W = 1, 2; P = a free port; S = a unix socket; VENV = target/bench-venv)")
    L.append("rsgi --http-socket 127.0.0.1:P --master --processes W --home VENV --wsgi-file APP.py --disable-logging")
    L.append("rsgi --socket unix:S --master --processes W --home VENV --wsgi-file APP.py --disable-logging   # behind nginx")
    L.append("uwsgi --master --processes W --http-socket 127.0.0.1:P --add-header 'Connection: close' --home VENV --wsgi-file APP.py --disable-logging")
    L.append("uwsgi --master --processes W --socket S --home VENV --wsgi-file APP.py --disable-logging   # behind nginx")
    L.append("#   (django: --chdir DIR --pythonpath DIR --module benchsite.wsgi instead of --wsgi-file)")
    L.append("gunicorn --workers W --bind 127.0.0.1:P --chdir DIR --worker-class sync MODULE:application")
    L.append("gunicorn --workers W --bind 127.0.0.1:P --chdir DIR --worker-class gthread --threads 4 MODULE:application")
    L.append("granian --interface wsgi --workers W --host 127.0.0.1 --port P --working-dir DIR MODULE:application")
    L.append("rsgi-bench-limit 127.0.0.1:P        # bench/limit: bare hyper, one current-thread runtime")
    L.append("nginx: worker_processes 1; access_log off; location / { include uwsgi_params; uwsgi_pass unix:S; }")
    L.append("# load (after 3 s of the same wrk as warm-up)")
    L.append(f"wrk -t2 -c64 -d{a['duration']}s --latency http://127.0.0.1:P/")
    L.append(f"wrk -t2 -c64 -d{a['duration']}s --latency -H 'Connection: close' http://127.0.0.1:P/")
    L.append("# emperors")
    L.append("rsgid --vassals DIR --run-dir RUN --metrics off --uid root    # vassal: [uwsgi] wsgi-file, master, processes, disable-logging")
    L.append("uwsgi --emperor DIR                                          # vassal: the same plus socket = RUN/NAME.sock")
    L.append("```\n")

    if "throughput" in results:
        runs = results["throughput"]["runs"]
        L.append("## Throughput (medians over repetitions; wrk -t2 -c64 -d10s)\n")
        L.append("KA = keep-alive; close = `Connection: close` on every request. srv cores = CPU seconds "
                 "of the server's processes (nginx included for the nginx rows) per wall second during "
                 "the KA run; other cores = CPU the rest of the machine used meanwhile (other work on it, "
                 "plus softirq time charged to no process of the benchmark; '-' if not recorded). "
                 "err = socket errors (connect+read+write+timeout) + non-2xx, median per run. "
                 "RSS/PSS = sum over every process of the server after the load (nginx rows include "
                 "nginx). vs limit = req/s as a fraction of the bare-hyper limit row (hello only, same "
                 "repetition).\n")
        L.append("| server | app | w | reps | KA req/s | KA p50/p99 ms | close req/s | close p50/p99 ms | "
                 "KA vs limit | close vs limit | srv cores | req/s/core | other cores | err KA\\|close | RSS MiB | PSS MiB |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        order = ["limit"] + SERVERS
        apps = [x for x in ("hello", "json", "django") if any(r["app"] == x for r in runs)]
        ws = sorted({r["w"] for r in runs})
        for app in apps:
            for w in ws:
                for s in order:
                    rs = pick(runs, s, app, w)
                    if not rs:
                        continue
                    ka = median([r["ka"]["rps"] for r in rs])
                    cores = median([r["cores"] for r in rs])
                    lim_ka = lim_cl = "-"
                    if app == "hello" and s != "limit":
                        lk = ratio_median(runs, s, "limit", "hello", w, "ka")
                        lc = ratio_median(runs, s, "limit", "hello", w, "close")
                        lim_ka, lim_cl = fmt(lk, ".2f"), fmt(lc, ".2f")
                    L.append(
                        f"| {s} | {app} | {w} | {len(rs)} | {fmt(ka)} | "
                        f"{fmt(median([r['ka']['p50'] for r in rs]), '.2f')}/{fmt(median([r['ka']['p99'] for r in rs]), '.1f')} | "
                        f"{fmt(median([r['close']['rps'] for r in rs]))} | "
                        f"{fmt(median([r['close']['p50'] for r in rs]), '.2f')}/{fmt(median([r['close']['p99'] for r in rs]), '.1f')} | "
                        f"{lim_ka} | {lim_cl} | {fmt(cores, '.2f')} | {fmt(ka / cores if cores else None)} | "
                        f"{fmt(median([r.get('other_cores') for r in rs]), '.2f')} | "
                        f"{fmt(median([r['ka']['errors'] for r in rs]))}\\|{fmt(median([r['close']['errors'] for r in rs]))} | "
                        f"{fmt(median([r['rss'] for r in rs]), '.1f')} | {fmt(median([r['pss'] for r in rs]), '.1f')} |"
                    )
        L.append("")
        # ratios
        cols = [(app, w, mode) for app in apps for w in ws for mode in ("ka", "close")]
        head = " | ".join(f"{app} w{w} {'keepalive' if mode == 'ka' else 'close'}" for app, w, mode in cols)
        L.append("## rsgi req/s / peer req/s, median of per-repetition ratios (same rep, app, workers)\n")
        L.append("`rsgi-http` is rsgi's own HTTP/1.1 socket; `rsgi-nginx` is rsgi's uwsgi socket behind "
                 "the same nginx as uwsgi-nginx. A value above 1 means rsgi is faster. gunicorn ratios come "
                 "from the repetitions in which gunicorn ran.\n")
        L.append(f"| rsgi | vs | {head} |")
        L.append("|---|---|" + "---:|" * len(cols))
        pairs = [("rsgi-http", p) for p in PEERS] + [("rsgi-nginx", "uwsgi-nginx"), ("rsgi-nginx", "uwsgi-http")]
        for num, den in pairs:
            if not any(r["server"] == den for r in runs) or not any(r["server"] == num for r in runs):
                continue
            cells = [fmt(ratio_median(runs, num, den, app, w, mode), ".2f") for app, w, mode in cols]
            L.append(f"| {num} | {den} | " + " | ".join(cells) + " |")
        for num in ("rsgi-http", "rsgi-nginx"):
            if any(r["server"] == "limit" for r in runs) and any(r["server"] == num for r in runs):
                cells = [fmt(ratio_median(runs, num, "limit", app, w, mode), ".2f") if app == "hello" else "-"
                         for app, w, mode in cols]
                L.append(f"| {num} | limit (bare hyper) | " + " | ".join(cells) + " |")
        L.append("")

    if "pairs" in results and results["pairs"]["runs"]:
        runs = results["pairs"]["runs"]
        L.append("## Alternating pairs: both servers at once, wrk alternating between them\n")
        L.append(f"Each round starts both servers afresh and warms both up ({a['warmup']} s each), then runs "
                 f"{a['pair_slices']} wrk slices of {a['pair_slice']} s, alternating A B B A ... "
                 "(which server is A alternates between rounds), so that a drift of the machine within a "
                 "round falls on both. ratio = rsgi req/s / peer req/s within a round (all of a server's "
                 "slices' requests over their time); p99 = median over a server's slices, then over rounds. "
                 "Finer than the table above for differences of a few percent.\n")
        L.append("| rsgi | vs | app | w | mode | rounds | median ratio | min-max | ratio per round | p99 ms rsgi/peer | err rsgi\\|peer |")
        L.append("|---|---|---|---:|---|---:|---:|---|---|---:|---:|")
        for key, rs in pair_groups(runs).items():
            num, den, app, w, mode = key
            sm = pair_summary(rs)
            ratios = sm["ratios"]
            L.append(
                f"| {num} | {den} | {app} | {w} | {label(mode)} | {len(rs)} | "
                f"{fmt(sm['ratio'], '.3f')} | {fmt(min(ratios, default=None), '.2f')}-{fmt(max(ratios, default=None), '.2f')} | "
                f"{', '.join(f'{x:.2f}' for x in ratios)} | {fmt(sm['p99_num'], '.1f')}/{fmt(sm['p99_den'], '.1f')} | "
                f"{sum(r['num_res']['errors'] for r in rs)}\\|{sum(r['den_res']['errors'] for r in rs)} |"
            )
        L.append("")

    if "cold" in results:
        runs = results["cold"]["runs"]
        L.append("## Cold start: launch -> first HTTP 200, median (min-max) seconds\n")
        keys = sorted({(r["app"], r["w"]) for r in runs}, key=lambda k: (k[0] != "hello", k[1]))
        L.append("| server | " + " | ".join(f"{app} w{w}" for app, w in keys) + " |")
        L.append("|---|" + "---:|" * len(keys))
        for s in SERVERS:
            cells = []
            for app, w in keys:
                rs = pick(runs, s, app, w)
                if not rs:
                    cells.append("-")
                    continue
                t = [x for x in rs[0]["times"] if x is not None]
                cells.append(f"{median(t):.3f} ({min(t):.3f}-{max(t):.3f})" if t else "failed")
            if any(c != "-" for c in cells):
                L.append(f"| {s} | " + " | ".join(cells) + " |")
        L.append("")

    if "emperor" in results:
        L.append("## Emperor: new ini mv-ed into the vassal directory -> its socket answers a uwsgi request with 200\n")
        L.append("Polled every 2 ms; one hello vassal (master + 1 worker, unix socket) already running. "
                 "uWSGI's Emperor with its default 3 s directory scan.\n")
        L.append("| emperor | reps | median s | min s | max s |")
        L.append("|---|---:|---:|---:|---:|")
        for r in results["emperor"]["runs"]:
            t = [x for x in r["times"] if x is not None]
            name = "rsgid" if r["emperor"] == "rsgid" else "uwsgi --emperor"
            if t:
                L.append(f"| {name} | {len(t)}/{len(r['times'])} | {median(t):.3f} | {min(t):.3f} | {max(t):.3f} |")
            else:
                L.append(f"| {name} | 0/{len(r['times'])} | failed | | |")
        L.append("")

    if "reload" in results:
        runs = results["reload"]["runs"]
        L.append("## Reload under load (hello, wrk -t2 -c64 for 16 s, reload triggered 4 s in)\n")
        L.append("rsgid and uWSGI's Emperor: `touch` the vassal ini; gunicorn (sync) and granian: "
                 "`kill -HUP` the master. failed = wrk socket errors + non-2xx (sum over reps); max gap = "
                 "longest interval after the trigger in which no 2xx response completed (1 ms resolution, "
                 "max over reps); gap at = its start relative to the trigger; baseline gap = the longest "
                 "before the trigger; dip = seconds in 100 ms buckets below 50% of the pre-reload "
                 "throughput; reloaded = reps in which new processes appeared.\n")
        L.append("| server | w | mode | reps | reloaded | failed | errors c/r/w/t | non-2xx | max gap s | gap at +s | "
                 "baseline gap s | dip s | req/s before | p99 ms | max lat ms |")
        L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        keys = []
        for r in runs:
            k = (r["server"], r["w"], r["mode"])
            if k not in keys:
                keys.append(k)
        keys.sort(key=lambda k: (k[2], k[1]))
        for k in keys:
            rs = [r for r in runs if (r["server"], r["w"], r["mode"]) == k]
            worst = max(rs, key=lambda r: r["max_gap"])
            errs = [sum(r["sock_err"][i] for r in rs) for i in range(4)]
            L.append(
                f"| {k[0]} | {k[1]} | {k[2]} | {len(rs)} | {sum(r['reloaded'] for r in rs)}/{len(rs)} | "
                f"{sum(r['failed'] for r in rs)} | {'/'.join(map(str, errs))} | {sum(r['non2xx'] for r in rs)} | "
                f"{worst['max_gap']:.3f} | {fmt(worst['gap_at'], '.2f')} | "
                f"{fmt(max(r['base_gap'] or 0 for r in rs), '.3f')} | {median([r['dip'] for r in rs]):.1f} | "
                f"{fmt(median([r['rps_before'] for r in rs]))} | {fmt(median([r['p99'] for r in rs]), '.1f')} | "
                f"{fmt(max(r['max_ms'] or 0 for r in rs))} |"
            )
        L.append("")

    if "vassals" in results:
        runs = results["vassals"]["runs"]
        L.append("## Emperors with N hello vassals (1 worker each, unix sockets)\n")
        L.append("total = emperor + every vassal process; per vassal = (total - emperor) / N; all up = "
                 "emperor launch until every socket answered a uwsgi request. Measured 1 s after all "
                 "were up. MiB.\n")
        L.append("| emperor | N | vassal master | emperor RSS | emperor PSS | total RSS | total PSS | procs | "
                 "RSS/vassal | PSS/vassal | all up s |")
        L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in runs:
            L.append(
                f"| {'rsgid' if r['emperor'] == 'rsgid' else 'uwsgi --emperor'} | {r['n']} | "
                f"{str(r['master']).lower()} | {r['emperor_rss']:.1f} | {r['emperor_pss']:.1f} | "
                f"{r['rss']:.1f} | {r['pss']:.1f} | {r['procs']} | {r['per_vassal_rss']:.2f} | "
                f"{r['per_vassal_pss']:.2f} | {fmt(r['all_up'], '.2f')} |"
            )
        L.append("")

    L.extend(targets(results))
    notes = BENCH / "PROFILE.md"
    if notes.exists() and path.resolve() == (BENCH / "RESULTS.md").resolve():
        L.append("")
        L.append(notes.read_text().rstrip())
    path.write_text("\n".join(L) + "\n")


def targets(results) -> list[str]:
    L = ["## Targets (issue 7), from this run\n",
         "| target | measured | status |", "|---|---|---|"]

    def row(name, measured, ok):
        L.append(f"| {name} | {measured} | {'MET' if ok else '**NOT MET**'} |")

    def hello_close_row(name, vals):
        """vals: (workers, rsgi/uWSGI); the target holds when every ratio is >= 1.0."""
        vals = [(w, v) for w, v in vals if v is not None]
        if vals:
            row(name, ", ".join(f"w{w} {v:.2f}x" for w, v in vals), all(v >= 1.0 for _, v in vals))

    def django_row(name, vals):
        """vals: (workers, mode, rsgi/uWSGI, rsgi's p99, uWSGI's p99); the target holds
        when it holds on every one that has all three figures."""
        vals = [v for v in vals if None not in v[2:]]
        if vals:
            row(name,
                "; ".join(f"w{w} {label(m)} {rr:.2f}x, p99 {p_r:.1f} vs {p_u:.1f} ms"
                          for w, m, rr, p_r, p_u in vals),
                all(rr >= 1.05 and p_r <= p_u for _, _, rr, p_r, p_u in vals))

    runs = results["throughput"]["runs"] if "throughput" in results else []
    ws = sorted({r["w"] for r in runs})
    if runs:
        have = lambda s: any(r["server"] == s for r in runs)  # noqa: E731

        if have("granian"):
            rr = ratio_median(runs, "rsgi-http", "granian", "hello", 1, "ka")
            if rr is not None:
                row("hello, keep-alive, 1 worker: >= 1.2x granian", f"{rr:.2f}x", rr >= 1.2)
        if have("uwsgi-http"):
            hello_close_row("hello, Connection: close: >= 1.0x uWSGI http-socket",
                            [(w, ratio_median(runs, "rsgi-http", "uwsgi-http", "hello", w, "close"))
                             for w in ws])
        if have("uwsgi-nginx"):
            vals = [(w, mode, ratio_median(runs, "rsgi-nginx", "uwsgi-nginx", "hello", w, mode))
                    for w in ws for mode in MODES]
            vals = [x for x in vals if x[2] is not None]
            if vals:
                row("through nginx (hello): >= 1.2x uWSGI behind the same nginx",
                    ", ".join(f"w{w} {label(m)} {v:.2f}x" for w, m, v in vals),
                    all(v >= 1.2 for *_, v in vals))
            others = [(app, w, mode, ratio_median(runs, "rsgi-nginx", "uwsgi-nginx", app, w, mode))
                      for app in ("json", "django") for w in ws for mode in MODES]
            others = [x for x in others if x[3] is not None]
            if others:
                row("through nginx (json, django): >= 1.2x uWSGI behind the same nginx",
                    ", ".join(f"{a} w{w} {label(m)} {v:.2f}x" for a, w, m, v in others),
                    all(v >= 1.2 for *_, v in others))
        if have("uwsgi-http") and any(r["app"] == "django" for r in runs):
            django_row("Django view: >= 1.05x uWSGI, p99 no worse", [
                (w, mode, ratio_median(runs, "rsgi-http", "uwsgi-http", "django", w, mode),
                 median([r[mode]["p99"] for r in pick(runs, "rsgi-http", "django", w)]),
                 median([r[mode]["p99"] for r in pick(runs, "uwsgi-http", "django", w)]))
                for w in ws for mode in MODES])
    if "pairs" in results:
        # The hello-close and Django targets again, from the alternating pairs (finer
        # than 3 reps).
        groups = pair_groups(results["pairs"]["runs"])
        n = max((len(rs) for rs in groups.values()), default=0)
        sums = {key: pair_summary(rs) for key, rs in groups.items()}
        http = {key[2:]: sm for key, sm in sums.items() if key[:2] == ("rsgi-http", "uwsgi-http")}
        hello_close_row(f"hello, Connection: close: >= 1.0x uWSGI http-socket (alternating pairs, {n} rounds)",
                        sorted((w, sm["ratio"]) for (app, w, mode), sm in http.items()
                               if (app, mode) == ("hello", "close")))
        django_row(f"Django view: >= 1.05x uWSGI, p99 no worse (alternating pairs, {n} rounds)", [
            (w, mode, sm["ratio"], sm["p99_num"], sm["p99_den"])
            for (app, w, mode), sm in http.items() if app == "django"])
        nginx = [(app, w, mode, sm["ratio"]) for (num, den, app, w, mode), sm in sums.items()
                 if (num, den) == ("rsgi-nginx", "uwsgi-nginx") and sm["ratio"] is not None]
        if nginx:
            row(f"through nginx: >= 1.2x uWSGI behind the same nginx (alternating pairs, {n} rounds)",
                ", ".join(f"{a} w{w} {label(m)} {v:.2f}x" for a, w, m, v in nginx),
                all(v >= 1.2 for *_, v in nginx))
    if runs:
        parts, ok = [], True
        for num, den in (("rsgi-http", "uwsgi-http"), ("rsgi-nginx", "uwsgi-nginx")):
            for app in APP_NAMES:
                for w in ws:
                    a_ = median([r["rss"] for r in pick(runs, num, app, w)])
                    b_ = median([r["rss"] for r in pick(runs, den, app, w)])
                    if a_ is None or b_ is None:
                        continue
                    parts.append(f"{num} {app} w{w} {a_:.1f} vs {b_:.1f}")
                    ok = ok and a_ <= b_
        if parts:
            row("total RSS <= uWSGI's, same app and workers (MiB)", "; ".join(parts), ok)
    if "emperor" in results:
        for r in results["emperor"]["runs"]:
            if r["emperor"] == "rsgid":
                t = [x for x in r["times"] if x is not None]
                if t and len(t) == len(r["times"]):
                    row("new ini -> first response < 0.1 s (rsgid)",
                        f"median {median(t):.3f} s, max {max(t):.3f} s", max(t) < 0.1)
                else:
                    row("new ini -> first response < 0.1 s (rsgid)", "some never answered", False)
    if "reload" in results:
        rs = [r for r in results["reload"]["runs"] if r["server"] == "rsgid"]
        if rs:
            failed = sum(r["failed"] for r in rs)
            gap = max(r["max_gap"] for r in rs)
            reloaded = sum(r["reloaded"] for r in rs)
            row("reload under load (rsgid): zero failed requests, longest gap < 10 ms",
                f"{failed} failed, longest gap {gap * 1000:.0f} ms, reloaded {reloaded}/{len(rs)}",
                failed == 0 and gap < 0.010 and reloaded == len(rs))
    if "vassals" in results:
        runs = results["vassals"]["runs"]
        r50 = [r for r in runs if r["emperor"] == "rsgid" and r["n"] == 50]
        if r50:
            worst = max(r["emperor_rss"] for r in r50)
            row("rsgid < 8 MB RSS with 50 vassals", f"{worst:.1f} MiB ({worst * 1.048576:.1f} MB)", worst * 1.048576 < 8)
        parts, ok = [], True
        for r in runs:
            if r["emperor"] != "rsgid":
                continue
            u = [x for x in runs if x["emperor"] == "uwsgi" and x["n"] == r["n"] and x["master"] == r["master"]]
            if not u:
                continue
            parts.append(f"N={r['n']} master={str(r['master']).lower()}: {r['per_vassal_rss']:.1f} vs "
                         f"{u[0]['per_vassal_rss']:.1f}")
            ok = ok and r["per_vassal_rss"] <= u[0]["per_vassal_rss"]
        if parts:
            row("per-vassal RSS <= uWSGI Emperor's (MiB)", "; ".join(parts), ok)
    return L if len(L) > 3 else []  # no section without a row (an A/B run of two builds)


# ---------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------


def count(x: str) -> int:
    n = int(x)
    if n < 1:
        raise ValueError(x)
    return n


def pair_spec(x: str) -> tuple:
    """`RSGI/PEER:APP:WORKERS:MODE`, e.g. `rsgi-http/uwsgi-http:django:2:close`; PEER may be
    base-http or base-nginx (the `--base-bin` build)."""
    parts = x.split(":")
    if len(parts) != 4 or parts[0].count("/") != 1:
        raise ValueError(x)
    num, den = parts[0].split("/")
    app, w, mode = parts[1], count(parts[2]), parts[3]
    if num not in SERVERS or den not in SERVERS + list(BASE_SERVERS) or app not in APP_NAMES or mode not in MODES:
        raise ValueError(x)
    return (num, den, app, w, mode)


def comma_list(p, opt: str, value: str, known=None, conv=str, what="a whole number >= 1") -> list:
    """`--opt a,b,c` as a list; an unknown or malformed item is a usage error naming it."""
    items = []
    for x in value.split(","):
        try:
            v = conv(x)
        except ValueError:
            p.error(f"{opt}: {x!r} is not {what}")
        if known is not None and v not in known:
            p.error(f"{opt}: unknown {x!r} (known: {', '.join(known)})")
        items.append(v)
    return items


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venv", default=str(ROOT / "target" / "bench-venv"))
    p.add_argument("--rsgi-bin", default=str(ROOT / "target" / "release"),
                   help="the directory holding rsgi, rsgid and rsgictl (default: target/release)")
    p.add_argument("--base-bin", metavar="DIR",
                   help="a second rsgi build (e.g. an earlier commit's target/release) that the pairs "
                        "base-http and base-nginx run, to A/B two builds in one run")
    p.add_argument("--limit-bin", default=str(ROOT / "target" / "bench-limit" / "release" / "rsgi-bench-limit"))
    p.add_argument("--out", default=str(ROOT / "target" / "bench-out"))
    p.add_argument("--results", default=str(BENCH / "RESULTS.md"))
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--apps", default="hello,json,django")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--servers", default=",".join(["limit"] + SERVERS))
    p.add_argument("--reps", type=count, default=3)
    p.add_argument("--gunicorn-reps", type=int, default=1,
                   help="repetitions for the gunicorn rows (far behind; saves 10 min a rep)")
    p.add_argument("--duration", type=count, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--pairs", default=",".join([f"rsgi-http/uwsgi-http:django:{w}:{m}" for w in (1, 2) for m in MODES]
                                               + [f"rsgi-http/uwsgi-http:hello:{w}:close" for w in (1, 2)]
                                               + [f"rsgi-nginx/uwsgi-nginx:{app}:{w}:{m}"
                                                  for app in APP_NAMES for w in (1, 2) for m in MODES]),
                   help="the rows of the pairs section, each RSGI/PEER:APP:WORKERS:MODE (MODE: ka or close)")
    p.add_argument("--pair-rounds", type=count, default=6)
    p.add_argument("--pair-slices", type=count, default=8,
                   help="wrk slices per round, half for each server of the pair")
    p.add_argument("--pair-slice", type=count, default=2, help="seconds a slice")
    p.add_argument("--cold-reps", type=int, default=5)
    p.add_argument("--emperor-reps", type=int, default=5)
    p.add_argument("--reload-reps", type=int, default=1)
    p.add_argument("--reload-duration", type=int, default=16)
    p.add_argument("--reload-at", type=float, default=4.0)
    p.add_argument("--reload-servers", default="rsgid,uwsgi-emperor,gunicorn,granian")
    p.add_argument("--vassal-counts", default="1,10,50")
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--logging", choices=("on", "off"), default="off",
                   help="request logging for rsgi and uWSGI (both the same)")
    p.add_argument("--report-only", metavar="RESULTS_JSON")
    a = p.parse_args()

    if a.report_only:
        try:
            results = json.loads(Path(a.report_only).read_text())
        except (OSError, ValueError) as e:
            p.error(f"--report-only {a.report_only}: {e}")
        report(results, Path(a.results))
        log(f"wrote {a.results}")
        return 0

    if not (Path(a.rsgi_bin) / "rsgi").is_file():
        p.error(f"--rsgi-bin {a.rsgi_bin}: no rsgi binary in it (give the directory, not the file)")
    if a.base_bin and not (Path(a.base_bin) / "rsgi").is_file():
        p.error(f"--base-bin {a.base_bin}: no rsgi binary in it (give the directory, not the file)")
    sections = comma_list(p, "--sections", a.sections, SECTIONS)
    a.apps = comma_list(p, "--apps", a.apps, APP_NAMES)
    a.workers = comma_list(p, "--workers", a.workers, conv=count)
    servers = comma_list(p, "--servers", a.servers, ["limit"] + SERVERS)
    a.servers_extra = [s for s in servers if s == "limit"]
    a.servers = [s for s in SERVERS if s in servers]
    a.reload_servers = comma_list(p, "--reload-servers", a.reload_servers,
                                  ["rsgid", "uwsgi-emperor", "gunicorn"]
                                  + [s for s in SERVERS if s not in NGINX_SERVERS])
    a.vassal_counts = comma_list(p, "--vassal-counts", a.vassal_counts, conv=count)
    a.pairs = comma_list(p, "--pairs", a.pairs, conv=pair_spec, what="RSGI/PEER:APP:WORKERS:MODE")
    if not a.base_bin and any(den in BASE_SERVERS for _, den, *_ in a.pairs):
        p.error("--pairs: base-http and base-nginx need --base-bin DIR")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    a.out = str(Path(a.out) / stamp)
    b = Bench(a)
    results = b.results
    results.update({
        "machine": machine_info(),
        "versions": versions(b.venv, b.bin, b.base_bin),
        "command": " ".join(["bench/run.sh"] + sys.argv[1:]),
        "args": {k: v for k, v in vars(a).items() if isinstance(v, (int, float, str, list))},
    })
    log(f"bench: output in {b.out}, scratch in {b.tmp}, load {loadavg()}")
    t0 = time.monotonic()
    try:
        for sec in SECTIONS:
            if sec in sections:
                log(f"== {sec} (load {loadavg()})")
                part = results.setdefault(sec, {"runs": [], "load": {}})
                part["load"]["start"] = loadavg()
                getattr(b, f"section_{sec}")(part["runs"])
                part["load"]["end"] = loadavg()
                results["elapsed_min"] = (time.monotonic() - t0) / 60
                b.save()
    finally:
        results["elapsed_min"] = (time.monotonic() - t0) / 60
        b.save()
        latest = Path(a.out).parent / "results.json"
        shutil.copy(b.out / "results.json", latest)
        shutil.rmtree(b.tmp, ignore_errors=True)
    report(results, Path(a.results))
    log(f"done in {results['elapsed_min']:.1f} min; wrote {a.results} and {b.out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
