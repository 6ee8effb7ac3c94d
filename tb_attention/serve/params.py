"""Route parameters, validated in one place: a missing or malformed one is a 400 with a message, never an exception.

Integers are ASCII decimal only (`str.isdigit` also accepts `²`, `①`, `١`, `１`, which `int()` then rejects or
reads differently) and at most 2⁶³−1, the largest step an event file can hold.
"""

import re

from tensorboard import errors

MAX_INT = 2**63 - 1
_DECIMAL = re.compile(r"[0-9]{1,25}")  # leading zeros allowed; the length bound keeps int() cheap
_MAX_TEXT = 4096  # run and tag names longer than this cannot name anything TensorBoard lists


def param(request, name):
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"missing parameter {name!r}")
    if len(value) > _MAX_TEXT:
        raise errors.InvalidArgumentError(f"parameter {name!r} is longer than {_MAX_TEXT} characters")
    return value


def int_param(request, name, maximum=MAX_INT):
    value = param(request, name)
    if not _DECIMAL.fullmatch(value):
        raise errors.InvalidArgumentError(
            f"parameter {name!r} must be a non-negative integer (ASCII decimal digits), got {value[:40]!r}"
        )
    number = int(value)
    if number > maximum:
        raise errors.InvalidArgumentError(
            f"parameter {name!r} must be a non-negative integer up to {maximum}, got {value[:40]!r}"
        )
    return number


_NUMBER = re.compile(r"[0-9]{1,20}(\.[0-9]{0,20})?|\.[0-9]{1,20}")


def unit_param(request, name, default):
    """A number in [0, 1] in ASCII decimal notation (no exponent, NaN or Unicode digits); `default` if absent."""
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if not _NUMBER.fullmatch(value) or not 0.0 <= float(value) <= 1.0:
        raise errors.InvalidArgumentError(f"parameter {name!r} must be a number in [0, 1], got {value[:40]!r}")
    return float(value)
