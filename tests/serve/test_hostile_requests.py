"""Every route, fuzzed with random and adversarial parameters: 4xx with a message, never a 500 or a traceback."""

import random

import numpy as np
import pytest

from tb_attention import AttentionWriter
from tests.conftest import softmax_attention

ADVERSARIAL = [
    "",
    " ",
    "-1",
    "1e3",
    "0x10",
    "1.5",
    "NaN",
    "inf",
    "99999999999999999999999999",
    "2147483648",
    "٣",
    "１",
    "../../../../etc/passwd",
    "/etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "C:\\Windows\\win.ini",
    "\x00",
    "run\x00",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%s%s%s",
    "{}",
    "[]",
    "a" * 5000,
    "\u202eevil",
    "\u200b",
]
PARAMS = ["run", "tag", "step", "layer", "head", "step2", "run2", "method", "probe", "k"]


@pytest.fixture
def loaded(tmp_path, load):
    rng = np.random.default_rng(0)
    with AttentionWriter(str(tmp_path / "run")) as w:
        for step in (0, 5):
            w.add_attention(
                "p",
                softmax_attention(rng, 2, 2, 4),
                tokens=list("abcd"),
                step=step,
                queries=rng.normal(size=(2, 2, 4, 3)),
                keys=rng.normal(size=(2, 1, 4, 3)),
            )
    return load(tmp_path)


def _valid(name):
    return {"run": "run", "tag": "p", "step": "5", "layer": "1", "head": "0", "step2": "0", "run2": "run"}.get(name)


def test_fuzzed_parameters_never_cause_a_server_error(loaded):
    routes = sorted(loaded.plugin.get_plugin_apps())
    rnd = random.Random(1234)
    seen = set()
    for _ in range(600):
        route = rnd.choice(routes).lstrip("/")
        params = {}
        for name in rnd.sample(PARAMS, rnd.randint(0, len(PARAMS))):
            choice = rnd.random()
            if choice < 0.5 and _valid(name) is not None:
                params[name] = _valid(name)
            elif choice < 0.8:
                params[name] = rnd.choice(ADVERSARIAL)
            else:
                params[name] = "".join(chr(rnd.randint(1, 0x2FFF)) for _ in range(rnd.randint(1, 12)))
        resp = loaded.get(route, **params)
        body = resp.get_data()
        seen.add(resp.status_code)
        assert resp.status_code < 500, (route, params, body[:300])
        assert b"Traceback" not in body and b"root:x:" not in body, (route, params)
        if resp.status_code >= 400:
            assert resp.mimetype == "text/plain" and len(body) > 0, (route, params)
    assert {200, 400, 404} <= seen  # the fuzzing reached valid requests and both kinds of refusal


@pytest.mark.parametrize("value", ADVERSARIAL)
def test_adversarial_run_and_tag_names_are_just_unknown(loaded, value):
    for route in ("steps", "tokens", "attention", "qk", "head_stats"):
        resp = loaded.get(route, run=value, tag=value, step="0", layer="0")
        assert resp.status_code in (400, 404), (route, value)
