"""A WSGI app that loads C extension modules and calls into them, to show that they find
the C API in the rsgi binary (which carries CPython's core statically).

GET / answers a JSON object: for each check, "ok" or the error it raised. The checks use
the standard library's extension modules (lib-dynload) and one from a PyPI wheel
(markupsafe's _speedups, installed with Flask in the test venv), and ctypes' view of the
process's own symbols (ctypes.pythonapi is dlopen(NULL)), plus where the C API lives:
the paths of the process's mappings that hold "libpython" (none when static).
"""

import json
import sys


def check_json():
    import _json  # noqa: F401

    assert json.loads('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert json.scanner.c_make_scanner is not None


def check_decimal():
    import _decimal

    assert str(_decimal.Decimal("1.1") + _decimal.Decimal("2.2")) == "3.3"


def check_hashlib():
    import _hashlib

    h = _hashlib.new("sha256", b"abc").hexdigest()
    assert h.startswith("ba7816bf"), h


def check_ssl():
    import ssl

    ctx = ssl.create_default_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def check_sqlite3():
    import sqlite3

    con = sqlite3.connect(":memory:")
    assert con.execute("select 40 + 2").fetchone() == (42,)
    con.close()


def check_ctypes():
    import ctypes

    get_version = ctypes.pythonapi.Py_GetVersion
    get_version.restype = ctypes.c_char_p
    assert get_version().decode() == sys.version, (get_version(), sys.version)
    # Part of the C API that nothing in rsgi calls: there only if the whole static
    # library went into the binary, as it is all in libpython3.11.so.
    assert ctypes.pythonapi.Py_RunMain is not None


def check_markupsafe():
    from markupsafe import _speedups

    assert _speedups._escape_inner("<a>") == "&lt;a&gt;"


CHECKS = {
    "_json": check_json,
    "_decimal": check_decimal,
    "_hashlib": check_hashlib,
    "_ssl": check_ssl,
    "_sqlite3": check_sqlite3,
    "ctypes.pythonapi": check_ctypes,
    "markupsafe._speedups": check_markupsafe,
}


def libpython_mappings():
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if "libpython" in line})


def application(environ, start_response):
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as e:  # the test shows which failed and why
            results[name] = f"{type(e).__name__}: {e}"
    results["libpython_mappings"] = libpython_mappings()
    body = json.dumps(results).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
