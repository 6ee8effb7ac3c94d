"""`cap = tb_attention.capture(model)` without `with` records nothing: using it says how to use it instead."""

import pytest
import torch

import tb_attention
from tb_attention import AttentionWriter


def test_a_capture_used_without_with_says_to_use_with(tmp_path):
    model = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    cap = tb_attention.capture(model)
    x = torch.randn(1, 3, 8)
    model(x, x, x)
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(AttributeError, match=r"use it as `with tb_attention.capture\(model\) as cap:"):
            w.add_capture("probe", cap, step=0)
    assert not hasattr(cap, "_no_such_private_name")  # private lookups stay plain AttributeErrors
    with cap as recorded:  # the same object still works as intended
        model(x, x, x)
    assert recorded.streams
