#!/usr/bin/env python3
"""The fleet row of the benchmark (issue 19): three rsgid "hosts" (separate run dirs) on
one etcd prefix, on this machine.

  put -> first answer:   etcdctl put of a new vassal, until each host answers GET /pid
                         on the vassal's default socket (uwsgi) with 200;
  change -> new gen:     etcdctl put of a changed value, until each host answers from a
                         new process (another pid).

Each figure is the time until the LAST of the three hosts (the fleet is done), median
and max over --reps new vassals. Stdlib only. Needs Debian's etcd-server/etcd-client
and the built binaries (target/release, else target/debug: --bin-dir).

  python3 bench/etcd_fleet.py --reps 5 --out bench/RESULTS-etcd.md
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
import time
from pathlib import Path


# Shared with the main benchmark (bench.py is stdlib only and runs nothing on import).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "tests", "apps", "environ_app.py")
DEADLINE = 60.0


def uwsgi_get(path, sock_path, timeout=2.0):
    """GET path over the uwsgi protocol on a unix socket: (status, body) or None."""
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
           "SERVER_NAME": "bench", "SERVER_PORT": "0", "SERVER_PROTOCOL": "HTTP/1.1"}
    body = b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
                    for k, v in env.items())
    packet = struct.pack("<BHB", 0, len(body), 0) + body
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(packet)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    head, _, rest = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ")[1])
    except (IndexError, ValueError):
        return None
    return status, rest


def wait_pid(sock_path, not_pid=None, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        r = uwsgi_get("/pid", sock_path)
        if r and r[0] == 200:
            pid = int(r[1].strip())
            if pid != not_pid:
                return pid
        time.sleep(0.002)
    raise SystemExit(f"no answer on {sock_path} within {deadline}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bin-dir", default=None)
    ap.add_argument("--out", default=None, help="write a markdown table here")
    args = ap.parse_args()
    bin_dir = os.path.abspath(args.bin_dir) if args.bin_dir else next(
        d for d in (os.path.join(ROOT, "target", "release"), os.path.join(ROOT, "target", "debug"))
        if os.path.exists(os.path.join(d, "rsgid")))
    for tool in ("etcd", "etcdctl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install etcd-server etcd-client")

    tmp = tempfile.mkdtemp(prefix="rsgi-fleet-")
    procs = []
    try:
        cport, pport = free_port(), free_port()
        client, peer = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
        etcd_log = open(os.path.join(tmp, "etcd.log"), "w")
        procs.append(subprocess.Popen(
            ["etcd", "--name", "b", "--data-dir", os.path.join(tmp, "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"b={peer}"], stdout=etcd_log, stderr=etcd_log))
        ctl = ["etcdctl", "--endpoints", client]
        env = dict(os.environ, ETCDCTL_API="3")
        end = time.monotonic() + DEADLINE
        while subprocess.run(ctl + ["endpoint", "health"], env=env, capture_output=True).returncode:
            if time.monotonic() > end:
                raise SystemExit("etcd does not start")
            time.sleep(0.1)

        url = f"etcd://127.0.0.1:{cport}/bench/fleet/"
        hosts = []
        for i in range(3):
            d = os.path.join(tmp, f"host{i}")
            os.makedirs(os.path.join(d, "vassals"))
            log = open(os.path.join(d, "rsgid.log"), "w")
            cmd = [os.path.join(bin_dir, "rsgid"), "--vassals", url, "--run-dir", os.path.join(d, "run"),
                   "--metrics", "off", "--rsgi", os.path.join(bin_dir, "rsgi")]
            if os.geteuid() == 0:
                cmd += ["--uid", "root"]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True))
            hosts.append(os.path.join(d, "run"))
        time.sleep(1.0)

        put_times = []

        def put(key, value):
            t = time.monotonic()
            subprocess.run(ctl + ["put", "--", key, value], env=env, check=True, capture_output=True)
            put_times.append(time.monotonic() - t)

        load_before = os.getloadavg()
        first, change = [], []
        for rep in range(args.reps):
            name = f"app{rep}"
            ini = f"[uwsgi]\nwsgi-file = {APP}\n"
            socks = [os.path.join(h, f"{name}.sock") for h in hosts]
            t0 = time.monotonic()
            put(f"/bench/fleet/{name}.ini", ini)
            pids = [wait_pid(s) for s in socks]
            first.append(time.monotonic() - t0)
            t0 = time.monotonic()
            put(f"/bench/fleet/{name}.ini", ini + "# changed\n")
            for s, old in zip(socks, pids):
                wait_pid(s, not_pid=old)
            change.append(time.monotonic() - t0)
            subprocess.run(ctl + ["del", f"/bench/fleet/{name}.ini"], env=env, check=True, capture_output=True)
            time.sleep(0.5)

        load_after = os.getloadavg()
        ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms median, {max(xs) * 1000:.0f} ms max"
        binary = os.path.basename(bin_dir)
        lines = [
            "# Fleet row: three rsgid hosts on one etcd prefix",
            "",
            f"`python3 bench/etcd_fleet.py --reps {args.reps}` ({binary} binaries; etcd "
            f"{subprocess.run(['etcd', '--version'], capture_output=True, text=True).stdout.split()[2]}; "
            f"3 rsgid + etcd + the vassals on one {os.cpu_count()}-core machine). Each figure is the time until "
            "the last of the three hosts is done, over one new vassal per repetition "
            "(`tests/apps/environ_app.py`, default uwsgi socket). The figures include the "
            f"`etcdctl put` process itself ({ms(put_times)}). Load average (1 min) "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (other work shares the machine).",
            "",
            "| row | result |",
            "|---|---|",
            f"| put -> first answer on three hosts | {ms(first)} |",
            f"| change -> new generation serving on three hosts | {ms(change)} |",
            "",
            f"raw (s): first {[round(x, 3) for x in first]}, change {[round(x, 3) for x in change]}",
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
    except SystemExit:
        for i in range(3):
            path = os.path.join(tmp, f"host{i}", "rsgid.log")
            if os.path.exists(path):
                print(f"--- host{i} ---")
                print(open(path).read()[-3000:])
        raise
    finally:
        for p in reversed(procs):
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=20)
            except Exception:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
