"""Response helpers shared by the routes: every answer goes through TensorBoard's `http_util.Respond` (security
headers, gzip), and every handler through werkzeug's `Request.application`, which turns a raised
`tensorboard.errors.PublicError` into a 4xx with its message (TensorBoard's error middleware)."""

from typing import Any, Callable

from tensorboard.backend import http_util
from werkzeug import wrappers


def route(handler: Callable[..., Any]) -> Callable[..., Any]:
    """`Request.application` for a method (werkzeug's annotations only admit plain functions)."""
    return wrappers.Request.application(handler)


def binary(request, body, code=200):
    return http_util.Respond(request, body, "application/octet-stream", code=code)


def json(request, value, code=200):
    return http_util.Respond(request, value, "application/json", code=code)


def text(request, message, code):
    return http_util.Respond(request, message, "text/plain", code=code)
