"""A Flask app, served with `module = flask_app` and `callable = app`."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello from Flask"


@app.route("/json")
def json_route():
    return jsonify(framework="flask", args=request.args.to_dict(), path=request.path)


@app.route("/form", methods=["POST"])
def form():
    return "name=%s age=%s" % (request.form.get("name", ""), request.form.get("age", ""))
