"""Responses of every shape, for the close-path tests (tests/e2e/close_path.rs).

Each path answers one way: a known or unknown length, a generator, no body, a body
longer or shorter than its Content-Length, an exception, a big body, a file. Stdlib only.
"""

import os

BIG = b"0123456789abcdef" * (1 << 20)  # 16 MiB: more than a loopback socket buffer


def application(environ, start_response):
    p = environ["PATH_INFO"]
    if p == "/nocl":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"abc", b"def"]
    if p == "/gen":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"one"
            yield b""
            yield b"two"

        return gen()
    if p == "/gen-raises":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"partial"
            raise RuntimeError("raised mid-body on purpose by shapes_app")

        return gen()
    if p == "/204":
        start_response("204 No Content", [("X-Empty", "yes")])
        return []
    if p == "/304":
        start_response("304 Not Modified", [("ETag", '"x"')])
        return []
    if p == "/reason":
        start_response("200 Fine Thanks", [("X-Custom", "Value")])
        return [b"ok"]
    if p == "/short":
        start_response("200 OK", [("Content-Length", "10")])
        return [b"abc"]
    if p == "/long":
        start_response("200 OK", [("Content-Length", "2")])
        return [b"abc", b"def"]
    if p == "/raise":
        raise RuntimeError("raised on purpose by shapes_app")
    if p == "/badheader":
        # A control character no HTTP header may carry (start_response refuses only
        # CR and LF): the server answers 500 on every protocol.
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "a\x01b")])
        return [b"never sent"]
    if p == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [BIG]
    if p == "/file":
        f = open(os.path.join(os.path.dirname(__file__), "filewrapper.txt"), "rb")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](f, 4096)
    if p == "/environ":
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
                "HTTP_HOST", "REMOTE_ADDR", "CONTENT_LENGTH", "HTTP_X_A")
        body = "\n".join("%s=%s" % (k, environ.get(k, "-")) for k in keys).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [body]
