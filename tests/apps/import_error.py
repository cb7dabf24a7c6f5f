"""An app module that cannot be imported: the server must exit 22 with the traceback."""

import this_module_does_not_exist_rsgi_e2e  # noqa: F401


def application(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b"unreachable"]
