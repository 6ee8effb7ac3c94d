"""One head of a "qk" layer rebuilt in row blocks, in the attention route's encoding. The other levels of detail
(`tile`, `lod`, `topk`) are computed in analysis/lod.py, which notebook outputs use too.
"""

import numpy as np

from tb_attention.analysis.lod import BLOCK
from tb_attention.format import codec


def head_cbrt8(source, head):
    """(codes uint8 [Q, K], row_exp uint8 [Q]) of one head rebuilt in row blocks: the attention route's encoding."""
    codes = np.empty((source.query_len, source.key_len), np.uint8)
    row_exp = np.empty(source.query_len, np.uint8)
    step = max(1, BLOCK // source.key_len)
    for a in range(0, source.query_len, step):
        b = min(source.query_len, a + step)
        codes[a:b], row_exp[a:b] = codec.encode_cbrt8(source.block(head, a, b, 0, source.key_len))
    return codes, row_exp
