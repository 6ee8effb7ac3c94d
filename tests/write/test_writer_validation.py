"""Bad input raises a clear error before anything is written, and the event file stays readable."""

import numpy as np
import pytest
import torch

from tb_attention import AttentionWriter
from tb_attention.cli import logged_steps
from tests.conftest import softmax_attention

L, H, T = 2, 3, 5
TOKENS = list("abcde")


def good(rng):
    return softmax_attention(rng, L, H, T)


def with_value(rng, value):
    a = good(rng)
    a[1, 2, 3, 4] = value
    return a


BAD_INPUTS = [
    ("rank", lambda r: (good(r)[0], {}), ValueError, "must be 4-D"),
    ("layer rank", lambda r: ([good(r)[0, 0], good(r)[1, 0]], {}), ValueError, "must be 3-D"),
    ("head counts", lambda r: ([good(r)[0], good(r)[1, :2]], {}), ValueError, "different head counts"),
    (
        "batch > 1",
        lambda r: (tuple(torch.from_numpy(np.stack([a, a])) for a in good(r)), {}),
        ValueError,
        "batch size 2",
    ),
    ("token count", lambda r: (good(r), {"tokens": list("abcd")}), ValueError, "tokens has 4 entries"),
    ("token type", lambda r: (good(r), {"tokens": [1, 2, 3, 4, 5]}), TypeError, "must be strings"),
    ("tokens as string", lambda r: (good(r), {"tokens": "abcde"}), TypeError, "list of strings"),
    ("nan", lambda r: (with_value(r, np.nan), {}), ValueError, "NaN or Inf"),
    ("inf", lambda r: (with_value(r, np.inf), {}), ValueError, "NaN or Inf"),
    ("negative", lambda r: (with_value(r, -0.25), {}), ValueError, "negative weights"),
    ("logits", lambda r: (with_value(r, 3.0), {}), ValueError, "above 1"),
    ("empty list", lambda r: ([], {}), ValueError, "empty"),
    ("empty layer", lambda r: (np.zeros((L, H, 0, 0), np.float32), {"tokens": []}), ValueError, "empty"),
    ("not an array", lambda r: ([[0.5, 0.5]], {}), TypeError, "numpy array or torch tensor"),
    ("strings dtype", lambda r: (np.full((L, H, T, T), "x"), {}), TypeError, "real numbers"),
    ("queries alone", lambda r: (good(r), {"queries": np.zeros((L, H, T, 4))}), ValueError, "together"),
    (
        "keys head count",
        lambda r: (good(r), {"queries": np.zeros((L, H, T, 4)), "keys": np.zeros((L, 2, T, 4))}),
        ValueError,
        "dividing 3",
    ),
    (
        "queries length",
        lambda r: (good(r), {"queries": np.zeros((L, H, 4, 4)), "keys": np.zeros((L, H, T, 4))}),
        ValueError,
        "cover 4 positions",
    ),
    (
        "queries nan",
        lambda r: (good(r), {"queries": np.full((L, H, T, 4), np.nan), "keys": np.zeros((L, H, T, 4))}),
        ValueError,
        "NaN or Inf",
    ),
    (
        "keys beyond fp16",
        lambda r: (good(r), {"queries": np.zeros((L, H, T, 4)), "keys": np.full((L, H, T, 4), 1e6)}),
        ValueError,
        "float16 range",
    ),
    ("cross without key tokens", lambda r: (softmax_attention(r, L, H, T, 7), {}), ValueError, "pass key_tokens"),
    ("step type", lambda r: (good(r), {"step": 1.5}), TypeError, "step must be an integer"),
    ("negative step", lambda r: (good(r), {"step": -3}), ValueError, "non-negative"),
    ("repeated step", lambda r: (good(r), {"step": 5}), ValueError, "strictly increase"),
    ("decreasing step", lambda r: (good(r), {"step": 2}), ValueError, "strictly increase"),
    ("empty tag", lambda r: (good(r), {"tag": " "}), ValueError, "non-empty string"),
    ("reserved tag", lambda r: (good(r), {"tag": "probe/_entropy"}), ValueError, "reserved"),
]


def _refuse(run_dir, rng, make, error, message):
    """A good step, the bad call (which must raise), another good step: the writer keeps working."""
    attn, overrides = make(rng)
    kwargs = {"tag": "probe", "tokens": TOKENS, "step": 7, **overrides}
    with AttentionWriter(str(run_dir)) as w:
        w.add_attention("probe", good(rng), tokens=TOKENS, step=5)
        with pytest.raises(error, match=message):
            w.add_attention(kwargs.pop("tag"), attn, **kwargs)
        w.add_attention("probe", good(rng), tokens=TOKENS, step=9)


@pytest.mark.parametrize("name, make, error, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_rejected_before_anything_is_written(tmp_path, rng, name, make, error, message):
    _refuse(tmp_path / "run", rng, make, error, message)
    assert logged_steps(str(tmp_path / "run"), "probe") == {5, 9}


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """One run per bad input, written as above; read once per data loader (starting a loader is the slow part)."""
    root = tmp_path_factory.mktemp("refused")
    rng = np.random.default_rng(1234)
    for i, (_, make, error, message) in enumerate(BAD_INPUTS):
        _refuse(root / f"run{i:02d}", rng, make, error, message)
    return root


def test_every_file_stays_readable_after_a_refusal(refused, load):
    loaded = load(refused)
    for i in range(len(BAD_INPUTS)):
        run = f"run{i:02d}"
        assert loaded.get("steps", run=run, tag="probe").get_json()["steps"] == [5, 9], BAD_INPUTS[i][0]
        assert loaded.get("attention", run=run, tag="probe", step=9, layer=1).status_code == 200


@pytest.mark.parametrize("where", [0, (1 << 16) - 1, 1 << 16, 3 * (1 << 16) + 5, -1])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 70000.0])
def test_a_non_finite_half_is_found_in_any_chunk(where, bad):
    from tb_attention.write.validation import _any_nonfinite_half

    x = np.random.default_rng(0).normal(size=3 * (1 << 16) + 9).astype(np.float16)
    assert not _any_nonfinite_half(x)
    x[where] = bad  # 70000 overflows float16 to Inf
    assert _any_nonfinite_half(x.reshape(1, -1, 3))
