"""URLconf for the benchmark project (replaces startproject's urls.py)."""

from django.urls import path

from . import views

urlpatterns = [path("", views.index)]
