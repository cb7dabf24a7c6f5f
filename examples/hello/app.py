"""The hello-world WSGI app (stdlib only). Served by examples/vassals/hello.ini."""


def application(environ, start_response):
    body = b"Hello World\n"
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
