"""Route parameters, validated: a missing or malformed one is a 400 with a message, never an exception."""

from tensorboard import errors


def param(request, name):
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"missing parameter {name!r}")
    return value


def int_param(request, name):
    value = param(request, name)
    if not value.isdigit() or len(value) > 18:
        raise errors.InvalidArgumentError(f"parameter {name!r} must be a non-negative integer, got {value[:40]!r}")
    return int(value)
