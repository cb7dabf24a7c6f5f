#!/usr/bin/env python3
"""CPU per request and req/s of two rsgi builds, measured in turns.

Both builds serve the hello app at once: behind their own nginx (`--front nginx`: rsgi's
uwsgi socket, nginx with one worker process, as bench.py's nginx rows) or on their own
HTTP socket (`--front http`). wrk loads one, then the other (A B B A ...); the CPU time of
each rsgi's processes (master and workers, utime + stime from /proc/PID/stat) over a wrk
run, divided by the requests wrk counted, is that build's CPU per request for the run.
Slow drift of the machine falls on both builds alike. Stdlib only.

    python3 bench/cpu_pairs.py --a ../base/target/release --b target/release \\
        --front nginx --rounds 6 --seconds 10 --mode keepalive

Prints one line per run and the medians; writes nothing else.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench.py, beside this file: its nginx configuration)

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "tests" / "apps" / "hello.py"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """utime + stime of `pid`, in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def tree(pid: int) -> list:
    """`pid` and its descendants."""
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            kids = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            for k in kids:
                out += tree(int(k))
    except OSError:
        pass
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered 200 on port {port}")


class Server:
    """One rsgi build, behind its own nginx or on its own HTTP socket."""

    def __init__(self, name: str, bindir: Path, venv: Path, workers: int, d: Path, front: str):
        self.name = name
        d.mkdir()
        sock = d / "app.sock"
        self.port = free_port()
        app = ["--master", "--processes", str(workers), "--home", str(venv),
               "--wsgi-file", str(HELLO), "--disable-logging"]
        self.log = open(d / "rsgi.log", "wb")
        self.nginx = None
        self.rsgi = None
        try:
            self.start(bindir, d, sock, app, front)
        except BaseException:
            self.stop()
            raise

    def start(self, bindir: Path, d: Path, sock: Path, app: list, front: str) -> None:
        if front == "http":
            argv = [str(bindir / "rsgi"), "--http-socket", f"127.0.0.1:{self.port}"] + app
            self.rsgi = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
            wait_http(self.port, time.monotonic() + 30)
            return
        # bench.py's nginx, as its nginx rows run it (one worker, access log off).
        conf = bench.Bench.nginx_conf(SimpleNamespace(is_root=os.geteuid() == 0),
                                      self.port, sock, d)
        argv = [str(bindir / "rsgi"), "--socket", f"unix:{sock}"] + app
        self.rsgi = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(d)],
                                      stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(self.port, time.monotonic() + 30)

    def ticks(self) -> int:
        return sum(cpu_ticks(p) for p in tree(self.rsgi.pid))

    def nginx_ticks(self) -> int:
        return sum(cpu_ticks(p) for p in tree(self.nginx.pid)) if self.nginx else 0

    def stop(self) -> None:
        procs = [p for p in (self.nginx, self.rsgi) if p]
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.log.close()


def wrk(port: int, seconds: int, close: bool) -> int:
    """Run wrk against `port`; the requests it completed."""
    argv = ["wrk", "-t2", "-c64", f"-d{seconds}s"]
    if close:
        argv += ["-H", "Connection: close"]
    out = subprocess.run(argv + [f"http://127.0.0.1:{port}/"], capture_output=True,
                         text=True, timeout=seconds + 30, check=True).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError(f"no request count in wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        print(f"  ({bad.group(1)} non-2xx answers)", flush=True)
    return int(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", required=True, type=Path, help="directory holding build A's rsgi")
    p.add_argument("--b", required=True, type=Path, help="directory holding build B's rsgi")
    p.add_argument("--venv", type=Path, default=ROOT / "target" / "bench-venv")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--front", choices=["nginx", "http"], default="nginx",
                   help="wrk to nginx in front of rsgi's uwsgi socket, or to rsgi's HTTP socket")
    p.add_argument("--rounds", type=int, default=6, help="A B B A rounds (2 runs each)")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--mode", choices=["keepalive", "close"], default="keepalive",
                   help="wrk with keep-alive or Connection: close")
    a = p.parse_args()
    if not shutil.which("wrk") or not shutil.which("nginx"):
        sys.exit("needs wrk and nginx on PATH")
    tmp = Path(tempfile.mkdtemp(prefix="rsgi-cpu-pairs-"))
    servers = []
    per = {"A": [], "B": []}
    rps = {"A": [], "B": []}
    ngx = {"A": [], "B": []}
    try:
        for name, bindir in (("A", a.a), ("B", a.b)):
            servers.append(Server(name, bindir, a.venv, a.workers, tmp / name, a.front))
        for s in servers:  # warm-up
            wrk(s.port, 3, a.mode == "close")
        for r in range(a.rounds):
            order = servers if r % 2 == 0 else servers[::-1]
            for s in order + order[::-1]:
                t0, n0, w0 = s.ticks(), s.nginx_ticks(), time.monotonic()
                n = wrk(s.port, a.seconds, a.mode == "close")
                t1, n1, w1 = s.ticks(), s.nginx_ticks(), time.monotonic()
                us = (t1 - t0) / TICK / n * 1e6
                nus = (n1 - n0) / TICK / n * 1e6
                per[s.name].append(us)
                rps[s.name].append(n / (w1 - w0))
                ngx[s.name].append(nus)
                print(f"round {r + 1} {s.name}: {n / (w1 - w0):,.0f} req/s, rsgi "
                      f"{us:.2f} us/request ({(t1 - t0) / TICK / (w1 - w0):.2f} cores), "
                      f"nginx {nus:.2f} us/request", flush=True)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    for name, d in (("A", a.a), ("B", a.b)):
        print(f"{name} ({d}): rsgi median {statistics.median(per[name]):.2f} us/request "
              f"(range {min(per[name]):.2f}-{max(per[name]):.2f}, {len(per[name])} runs), "
              f"nginx {statistics.median(ngx[name]):.2f} us/request, "
              f"{statistics.median(rps[name]):,.0f} req/s")
    ratio = statistics.median(per["B"]) / statistics.median(per["A"])
    print(f"B/A rsgi CPU per request: {ratio:.3f}")
    # Per round (its A and B runs), the req/s ratio, as bench.py's pairs take theirs.
    n = 2
    rounds = [sum(rps["B"][i:i + n]) / sum(rps["A"][i:i + n]) for i in range(0, len(rps["A"]), n)]
    print(f"B/A req/s per round: {', '.join(f'{r:.3f}' for r in rounds)}; "
          f"median {statistics.median(rounds):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
