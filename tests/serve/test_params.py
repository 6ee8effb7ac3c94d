"""Route parameters: ASCII decimal integers up to 2**63 - 1 and numbers in [0, 1]; anything else is a 400 with a
message (never an exception that becomes a 500)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard import errors

from tb_attention.serve import params


class _Request:
    def __init__(self, **args):
        self.args = args


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_any_text_is_an_ascii_decimal_or_a_400(value):
    try:
        number = params.int_param(_Request(step=value), "step")
    except errors.InvalidArgumentError as e:
        assert "step" in str(e)
        assert not (value.isascii() and value.isdigit() and int(value) <= params.MAX_INT)
        return
    assert value.isascii() and value.isdigit() and number == int(value) <= params.MAX_INT


@pytest.mark.parametrize("digit", ["²", "①", "١", "１", "٣", "𝟙", "߂", "\u0e51"])
def test_unicode_digits_are_refused(digit):
    assert digit.isdigit() or digit.isdecimal() or digit.isnumeric()
    with pytest.raises(errors.InvalidArgumentError, match="ASCII decimal"):
        params.int_param(_Request(layer=digit), "layer")
    with pytest.raises(errors.InvalidArgumentError, match="ASCII decimal"):
        params.int_param(_Request(layer="1" + digit), "layer")


def test_the_largest_int64_step_is_accepted_and_one_more_refused():
    assert params.int_param(_Request(step=str(2**63 - 1)), "step") == 2**63 - 1
    assert params.int_param(_Request(step="0007"), "step") == 7
    with pytest.raises(errors.InvalidArgumentError, match="up to"):
        params.int_param(_Request(step=str(2**63)), "step")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_unit_numbers_are_plain_decimals_in_zero_one(value):
    try:
        number = params.unit_param(_Request(residual=value), "residual", 0.5)
    except errors.InvalidArgumentError:
        return
    assert value == "" and number == 0.5 or (value.isascii() and 0.0 <= number <= 1.0 and "e" not in value.lower())


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.5", "1e-1", "٠.٥", "0x1", " 0.5"])
def test_unit_numbers_refuse_what_float_would_accept(value):
    with pytest.raises(errors.InvalidArgumentError, match=r"\[0, 1\]"):
        params.unit_param(_Request(residual=value), "residual", 0.5)


def test_missing_and_overlong_text_parameters_are_400():
    with pytest.raises(errors.InvalidArgumentError, match="missing parameter 'run'"):
        params.param(_Request(), "run")
    with pytest.raises(errors.InvalidArgumentError, match="longer than"):
        params.param(_Request(run="r" * 5000), "run")
