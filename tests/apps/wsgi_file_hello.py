"""Loaded with `wsgi-file = .../wsgi_file_hello.py` (a file, not a module name)."""


def application(environ, start_response):
    body = b"Hello from wsgi-file"
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
