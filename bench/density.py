#!/usr/bin/env python3
"""Density figures for on-demand vassals and the upgrade in place (issue 20 item 4).

Stdlib only. Runs the built rsgid/rsgi (``--bin-dir``, default target/release) on a
scratch directory and writes a Markdown report (``--out``, default
bench/RESULTS-density.md):

1. N hello vassals (``tests/apps/hello.py``, single process, uwsgi on unix sockets),
   every one ``on-demand = true``: rsgid's RSS and the total RSS (rsgid and every
   descendant, from /proc/PID/smaps_rollup) while all sleep; then with K awake (one
   request each).
2. First response from sleeping: a uwsgi ``GET /`` to a sleeping vassal, timed from
   connect to the last byte (the vassal starts meanwhile), over S distinct sleeping
   vassals: median and p99 (with S samples, p99 is the slowest but one or the slowest).
   Hello, and Django (a one-view project, made at run time, in the venv given by
   ``--django-venv``) if that venv has Django.
3. uWSGI's Emperor with the same N hello apps, awake (as it runs them: one process each,
   ``--socket`` on a unix socket), if ``--uwsgi`` names a uwsgi binary: its RSS and the
   total.
4. Upgrade under load: one hello vassal, T client threads sending uwsgi requests back
   to back for D seconds, ``rsgictl upgrade`` a third of the way in (the binary is the
   same file: the exec, the check and the handover are what is measured): failed
   requests, and the longest gap between two consecutive responses.

Every wait has a deadline. The machine is shared: the report records the load average.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent



# Shared with the main benchmark (bench.py is stdlib only and runs nothing on import).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import memory as rss_mib, tree  # noqa: E402

def log(msg: str) -> None:
    print(f"[density] {msg}", file=sys.stderr, flush=True)


def uwsgi_packet(path: str) -> bytes:
    env = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "REQUEST_URI": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
    }
    body = b"".join(
        struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
        for k, v in env.items()
    )
    return struct.pack("<BHB", 0, len(body), 0) + body


def uwsgi_get(sock_path: Path, timeout: float = 60.0) -> int:
    """Status code of a uwsgi GET / (0 when nothing usable came back)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(uwsgi_packet("/"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def wait_until(cond, deadline: float, what: str, every: float = 0.05) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > deadline:
            raise TimeoutError(f"{what}: not after {deadline} s")
        time.sleep(every)
    return time.monotonic() - t0


def pct(values, p: float) -> float:
    vs = sorted(values)
    k = min(len(vs) - 1, max(0, int(round(p / 100 * (len(vs) - 1)))))
    return vs[k]


class Rsgid:
    def __init__(self, args, base: Path, extra=()):
        self.args = args
        self.base = base
        self.vdir = base / "vassals"
        self.rdir = base / "run"
        self.ctl = base / "ctl.sock"
        self.vdir.mkdir(parents=True, exist_ok=True)
        self.rdir.mkdir(parents=True, exist_ok=True)
        self.exe = base / "rsgid"
        shutil.copy(Path(args.bin_dir) / "rsgid", self.exe)
        cmd = [str(self.exe), "--vassals", str(self.vdir), "--run-dir", str(self.rdir),
               "--control", str(self.ctl), "--metrics", "off",
               "--rsgi", str(Path(args.bin_dir) / "rsgi"), *extra]
        if os.geteuid() == 0:
            cmd += ["--uid", "root"]
        self.logf = open(base / "rsgid.log", "ab")
        env = dict(os.environ, RSGID_LOG="warn")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=self.logf, env=env,
                                     start_new_session=True)
        wait_until(self.ctl.exists, 30, "rsgid's control socket")

    def ctl_run(self, *argv, timeout=120) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(self.args.bin_dir) / "rsgictl"), "--socket", str(self.ctl), *argv],
                              capture_output=True, text=True, timeout=timeout)

    def states(self) -> dict:
        import json
        out = self.ctl_run("--json", "list")
        return {v["name"]: v["state"] for v in json.loads(out.stdout)["vassals"]}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.logf.close()


def hello_ini(extra: str = "", master: bool = False, processes: int = 1) -> str:
    """The hello vassal (one process unless asked), the same text for rsgi and uWSGI."""
    return (f"[uwsgi]\nwsgi-file = {REPO / 'tests/apps/hello.py'}\nmaster = {str(master).lower()}\n"
            f"processes = {processes}\ndisable-logging = true\n{extra}")


DJANGO_APP = '''
import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="bench",
                   MIDDLEWARE=["django.middleware.common.CommonMiddleware"])
django.setup()


def index(request):
    return HttpResponse("Hello from Django")


urlpatterns = [path("", index)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
'''


def section_density(args, report: list):
    n, k = args.vassals, args.awake
    base = Path(tempfile.mkdtemp(prefix="density-"))
    emp = Rsgid(args, base)
    try:
        for i in range(n):
            (emp.vdir / f"hello{i:03d}.ini").write_text(hello_ini("on-demand = true\n"))
        took = wait_until(lambda: list(emp.states().values()).count("sleeping") == n, 300,
                          f"{n} sleeping vassals", every=0.5)
        time.sleep(args.settle)
        e_rss, _, _ = rss_mib([emp.proc.pid])
        t_rss, t_pss, procs = rss_mib(tree(emp.proc.pid))
        report.append(f"| {n} on-demand hello vassals, all sleeping | {e_rss:.1f} | {t_rss:.1f} | {procs} |")
        log(f"sleeping: rsgid {e_rss:.1f} MiB, total {t_rss:.1f} MiB, {procs} procs (up in {took:.1f} s)")
        for i in range(k):
            assert uwsgi_get(emp.rdir / f"hello{i:03d}.sock") == 200
        time.sleep(args.settle)
        e_rss, _, _ = rss_mib([emp.proc.pid])
        t_rss, t_pss, procs = rss_mib(tree(emp.proc.pid))
        report.append(f"| {n} on-demand hello vassals, {k} awake | {e_rss:.1f} | {t_rss:.1f} | {procs} |")
        log(f"{k} awake: rsgid {e_rss:.1f} MiB, total {t_rss:.1f} MiB, {procs} procs")
        # First response from sleeping, each sample a different sleeping vassal.
        times = []
        for i in range(k, min(n, k + args.samples)):
            t0 = time.monotonic()
            status = uwsgi_get(emp.rdir / f"hello{i:03d}.sock")
            times.append(time.monotonic() - t0)
            assert status == 200, status
        args.first_hello = times
    finally:
        emp.stop()
        shutil.rmtree(base, ignore_errors=True)


def section_django(args):
    venv = Path(args.django_venv)
    py = venv / "bin" / "python3"
    if not py.exists() or subprocess.run([str(py), "-c", "import django"]).returncode != 0:
        log(f"no Django in {venv}: Django first responses skipped")
        return None
    base = Path(tempfile.mkdtemp(prefix="density-dj-"))
    app = base / "djapp.py"
    app.write_text(DJANGO_APP)
    emp = Rsgid(args, base)
    times = []
    try:
        m = args.django_samples
        for i in range(m):
            (emp.vdir / f"dj{i:03d}.ini").write_text(
                f"[uwsgi]\nwsgi-file = {app}\nhome = {venv}\ndisable-logging = true\non-demand = true\n")
        wait_until(lambda: list(emp.states().values()).count("sleeping") == m, 120, "Django vassals", every=0.5)
        for i in range(m):
            t0 = time.monotonic()
            status = uwsgi_get(emp.rdir / f"dj{i:03d}.sock")
            times.append(time.monotonic() - t0)
            assert status == 200, status
    finally:
        emp.stop()
        shutil.rmtree(base, ignore_errors=True)
    return times


def section_uwsgi(args, report: list):
    if not args.uwsgi or not Path(args.uwsgi).exists():
        log("no uwsgi binary (--uwsgi): uWSGI's Emperor row skipped")
        report.append(f"| uWSGI Emperor, {args.vassals} hello vassals (awake) | not measured: no uwsgi binary | | |")
        return
    n = args.vassals
    base = Path(tempfile.mkdtemp(prefix="density-uw-"))
    vdir, rdir = base / "vassals", base / "run"
    vdir.mkdir()
    rdir.mkdir()
    for i in range(n):
        (vdir / f"hello{i:03d}.ini").write_text(hello_ini(f"socket = {rdir}/hello{i:03d}.sock\n"))
    logf = open(base / "uwsgi.log", "ab")
    proc = subprocess.Popen([args.uwsgi, "--emperor", str(vdir)], stdout=logf, stderr=logf,
                            start_new_session=True)
    try:
        def all_up():
            for i in range(n):
                try:
                    if uwsgi_get(rdir / f"hello{i:03d}.sock", timeout=5) != 200:
                        return False
                except OSError:
                    return False
            return True
        wait_until(all_up, 600, "uWSGI's vassals", every=1.0)
        time.sleep(args.settle)
        e_rss, _, _ = rss_mib([proc.pid])
        t_rss, _, procs = rss_mib(tree(proc.pid))
        report.append(f"| uWSGI Emperor, {n} hello vassals (awake) | {e_rss:.1f} | {t_rss:.1f} | {procs} |")
        log(f"uWSGI: emperor {e_rss:.1f} MiB, total {t_rss:.1f} MiB, {procs} procs")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        logf.close()
        shutil.rmtree(base, ignore_errors=True)


def section_upgrade(args):
    base = Path(tempfile.mkdtemp(prefix="density-up-"))
    emp = Rsgid(args, base)
    stop = threading.Event()
    done, failed = [], []
    lock = threading.Lock()
    try:
        (emp.vdir / "app.ini").write_text(hello_ini(master=True, processes=2))
        sock = emp.rdir / "app.sock"
        wait_until(lambda: emp.states().get("app") == "ready", 60, "the vassal", every=0.1)

        def client():
            while not stop.is_set():
                try:
                    ok = uwsgi_get(sock, timeout=30) == 200
                except OSError as e:
                    ok = False
                    with lock:
                        failed.append(str(e))
                with lock:
                    (done if ok else failed).append(time.monotonic())

        threads = [threading.Thread(target=client) for _ in range(args.upgrade_threads)]
        for t in threads:
            t.start()
        time.sleep(args.upgrade_secs / 3)
        t_up = time.monotonic()
        out = emp.ctl_run("upgrade")
        up_took = time.monotonic() - t_up
        assert out.returncode == 0, out.stderr
        time.sleep(args.upgrade_secs * 2 / 3)
        stop.set()
        for t in threads:
            t.join()
        ts = sorted(done)
        gap = max(b - a for a, b in zip(ts, ts[1:]))
        return {"ok": len(done), "failed": len(failed), "gap_ms": gap * 1000, "upgrade_s": up_took}
    finally:
        stop.set()
        emp.stop()
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=str(REPO / "target" / "release"))
    ap.add_argument("--vassals", type=int, default=200)
    ap.add_argument("--awake", type=int, default=10)
    ap.add_argument("--samples", type=int, default=50, help="first responses from sleeping (hello)")
    ap.add_argument("--django-samples", type=int, default=20)
    ap.add_argument("--django-venv", default=str(REPO / "target" / "e2e-venv"),
                    help="a virtualenv with Django (the e2e tests' one)")
    ap.add_argument("--uwsgi", default=str(REPO / "target" / "bench-venv" / "bin" / "uwsgi"))
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--upgrade-secs", type=float, default=9.0)
    ap.add_argument("--upgrade-threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS-density.md"))
    args = ap.parse_args()
    args.bin_dir = str(Path(args.bin_dir).resolve())
    load0 = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    section_density(args, rows)
    dj = section_django(args)
    section_uwsgi(args, rows)
    up = section_upgrade(args)
    load1 = os.getloadavg()
    h = args.first_hello
    lines = [
        "# Density: on-demand vassals and the upgrade in place (issue 20)",
        "",
        f"`python3 bench/density.py --bin-dir {args.bin_dir}` on {started}; load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (2 cores, shared with other work: "
        "absolute times move with it).",
        "",
        "## Memory (RSS from /proc/PID/smaps_rollup)",
        "",
        "| setup | emperor MiB | total MiB | processes |",
        "|---|---|---|---|",
        *rows,
        "",
        "## First response from a sleeping vassal (connect to last byte; the vassal starts meanwhile)",
        "",
        "| app | samples | median ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        f"| hello | {len(h)} | {statistics.median(h) * 1000:.0f} | {pct(h, 99) * 1000:.0f} | {max(h) * 1000:.0f} |",
    ]
    if dj:
        lines.append(f"| Django (one view) | {len(dj)} | {statistics.median(dj) * 1000:.0f} | "
                     f"{pct(dj, 99) * 1000:.0f} | {max(dj) * 1000:.0f} |")
    else:
        lines.append("| Django | not measured: no Django in the venv | | | |")
    lines += [
        "",
        f"## Upgrade in place under load ({args.upgrade_threads} client threads, uwsgi requests back to back, "
        f"{args.upgrade_secs:.0f} s, `rsgictl upgrade` a third of the way in)",
        "",
        "| requests answered | failed | longest gap between responses ms | `rsgictl upgrade` took s |",
        "|---|---|---|---|",
        f"| {up['ok']} | {up['failed']} | {up['gap_ms']:.0f} | {up['upgrade_s']:.2f} |",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
