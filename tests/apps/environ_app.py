"""A WSGI app that shows what the server gives it, routed on PATH_INFO (the shape of
granian's tests/apps/wsgi.py). Stdlib only.

Routes (query parameters in brackets):
  /environ          the environ as JSON; non-str values shown by type (bools stay bools)
  /echo             wsgi.input.read() sent back with the request's Content-Type
  /readline [size]  successive readline() (or readline(size)) results as a JSON list
  /iter             the lines of `for line in wsgi.input` as a JSON list
  /readn [n]        successive read(n) results as a JSON list
  /stream           a generator of 5 chunks, no Content-Length
  /raise            raises RuntimeError
  /write            uses the write() callable returned by start_response
  /exc_info         start_response twice, the second time with exc_info (-> 500)
  /filewrapper      wsgi.file_wrapper over tests/apps/filewrapper.txt
  /head             a small body with Content-Length (for HEAD requests)
  /short            Content-Length: 10 but a body of 5 bytes
  /long             Content-Length: 5 but a body of 10 bytes
  /close [marker]   an iterable whose close() appends "closed" to the marker file
  /close_list [marker]  the same, over a list (as Django's HttpResponse): sent whole
  /close_slow [marker, n]  the same, yielding a chunk every 50 ms (n chunks)
  /errors           writes a line to wsgi.errors
  /slow [s, marker] sleeps s seconds (writes "started" to the marker first)
  /status [code]    answers with that status
  /pid [s]          os.getpid() (after sleeping s seconds)
  /env [name]       os.environ[name] (or "<unset>")
  /import [name]    imports module `name` and returns its VALUE attribute (or __file__)
  /environ/<any>    the same as /environ (to see how PATH_INFO is decoded)
  /interned         for some keys and values: whether the server's str is this module's
                    own literal (the same object), as JSON
The marker file comes from the `marker` query parameter or $RSGI_TEST_MARKER.
"""

import json
import os
import sys
import time
from urllib.parse import parse_qs

HERE = os.path.dirname(os.path.abspath(__file__))


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj, sort_keys=True).encode("utf-8")
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _text(start_response, text, status="200 OK"):
    body = text.encode("utf-8") if isinstance(text, str) else text
    start_response(
        status,
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _show(key, value):
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, int):
        return value
    if key == "wsgi.version":
        return list(value)
    if key == "wsgi.input":
        return "<input>"
    if key == "wsgi.errors":
        return "<errors>"
    if key == "wsgi.file_wrapper":
        return "<file_wrapper>"
    return "<%s>" % type(value).__name__


def _marker(environ):
    return _query(environ).get("marker") or os.environ.get("RSGI_TEST_MARKER")


class ClosingIterable:
    """An iterable whose close() leaves a trace in a marker file."""

    def __init__(self, marker, chunks, delay=0.0):
        self.marker = marker
        self.chunks = chunks
        self.delay = delay

    def __iter__(self):
        for chunk in self.chunks:
            if self.delay:
                time.sleep(self.delay)
            yield chunk

    def close(self):
        if self.marker:
            with open(self.marker, "a") as f:
                f.write("closed\n")


def environ_json(environ, start_response):
    shown = {k: _show(k, v) for k, v in environ.items()}
    shown["_types"] = {k: type(v).__name__ for k, v in environ.items()}
    return _json(start_response, shown)


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response(
        "200 OK",
        [
            ("Content-Type", environ.get("CONTENT_TYPE") or "application/octet-stream"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


def readline(environ, start_response):
    size = _query(environ).get("size")
    inp = environ["wsgi.input"]
    lines = []
    while True:
        line = inp.readline(int(size)) if size else inp.readline()
        if not line:
            break
        lines.append(line.decode("latin-1"))
    return _json(start_response, lines)


def iterate(environ, start_response):
    return _json(start_response, [line.decode("latin-1") for line in environ["wsgi.input"]])


def readn(environ, start_response):
    n = int(_query(environ).get("n", "3"))
    inp = environ["wsgi.input"]
    parts = []
    while True:
        part = inp.read(n)
        if not part:
            break
        parts.append(part.decode("latin-1"))
    return _json(start_response, parts)


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        for i in range(5):
            yield ("chunk%d\n" % i).encode()

    return gen()


def write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written-")
    return [b"returned"]


def exc_info(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("handled by the app")
    except ValueError:
        body = b"exc_info handled"
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            sys.exc_info(),
        )
        return [body]


def filewrapper(environ, start_response):
    path = os.path.join(HERE, "filewrapper.txt")
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(os.path.getsize(path)))],
    )
    return environ["wsgi.file_wrapper"](open(path, "rb"), 8192)


def head(environ, start_response):
    return _text(start_response, "head body")


def short(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"12345"]


def long_(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"1234567890"]


def close(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingIterable(_marker(environ), [b"part1-", b"part2"])


class ListBacked(ClosingIterable):
    """Like Django's HttpResponse: iterating it iterates a list."""

    def __iter__(self):
        return iter(self.chunks)


def close_list(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ListBacked(_marker(environ), [b"list-", b"backed"])


def close_slow(environ, start_response):
    n = int(_query(environ).get("n", "400"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingIterable(_marker(environ), [b"x" * 1024] * n, delay=0.05)


def errors(environ, start_response):
    environ["wsgi.errors"].write("errors-line-from-app\n")
    environ["wsgi.errors"].flush()
    return _text(start_response, "ok")


def slow(environ, start_response):
    marker = _marker(environ)
    if marker:
        with open(marker, "a") as f:
            f.write("started\n")
    time.sleep(float(_query(environ).get("s", "2")))
    return _text(start_response, "slept")


def status(environ, start_response):
    code = _query(environ).get("code", "200")
    return _text(start_response, "status " + code, "%s Custom" % code)


def pid(environ, start_response):
    time.sleep(float(_query(environ).get("s", "0")))
    return _text(start_response, str(os.getpid()))


def env(environ, start_response):
    return _text(start_response, os.environ.get(_query(environ).get("name", ""), "<unset>"))


def import_module(environ, start_response):
    import importlib

    mod = importlib.import_module(_query(environ)["name"])
    return _text(start_response, str(getattr(mod, "VALUE", getattr(mod, "__file__", None))))


GET = "GET"
INTERNED_KEYS = ("REQUEST_METHOD", "PATH_INFO", "SERVER_PROTOCOL", "HTTP_HOST", "HTTP_USER_AGENT")


def interned(environ, start_response):
    # The module's literals are interned; a server that interns the same names hands
    # the very same objects in (dict lookups then match on identity).
    keys = {k: k for k in environ}
    same = {lit: keys.get(lit) is lit for lit in INTERNED_KEYS}
    same["X_UNKNOWN_KEY"] = keys.get("HTTP_X_SOMETHING_RARE") == "HTTP_X_SOMETHING_RARE"
    same["value GET"] = environ["REQUEST_METHOD"] is GET
    same["value HTTP/1.1"] = environ["SERVER_PROTOCOL"] is sys.intern("HTTP/1.1")
    return _json(start_response, same)


def raise_(environ, start_response):
    raise RuntimeError("boom from environ_app")


ROUTES = {
    "/environ": environ_json,
    "/echo": echo,
    "/readline": readline,
    "/iter": iterate,
    "/readn": readn,
    "/stream": stream,
    "/raise": raise_,
    "/write": write_callable,
    "/exc_info": exc_info,
    "/filewrapper": filewrapper,
    "/head": head,
    "/short": short,
    "/long": long_,
    "/close": close,
    "/close_list": close_list,
    "/close_slow": close_slow,
    "/errors": errors,
    "/slow": slow,
    "/status": status,
    "/pid": pid,
    "/env": env,
    "/import": import_module,
    "/interned": interned,
}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    handler = ROUTES.get(path)
    if handler is None and path.startswith("/environ/"):
        handler = environ_json
    if handler is None:
        if path == "/" or path == "":
            return _text(start_response, "environ app")
        return _text(start_response, "no route " + path, "404 Not Found")
    return handler(environ, start_response)
