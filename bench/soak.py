#!/usr/bin/env python3
"""A soak and fault campaign for rsgid + rsgi, bounded in time, on loopback only.

Runs the real binaries (target/release if built, else target/debug; --bin-dir to choose)
with the tests' hello app, and measures what issue 16 says must keep holding:

1. worker: `kill -9` of one worker under load (keep-alive and `Connection: close`
   clients): requests lost, by kind. Only keep-alive requests the worker held may be lost.
2. master: `kill -9` of the vassal's master under `Connection: close` load: time until a
   new generation is ready, refused connections (must be 0: rsgid holds the socket).
3. rsgid: `kill -9` of rsgid: time until every process of the vassal is gone; then a new
   rsgid: time from its start to the first answered request.
4. reloads: N graceful reloads (`rsgictl reload --wait`) under load: failed requests;
   rsgid's RSS and open fds before and after.
5. long run: requests for a while (wrk when installed, else this script's clients), each
   worker's RSS sampled: first, last, highest.

    bench/soak.py                       # the modest default: ~4 minutes
    bench/soak.py --reloads 500 --long 600 --clients 8
    bench/soak.py --json out.json

Stdlib only. Prints a Markdown summary (bench/RESULTS-soak.md keeps one). Every wait has a
deadline; the whole run is bounded by the durations given. Not run by CI. Needs Linux
(/proc) and runs as any user.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


# Shared with the main benchmark (bench.py is stdlib only and runs nothing on import).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "tests", "apps", "hello.py")


def wait_until(what, deadline_s, check, step=0.02):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(step)
    raise SystemExit(f"soak: timed out after {deadline_s} s waiting for {what}")


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class Rig:
    """rsgid with one hello vassal on an HTTP port, in a temp dir."""

    def __init__(self, bin_dir, processes):
        self.bin_dir = bin_dir
        self.dir = tempfile.mkdtemp(prefix="rsgi-soak-")
        self.vassals = os.path.join(self.dir, "vassals")
        self.run = os.path.join(self.dir, "run")
        os.makedirs(self.vassals)
        os.makedirs(self.run)
        self.ctl = os.path.join(self.dir, "ctl.sock")
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "rsgid.log"), "ab")
        self.rsgid = None
        ini = (
            "[uwsgi]\n"
            f"http-socket = 127.0.0.1:{self.port}\n"
            f"wsgi-file = {APP}\n"
            "master = true\n"
            f"processes = {processes}\n"
        )
        with open(os.path.join(self.vassals, "hello.ini"), "w") as f:
            f.write(ini)

    def start(self):
        args = [
            os.path.join(self.bin_dir, "rsgid"),
            "--vassals", self.vassals,
            "--run-dir", self.run,
            "--control", self.ctl,
            "--metrics", "off",
            "--rsgi", os.path.join(self.bin_dir, "rsgi"),
        ]
        if os.geteuid() == 0:
            args += ["--uid", "root"]
        env = dict(os.environ, RSGID_LOG="info")
        env.pop("NOTIFY_SOCKET", None)
        self.rsgid = subprocess.Popen(
            args, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
            env=env, cwd=self.dir, start_new_session=True,
        )
        return self.rsgid

    def ctl_json(self, *args):
        out = subprocess.run(
            [os.path.join(self.bin_dir, "rsgictl"), "--socket", self.ctl, "--json", *args],
            capture_output=True, timeout=120,
        )
        try:
            return json.loads(out.stdout)
        except ValueError:
            return None

    def status(self):
        return self.ctl_json("status", "hello")

    def ready_pid(self):
        s = self.status()
        if s and s.get("state") == "ready" and s.get("pid"):
            return s["pid"]
        return None

    def workers(self):
        s = self.status() or {}
        return [w["pid"] for w in s.get("workers", [])]

    def get(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            c.request("GET", "/", headers={"Connection": "close"})
            r = c.getresponse()
            body = r.read()
            c.close()
            return r.status == 200 and body.startswith(b"Hello World")
        except OSError:
            return False

    def vassal_pids(self):
        """Every process of the vassal: its master and the master's children."""
        master = [p for p in children(self.rsgid.pid)] if self.rsgid else []
        out = []
        for m in master:
            out.append(m)
            out.extend(children(m))
        return out

    def stop(self):
        if self.rsgid and self.rsgid.poll() is None:
            self.rsgid.send_signal(signal.SIGTERM)
            try:
                self.rsgid.wait(30)
            except subprocess.TimeoutExpired:
                self.rsgid.kill()
                self.rsgid.wait(5)

    def close(self, keep):
        self.stop()
        self.log.close()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class Load:
    """Client threads hammering GET / : `keepalive` of them on persistent connections,
    `close` of them with one connection per request. Counts successes and failures by
    kind."""

    def __init__(self, port, keepalive, close):
        self.port = port
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = {"keepalive": 0, "close": 0}
        self.failed = {"keepalive": {}, "close": {}}
        self.threads = [threading.Thread(target=self.run, args=("keepalive",), daemon=True)
                        for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self.run, args=("close",), daemon=True)
                         for _ in range(close)]

    def note(self, mode, kind):
        with self.lock:
            self.failed[mode][kind] = self.failed[mode].get(kind, 0) + 1

    def run(self, mode):
        conn = None
        while not self.stop_ev.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                headers = {"Connection": "close"} if mode == "close" else {}
                conn.request("GET", "/", headers=headers)
                r = conn.getresponse()
                body = r.read()
                if r.status == 200 and body.startswith(b"Hello World"):
                    with self.lock:
                        self.ok[mode] += 1
                else:
                    self.note(mode, f"status {r.status}")
                if mode == "close" or r.will_close:
                    conn.close()
                    conn = None
            except ConnectionRefusedError:
                self.note(mode, "refused")
                conn = None
                time.sleep(0.01)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                    http.client.BadStatusLine, http.client.IncompleteRead):
                self.note(mode, "reset/closed")
                conn = None
            except socket.timeout:
                self.note(mode, "timeout")
                conn = None
            except OSError as e:
                self.note(mode, type(e).__name__)
                conn = None

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)

    def total_failed(self, mode=None):
        modes = [mode] if mode else ["keepalive", "close"]
        return sum(sum(self.failed[m].values()) for m in modes)

    def summary(self):
        return {"ok": dict(self.ok), "failed": {m: dict(v) for m, v in self.failed.items()}}


def fmt_failed(load):
    parts = []
    for mode in ("keepalive", "close"):
        kinds = load.failed[mode]
        if kinds:
            parts.append(f"{mode}: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        else:
            parts.append(f"{mode}: 0")
    return "; ".join(parts)


def scenario_worker(rig, args, out):
    workers = wait_until("two workers", 30, lambda: (lambda w: w if len(w) >= 2 else None)(rig.workers()))
    victim = workers[0]
    with Load(rig.port, args.clients, args.clients) as load:
        time.sleep(args.phase / 2)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        replaced = wait_until(
            "a replacement worker", 30,
            lambda: (lambda w: w if len(w) >= 2 and victim not in w else None)(rig.workers()),
        )
        back = time.monotonic() - killed_at
        time.sleep(args.phase / 2)
    out["worker"] = {
        "killed": victim, "replacement_s": round(back, 3), "load": load.summary(),
        "keepalive_clients": args.clients,
    }
    ka, cl = load.total_failed("keepalive"), load.total_failed("close")
    return (f"| kill -9 a worker (of {len(workers)}) under load ({args.clients} keep-alive + "
            f"{args.clients} close clients, {args.phase:g} s) | {load.ok['keepalive'] + load.ok['close']} ok; "
            f"lost: {fmt_failed(load)}; a new worker in {back:.2f} s | keep-alive lost {ka} "
            f"(at most the {args.clients} keep-alive connections the worker could hold), close lost {cl} |")


def scenario_master(rig, args, out):
    master = wait_until("the vassal ready", 60, rig.ready_pid)
    with Load(rig.port, 0, args.clients) as load:
        time.sleep(args.phase / 2)
        os.kill(master, signal.SIGKILL)
        killed_at = time.monotonic()
        new = wait_until("a new master, ready", 60,
                         lambda: (lambda p: p if p and p != master else None)(rig.ready_pid()))
        restart = time.monotonic() - killed_at
        time.sleep(args.phase / 2)
    refused = load.failed["close"].get("refused", 0)
    out["master"] = {"restart_s": round(restart, 3), "refused": refused, "load": load.summary(),
                     "old": master, "new": new}
    return (f"| kill -9 the vassal's master under load ({args.clients} close clients) | "
            f"ready again in {restart:.2f} s; {load.ok['close']} ok; failed: {fmt_failed(load)} | "
            f"refused connections: {refused} |")


def scenario_rsgid(rig, args, out):
    wait_until("the vassal ready", 60, rig.ready_pid)
    procs = rig.vassal_pids()
    rig.rsgid.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    rig.rsgid.wait(10)
    wait_until("every vassal process gone", 30,
               lambda: not any(alive(p) for p in procs), step=0.005)
    gone = time.monotonic() - killed_at
    started = time.monotonic()
    rig.start()
    wait_until("the vassal answering under the new rsgid", 60, rig.get, step=0.005)
    serving = time.monotonic() - started
    out["rsgid"] = {"vassal_processes": len(procs), "gone_s": round(gone, 3),
                    "serving_s": round(serving, 3)}
    return (f"| kill -9 rsgid | its {len(procs)} vassal processes gone in {gone:.2f} s; a new rsgid "
            f"answered its first request {serving:.2f} s after it was started | |")


def scenario_reloads(rig, args, out):
    wait_until("the vassal ready", 60, rig.ready_pid)
    pid = rig.rsgid.pid
    time.sleep(1)
    before = (proc_rss_kib(pid), proc_fds(pid))
    failed_reloads = 0
    started = time.monotonic()
    with Load(rig.port, args.clients, args.clients) as load:
        for _ in range(args.reloads):
            r = rig.ctl_json("reload", "hello", "--wait")
            if not (r and r.get("ok")):
                failed_reloads += 1
    took = time.monotonic() - started
    time.sleep(2)
    after = (proc_rss_kib(pid), proc_fds(pid))
    out["reloads"] = {"n": args.reloads, "failed_reloads": failed_reloads, "seconds": round(took, 1),
                      "rss_kib": [before[0], after[0]], "fds": [before[1], after[1]],
                      "load": load.summary()}
    return (f"| {args.reloads} reloads (`rsgictl reload --wait`) under load ({args.clients} keep-alive + "
            f"{args.clients} close clients), {took:.0f} s | {load.ok['keepalive'] + load.ok['close']} ok; "
            f"failed: {fmt_failed(load)}; failed reloads: {failed_reloads} | rsgid RSS "
            f"{before[0]} -> {after[0]} KiB, fds {before[1]} -> {after[1]} |")


def scenario_long(rig, args, out):
    wait_until("the vassal ready", 60, rig.ready_pid)
    samples = {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for w in rig.workers():
                rss = proc_rss_kib(w)
                if rss:
                    samples.setdefault(w, []).append(rss)
            stop.wait(args.sample)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wrk = shutil.which("wrk")
    if wrk:
        res = subprocess.run(
            [wrk, "-t1", f"-c{2 * args.clients}", f"-d{args.long}s", "--latency",
             f"http://127.0.0.1:{rig.port}/"],
            capture_output=True, text=True, timeout=args.long + 60,
        )
        text = res.stdout
        requests = next((int(l.split()[0]) for l in text.splitlines() if "requests in" in l), 0)
        errors = [l.strip() for l in text.splitlines() if "errors" in l or "Non-2xx" in l]
        client = f"wrk -t1 -c{2 * args.clients}"
    else:
        with Load(rig.port, args.clients, 0) as load:
            time.sleep(args.long)
        requests = load.ok["keepalive"]
        errors = [fmt_failed(load)] if load.total_failed() else []
        client = f"{args.clients} keep-alive clients"
    stop.set()
    sampler.join(5)
    rows = []
    for w, s in sorted(samples.items()):
        if len(s) >= 2:
            rows.append({"worker": w, "first_kib": s[0], "last_kib": s[-1], "max_kib": max(s),
                         "samples": len(s)})
    out["long"] = {"seconds": args.long, "requests": requests, "errors": errors, "workers": rows,
                   "client": client}
    rss = "; ".join(f"{r['first_kib']} -> {r['last_kib']} KiB (max {r['max_kib']})" for r in rows)
    return (f"| {args.long} s of keep-alive requests ({client}) | {requests} requests; errors: "
            f"{'; '.join(errors) or 'none'} | worker RSS first -> last: {rss} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin-dir", help="where rsgid, rsgi and rsgictl are (default: target/release if built, else target/debug)")
    p.add_argument("--processes", type=int, default=2, help="workers of the vassal (default 2)")
    p.add_argument("--clients", type=int, default=4, help="client threads of each kind (default 4)")
    p.add_argument("--phase", type=float, default=10, help="seconds of load around each kill (default 10)")
    p.add_argument("--reloads", type=int, default=100, help="graceful reloads under load (default 100)")
    p.add_argument("--long", type=int, default=90, help="seconds of the long run (default 90)")
    p.add_argument("--sample", type=float, default=2, help="seconds between RSS samples (default 2)")
    p.add_argument("--only", default="worker,master,rsgid,reloads,long", help="scenarios, comma-separated")
    p.add_argument("--json", help="also write the raw figures here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (rsgid.log)")
    args = p.parse_args()
    bin_dir = args.bin_dir or next(
        (d for d in (os.path.join(ROOT, "target", "release"), os.path.join(ROOT, "target", "debug"))
         if all(os.access(os.path.join(d, b), os.X_OK) for b in ("rsgid", "rsgi", "rsgictl"))),
        None,
    )
    if not bin_dir:
        raise SystemExit("soak: no rsgid/rsgi/rsgictl in target/release or target/debug: cargo build --release")
    bin_dir = os.path.abspath(bin_dir)
    rig = Rig(bin_dir, args.processes)
    out = {"bin_dir": bin_dir, "args": vars(args)}
    rows = []
    scenarios = {"worker": scenario_worker, "master": scenario_master, "rsgid": scenario_rsgid,
                 "reloads": scenario_reloads, "long": scenario_long}
    began = time.monotonic()
    try:
        rig.start()
        wait_until("the vassal answering", 60, rig.get)
        for name in args.only.split(","):
            print(f"soak: {name} ...", file=sys.stderr, flush=True)
            rows.append(scenarios[name](rig, args, out))
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        rig.close(args.keep)
        if args.keep:
            print(f"soak: kept {rig.dir}", file=sys.stderr)
    out["seconds"] = round(time.monotonic() - began, 1)
    print(f"binaries: `{os.path.relpath(bin_dir, ROOT)}`; vassal: tests/apps/hello.py, "
          f"`processes = {args.processes}`, http-socket on 127.0.0.1; whole run {out['seconds']:.0f} s\n")
    print("| fault / load | what happened | the figure to keep |")
    print("|---|---|---|")
    for r in rows:
        print(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
