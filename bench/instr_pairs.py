#!/usr/bin/env python3
"""Instructions per request of rsgi builds, counted by callgrind: a figure that does
not move with the machine's load (wall-clock and CPU-time figures do, by 10% and more,
when other work shares the cores).

Each build runs single-process under `valgrind --tool=callgrind` (hello app); after a
warm-up the counters are zeroed (`callgrind_control --zero`), N requests are sent one
after the other, and the counters dumped (`callgrind_control --dump`): instructions
executed by the whole process (rsgi, CPython, libc; the kernel is not counted) for
those N requests. Protocols: `http-close` (HTTP/1.1 `Connection: close`, one connection
each: the close path), `http-ka` (keep-alive, one connection: hyper), `uwsgi` (one
uwsgi packet per connection on a unix socket, as nginx sends them). Stdlib only.

    python3 bench/instr_pairs.py --requests 2000 BUILD_DIR_A BUILD_DIR_B
"""

import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "tests" / "apps" / "hello.py"
HTTP_CLOSE = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
HTTP_KA = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def uwsgi_packet() -> bytes:
    """A GET / as nginx's uwsgi_params sends it (the vars that matter)."""
    pairs = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/"), ("PATH_INFO", "/"),
             ("QUERY_STRING", ""), ("SERVER_PROTOCOL", "HTTP/1.1"), ("REMOTE_ADDR", "127.0.0.1"),
             ("REMOTE_PORT", "40000"), ("SERVER_PORT", "8080"), ("SERVER_NAME", "localhost"),
             ("HTTP_HOST", "localhost:8080"), ("HTTP_USER_AGENT", "wrk"), ("CONTENT_TYPE", ""),
             ("CONTENT_LENGTH", ""), ("DOCUMENT_ROOT", "/usr/share/nginx/html")]
    block = b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
                     for k, v in pairs)
    return struct.pack("<BHB", 0, len(block), 0) + block


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            return out
        out += b


def one_close(connect, raw: bytes) -> None:
    with connect() as s:
        s.sendall(raw)
        got = read_all(s)
    if b" 200 " not in got.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"unexpected answer {got[:80]!r}")


def keepalive(port: int, n: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        for _ in range(n):
            s.sendall(HTTP_KA)
            got = b""
            while not got.endswith(b"Hello World"):  # hello.py: Content-Length 11
                b = s.recv(65536)
                if not b:
                    raise RuntimeError("connection closed")
                got += b


def run(bindir: Path, proto: str, n: int, d: Path) -> int:
    """Instructions for `n` requests of `proto` on build `bindir`."""
    out = d / "callgrind.out"
    if proto == "uwsgi":
        sock = d / "app.sock"
        listen = ["--socket", f"unix:{sock}"]

        def connect():
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(60)
            s.connect(str(sock))
            return s
        raw = uwsgi_packet()
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        listen = ["--http-socket", f"127.0.0.1:{port}"]

        def connect():
            return socket.create_connection(("127.0.0.1", port), timeout=60)
        raw = HTTP_CLOSE
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
            str(bindir / "rsgi")] + listen + ["--wsgi-file", str(HELLO), "--disable-logging"]
    log = open(d / "valgrind.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                one_close(connect, raw)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"rsgi under valgrind never answered (see {d})")
                time.sleep(0.5)
        for _ in range(200):  # warm-up: caches, interned objects, the allocator
            one_close(connect, raw)
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True,
                       capture_output=True, timeout=120)
        if proto == "http-ka":
            keepalive(port, n)
        else:
            for _ in range(n):
                one_close(connect, raw)
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True,
                       capture_output=True, timeout=120)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        log.close()
    # The dump made by --dump is the first numbered part (`.1`); the final one at exit
    # (the stop) is the part without a number, which is not used.
    part = Path(f"{out}.{proc.pid}.1")
    m = re.search(r"^summary:\s+(\d+)", part.read_text(errors="replace"), re.M)
    if not m:
        raise RuntimeError(f"no summary line in {part}")
    return int(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("builds", nargs="+", type=Path, help="directories holding an rsgi binary")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--protocols", default="http-close,http-ka,uwsgi")
    p.add_argument("--keep", type=Path, help="keep the callgrind files in DIR/PROTO-N "
                   "(for callgrind_annotate), N numbering the builds as given")
    a = p.parse_args()
    for proto in a.protocols.split(","):
        for i, bindir in enumerate(a.builds):
            if a.keep:
                d = a.keep / f"{proto}-{i}"
                d.mkdir(parents=True, exist_ok=True)
                ir = run(bindir, proto, a.requests, d)
            else:
                with tempfile.TemporaryDirectory(prefix="rsgi-instr-") as d:
                    ir = run(bindir, proto, a.requests, Path(d))
            print(f"{proto:10} {str(bindir):50} {ir / a.requests:12,.0f} instructions/request",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
