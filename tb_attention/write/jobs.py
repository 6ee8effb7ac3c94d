"""What the training thread hands to the background thread, and which jobs may be encoded together."""

import collections

import numpy as np

# add_attention: one probe step, validated and copied (the arrays belong to the writer's buffer pool). attention is
# None when only q/k were given; storage/tables/check_rows/check_weights: write/attention_args.py; slots: the
# attention blobs, filled in on the background thread (write/qk_layers.py).
Job = collections.namedtuple(
    "Job",
    "tag step wall_time attention queries keys tokens key_tokens description metrics segments image patch_grid layers "
    "shape storage tables check_rows check_weights slots numbered",
    defaults=(None, None, None, None, None, None, None, None, None, None, None, None),
)
# add_metrics: attention is [L, H, Q, K] or [L, B, H, Q, K]; options go to tb_attention.analysis.metrics.compute.
# numbered (both kinds): the model's layer/head indices the tag's metrics series record (attention_args.numbering).
MetricsJob = collections.namedtuple(
    "MetricsJob", "tag step wall_time attention options queries keys numbered", defaults=(None, None, None)
)

# Per-step metrics of a small probe are computed several steps at a time: at this size numpy's per-call overhead,
# not arithmetic, dominates. A batch closes after METRICS_BATCH steps or METRICS_LINGER_S seconds.
METRICS_BATCH = 32
METRICS_LINGER_S = 0.5
_BATCH_MAX_BYTES = 1 << 20


def nbytes(job):
    """Bytes of copied arrays the job holds: what counts against the writer's pending-memory bound."""
    arrays = (job.attention, job.queries, job.keys, getattr(job, "image", None), getattr(job, "check_weights", None))
    return sum(a.nbytes for a in arrays if a is not None)


def batchable(job):
    """Metrics of one (unbatched, unmasked) small probe: can be computed together with other steps'."""
    if not isinstance(job, MetricsJob) or job.attention.ndim != 4 or job.attention.nbytes > _BATCH_MAX_BYTES:
        return False
    o = job.options
    return o.get("query_mask") is None and o.get("key_mask") is None and "query_coords" not in o


def same_batch(a, b):
    """Whether b's metrics can be computed in one pass with a's: same probe, shape, tokens and causality."""
    if not (batchable(a) and batchable(b)) or a.tag != b.tag or a.attention.shape != b.attention.shape:
        return False
    ta, tb = a.options.get("tokens"), b.options.get("tokens")
    same_tokens = (ta is None and tb is None) or (ta is not None and tb is not None and np.array_equal(ta, tb))
    return same_tokens and a.options.get("causal") == b.options.get("causal")
