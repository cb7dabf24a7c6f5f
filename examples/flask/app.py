"""A small Flask app. Served by examples/vassals/flask.ini.example (callable = app)."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello from Flask on rsgi\n"


@app.route("/api/echo", methods=["GET", "POST"])
def echo():
    return jsonify(method=request.method, args=request.args, form=request.form)
