"""Drive the real uwsgitop (a curses program) in a pseudo-terminal, for the uwsgitop
test in tests/e2e/master.rs. Not a WSGI app.

Usage: <venv>/bin/python uwsgitop_pty.py [--frame HEADER] STATS_ADDRESS WORD...

Starts `uwsgitop STATS_ADDRESS` (from this interpreter's bin/) in a 50x200 pty with
TERM=xterm, and reads what it draws until every WORD shows up as a whole word of the
screen text (escape sequences removed) and it has drawn a second frame (it redraws
every second, so it survived one refresh with its rate computations): the column
header HEADER (default WID, the worker view; VASSAL for an emperor's stats) shows up
twice. Then it is
killed: its own `q` key is unreliable here, as uwsgitop leaves the terminal in cooked
mode. Prints the screen text; exits 0 on success, 3 if the words or the second frame
did not appear within 20 s, 4 if uwsgitop exited by itself (e.g. a traceback, which is
then part of the printed text).
"""

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time

ESCAPES = re.compile(rb"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78]|\][^\x07]*\x07)")


def screen_text(raw):
    return ESCAPES.sub(b" ", raw).decode("utf-8", "replace")


def read_until(fd, out, done, deadline):
    """Append output from fd to `out` until done(text) or the deadline; True if done."""
    while time.monotonic() < deadline:
        if done(screen_text(bytes(out))):
            return True
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return done(screen_text(bytes(out)))
            if not chunk:
                return done(screen_text(bytes(out)))
            out.extend(chunk)
    return done(screen_text(bytes(out)))


def main():
    args = sys.argv[1:]
    header = "WID"
    if args[:1] == ["--frame"]:
        header, args = args[1], args[2:]
    address, words = args[0], args[1:]
    uwsgitop = os.path.join(os.path.dirname(sys.executable), "uwsgitop")
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        os.execv(sys.executable, [sys.executable, uwsgitop, address])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    out = bytearray()

    def shown(text):
        tokens = text.split()
        return set(words) <= set(tokens) and tokens.count(header) >= 2

    ok = read_until(fd, out, shown, time.monotonic() + 20)
    done, _status = os.waitpid(pid, os.WNOHANG)
    if not done:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(screen_text(bytes(out)))
    if done:
        print("uwsgitop_pty: uwsgitop exited by itself")
        sys.exit(4)
    if not ok:
        print("uwsgitop_pty: not all of %r (and two frames) appeared" % words)
        sys.exit(3)


if __name__ == "__main__":
    main()
