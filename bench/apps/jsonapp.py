"""json: a ~4 KB JSON document, serialised on every request (json.dumps)."""

import json

DATA = {
    "items": [
        {
            "id": i,
            "name": f"item-{i}",
            "price": round(i * 1.25, 2),
            "tags": ["alpha", "beta", "gamma"][: (i % 3) + 1],
            "active": i % 2 == 0,
        }
        for i in range(45)
    ],
    "count": 45,
    "next": None,
}


def application(environ, start_response):
    body = json.dumps(DATA).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
