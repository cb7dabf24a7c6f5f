"""Answers with the status its path names, for the metrics tests (tests/e2e/metrics.rs).

/status/404 answers 404, /raise raises (rsgi answers 500 and counts an exception),
anything else answers 200. Stdlib only.
"""

from http import HTTPStatus


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/raise":
        raise RuntimeError("raised on purpose by status_app")
    status = 200
    if path.startswith("/status/"):
        status = int(path[len("/status/"):])
    body = ("status %d" % status).encode("ascii")
    start_response(
        "%d %s" % (status, HTTPStatus(status).phrase),
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
