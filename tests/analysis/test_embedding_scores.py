"""The scores' documented samples: which queries a large head is scored on, which points it is laid out on."""

import numpy as np
import pytest

from tb_attention.analysis import embedding as E
from tb_attention.analysis import embedding_scores as S
from tests.analysis.test_embedding import _head


def test_score_rows_are_evenly_spaced_first_and_last_included_and_none_below_the_limit():
    assert S.score_rows(256) is None and S.score_rows(10, limit=10) is None
    rows = S.score_rows(1000)
    assert len(rows) == S.SCORE_QUERIES == 256 and rows[0] == 0 and rows[-1] == 999
    assert (np.diff(rows) >= 3).all() and (np.diff(rows) <= 4).all()  # 999 / 255 = 3.9 apart
    np.testing.assert_array_equal(rows, S.score_rows(1000))
    np.testing.assert_array_equal(S.score_rows(11, limit=3), [0, 5, 10])
    assert S.sample_info(1000) == {"score_queries": 256, "score_sampled": True}
    assert S.sample_info(100) == {"score_queries": 100, "score_sampled": False}


@pytest.mark.parametrize("probes, length, causal", [(5, 12, True), (1, 300, True), (3, 40, False)])
def test_a_sample_of_every_query_scores_what_the_full_score_does(probes, length, causal):
    rng = np.random.default_rng(length)
    head = _head(rng, probes=probes, length=length, d=8, causal=causal)
    y, _ = E.layout(head, "pca")
    nq = len(head.q)
    everything = np.arange(nq)
    full = S.faithfulness(head, y[:nq], y[nq:], per_query=True)
    np.testing.assert_allclose(S.faithfulness(head, y[:nq], y[nq:], per_query=True, rows=everything), full)
    assert S.faithfulness(head, y[:nq], y[nq:], rows=everything) == pytest.approx(float(full.mean()), abs=1e-12)
    # A sample scores exactly its own rows of the full per-query score (rows with < 3 keys are skipped in both).
    rows = S.score_rows(nq, limit=17)
    per_row = np.full(nq, np.nan)
    for start in range(0, nq):  # the per-query scores, one query at a time, in query order
        value = S.faithfulness(head, y[:nq], y[nq:], per_query=True, rows=np.array([start]))
        per_row[start] = value[0] if len(value) else np.nan
    expected = per_row[rows][np.isfinite(per_row[rows])]
    np.testing.assert_allclose(S.faithfulness(head, y[:nq], y[nq:], per_query=True, rows=rows), expected)
    scores = E.scores(head, y)
    assert scores["score_sampled"] is (nq > S.SCORE_QUERIES) and scores["score_queries"] == min(nq, 256)


def test_point_sample_is_none_below_the_limit_and_a_proportional_even_sample_above():
    assert E.point_sample(10_000, 10_000) is None
    qsel, ksel = E.point_sample(30_000, 10_000)
    assert len(qsel) == 15_000 and len(ksel) == 5_000
    assert qsel[0] == 0 and qsel[-1] == 29_999 and ksel[-1] == 9_999 and (np.diff(qsel) > 0).all()
    rng = np.random.default_rng(0)
    head = _head(rng, probes=3, length=20, d=8, causal=True)
    qsel, ksel = E.point_sample(len(head.q), len(head.k), limit=40)
    sub = head.subset(qsel, ksel)
    assert len(sub.q) + len(sub.k) == 40
    # Masks cut to the sample: a sampled query may attend to exactly the sampled keys it could before.
    for (qi, ki, mask), (_, _, smask) in zip(head.groups, sub.groups):
        rq, rk = np.flatnonzero(np.isin(qi, qsel)), np.flatnonzero(np.isin(ki, ksel))
        np.testing.assert_array_equal(smask, mask[np.ix_(rq, rk)])
