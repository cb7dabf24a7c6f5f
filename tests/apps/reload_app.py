"""The app the process-model tests (tests/e2e/master.rs) reload. They copy this file
into their temp dir, then rewrite VERSION (or break the file) and send SIGHUP.

Every path answers "<VERSION> <pid>", e.g. "v1 4242": the tests see which code and
which worker answered. Stdlib only.
"""

import os

VERSION = "v1"


def application(environ, start_response):
    body = ("%s %d" % (VERSION, os.getpid())).encode("ascii")
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
