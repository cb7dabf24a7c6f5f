"""The Django view of the benchmark: a small HTML page from a compiled template.

bench.py copies this file into a project made with `django-admin startproject`
(DEBUG = False, ALLOWED_HOSTS = ['*'], the default middleware) and routes / to it.
"""

from django.http import HttpResponse
from django.template import Context, Engine

PAGE = Engine().from_string(
    "<!doctype html><html><head><title>{{ title }}</title></head><body>"
    "<h1>{{ title }}</h1><ul>{% for item in items %}<li>{{ item }}</li>{% endfor %}</ul>"
    "</body></html>"
)


def index(request):
    html = PAGE.render(Context({"title": "Hello from Django", "items": range(10)}))
    return HttpResponse(html)
