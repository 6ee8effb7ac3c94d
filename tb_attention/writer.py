"""AttentionWriter: validates on the caller's thread, encodes and writes on a background thread."""

import atexit
import collections
import os
import threading
import time
import weakref

import numpy as np

from tb_attention import buffers, fast_crc, image as image_mod, summary, validation

Job = collections.namedtuple(
    "Job", "tag step wall_time attention queries keys tokens key_tokens description metrics segments image patch_grid",
    defaults=(None, None, None, None),
)
# add_metrics: attention is [L, H, Q, K] or [L, B, H, Q, K]; options go to tb_attention.metrics.compute.
MetricsJob = collections.namedtuple("MetricsJob", "tag step wall_time attention options queries keys",
                                    defaults=(None, None))


def _nbytes(job):
    return sum(a.nbytes for a in (job.attention, job.queries, job.keys, getattr(job, "image", None)) if a is not None)


class AttentionWriter:
    """Logs attention (and optionally queries/keys) of a fixed probe input as TensorBoard events.

    `target` is a log directory, or a `torch.utils.tensorboard.SummaryWriter` whose event file is shared.
    At most `max_pending_bytes` of copied arrays wait for the background thread; beyond that
    `add_attention` blocks until there is room (nothing is dropped). A step whose attention would take more than
    `max_step_bytes` as float32 is refused with advice, instead of exhausting memory (docs/scale.md).
    """

    def __init__(self, target, *, max_pending_bytes=512 << 20, max_step_bytes=2 << 30, flush_secs=10):
        fast_crc.install()
        self._summary_writer = None
        self._events = None
        if isinstance(target, (str, os.PathLike)):
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self._events = EventFileWriter(os.fspath(target), flush_secs=flush_secs)
        elif hasattr(target, "_get_file_writer") and hasattr(target, "flush"):
            self._summary_writer = target
        else:
            raise TypeError(
                "AttentionWriter needs a log directory or a torch.utils.tensorboard.SummaryWriter, "
                f"got {type(target).__name__}"
            )
        self._max_pending = int(max_pending_bytes)
        self._max_step = int(max_step_bytes)
        self._pool = buffers.BufferPool(self._max_pending)
        self._pending = collections.deque()
        self._pending_bytes = 0
        self._busy = False
        self._cond = threading.Condition()
        self._last_step = {}
        # Metrics series have their own steps: {tag: (last step, "attention" | "metrics")}.
        self._last_metrics = {}
        self._flushing = 0
        self._described = set()
        self._error = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tb-attention-writer", daemon=True)
        self._thread.start()
        # Daemon threads die at exit; don't lose steps the user forgot to close().
        atexit.register(_close_quietly, weakref.ref(self))

    # -- public API ----------------------------------------------------------------------------
    def add_attention(
        self, tag, attentions, *, tokens, step, queries=None, keys=None, key_tokens=None, walltime=None,
        description="", metrics=True, patch_grid=None, segments=None, image=None,
    ):
        """Logs one probe input's attention at `step`.

        attentions: per layer [heads, query_len, key_len] (list/tuple of arrays or tensors, or one
            [layers, heads, q, k] array; a leading batch dimension of 1 is dropped).
        queries: per layer [heads, query_len, d_head]; keys: per layer [kv_heads, key_len, d_head]
            with kv_heads dividing heads (grouped-query attention; keys are not repeated).
        tokens: one string per query position; key_tokens: per key position (cross-attention).
        segments: optional segment id per query position (sentence A = 0, B = 1; e.g. BERT's token_type_ids):
            enables the head view's sentence A/B filter.
        metrics: also log the per-head metrics (docs/metrics.md) of this attention at `step`, unless `add_metrics`
            already logged this tag's metrics at `step` (then those are kept). patch_grid: (rows, cols) of a ViT
            input (leading tokens beyond rows*cols are CLS/registers), or a dict adding `patch_size` (int or
            (h, w) pixels): recorded in the manifest, and attention distance in patch units.
        image: the probe's input image (needs patch_grid), uint8 [H, W, 3] or [H, W], or float in [0, 1]; stored
            as PNG so the head view can paint the chosen query's attention over it.
        """
        tag, step = self._accepting(tag, step)
        last = self._last_step.get(tag)
        if last is not None and step <= last:
            raise ValueError(
                f"step {step} for tag {tag!r} is not after the last logged step {last}; steps must strictly increase"
            )
        attention = validation.attention(attentions, self._pool.take, self._max_step)
        _, heads, query_len, key_len = attention.shape
        tokens = validation.token_list(tokens, "tokens", query_len)
        if key_tokens is None and key_len != query_len:
            raise ValueError(f"key_len {key_len} differs from query_len {query_len}: pass key_tokens")
        key_tokens = None if key_tokens is None else validation.token_list(key_tokens, "key_tokens", key_len)
        queries, keys = self._vectors(queries, keys, attention.shape)
        segments = validation.segment_ids(segments, query_len)
        grid = image_mod.grid(patch_grid, query_len, key_len)
        if image is not None:
            if grid is None:
                raise ValueError("image= needs patch_grid=(rows, cols): which tokens are which patches")
            image = image_mod.validate(image)  # a copy: PNG encoding happens on the background thread
            image_mod.check_fits(image, grid)
        options = None
        if metrics and self._metrics_due(tag, step, "attention"):
            options = {"tokens": tokens if key_tokens is None else None}
            options.update(_coords(grid and (grid["rows"], grid["cols"]), query_len, key_len))
        job = Job(
            tag, step, time.time() if walltime is None else float(walltime), attention, queries, keys,
            tokens, key_tokens, str(description), options, segments, image, grid,
        )
        self._last_step[tag] = step
        if options is not None:
            self._last_metrics[tag] = (step, "attention")
        self._enqueue(job)

    def add_metrics(
        self, tag, attentions, *, step, tokens=None, mask=None, query_mask=None, key_mask=None, patch_grid=None,
        causal=None, walltime=None,
    ):
        """Logs only the per-head metrics (docs/metrics.md) of a probe's attention at `step`: cheap enough for
        every training step. The training thread validates and copies; the metrics are computed in the background.

        attentions: as for `add_attention`, or a probe batch: per layer [batch, heads, q, k] (e.g. HF
            `outputs.attentions`); the metrics average over every valid query row of every example.
        tokens: ids or strings, [q] or [batch, q]: needed for the induction score (NaN without them).
        mask: [q] or [batch, q], True on real tokens (padding excluded; self-attention); or query_mask/key_mask.
        patch_grid: (rows, cols) of a ViT input, for attention distance in patch units; causal: None = detect.

        The metrics series of `tag` may share the tag with `add_attention` probes logged every N steps: each
        series' steps increase independently. When `add_attention` already logged metrics for this tag at
        `step`, the call is skipped and returns False; otherwise it returns True.
        """
        tag, step = self._accepting(tag, step)
        if not self._metrics_due(tag, step, "metrics"):
            return False
        attention = _metric_attention(attentions, self._pool.take)
        query_len, key_len = attention.shape[-2:]
        batch = attention.shape[1] if attention.ndim == 5 else None
        if mask is not None:
            if query_mask is not None or key_mask is not None:
                raise ValueError("pass mask, or query_mask/key_mask, not both")
            if query_len != key_len:
                raise ValueError("mask= is for self-attention; pass query_mask and key_mask for cross-attention")
            query_mask = key_mask = mask
        options = {
            "query_mask": _row_array(query_mask, "query_mask", batch, query_len, bool),
            "key_mask": _row_array(key_mask, "key_mask", batch, key_len, bool),
            "tokens": _row_array(tokens, "tokens", batch, query_len, None),
            "causal": causal,
        }
        options.update(_coords(patch_grid, query_len, key_len))
        job = MetricsJob(tag, step, time.time() if walltime is None else float(walltime), attention, options)
        self._last_metrics[tag] = (step, "metrics")
        self._enqueue(job)
        return True

    def add_attention_batch(self, prefix, attentions, *, tokens, step, queries=None, keys=None, walltime=None):
        """Logs a probe batch: input i (its own sequence) as probe `prefix/i`, all at `step`.

        The joint query-key embedding (docs/embedding.md) pools the queries and keys of every `prefix/i`.
        attentions, tokens (and queries, keys when given) are lists with one entry per input, each as in
        `add_attention`. Steps are checked for every input first; each input is then validated and queued as
        by `add_attention` (an invalid input i raises after inputs 0..i-1 were queued).
        """
        n = len(attentions)
        if n == 0:
            raise ValueError("add_attention_batch needs at least one input")
        for name, value in (("tokens", tokens), ("queries", queries), ("keys", keys)):
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries, attentions {n}: one per input")
        prefix = validation.tag_name(prefix)
        for i in range(n):
            tag = f"{prefix}/{i}"
            last = self._last_step.get(tag)
            if last is not None and validation.step_value(step) <= last:
                raise ValueError(f"step {step} for tag {tag!r} is not after the last logged step {last}")
        for i in range(n):
            self.add_attention(
                f"{prefix}/{i}", attentions[i], tokens=tokens[i], step=step,
                queries=None if queries is None else queries[i], keys=None if keys is None else keys[i],
                walltime=walltime,
            )
        return [f"{prefix}/{i}" for i in range(n)]

    def add_capture(self, tag, cap, *, step, tokens=None, decoder_tokens=None, rows=None, image=None):
        """Logs what `tb_attention.capture(model)` recorded (README, "Capturing from your model"); one tag per stream/row.
        ViT probes carry the captured input image unless `image=` (one, or one per batch row) replaces it."""
        from tb_attention.capture import log_capture

        return log_capture(
            self, tag, cap, step=step, tokens=tokens, decoder_tokens=decoder_tokens, rows=rows, image=image
        )

    def flush(self):
        """Waits until everything added so far is written to the event file."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: not self._pending and not self._busy)
            finally:
                self._flushing -= 1
        if self._events is not None:
            self._events.flush()
        elif self._summary_writer is not None:
            self._summary_writer.flush()
        self._raise_if_failed()

    def close(self):
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            with self._cond:
                self._cond.notify_all()
            self._thread.join()
            if self._events is not None:
                self._events.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals -----------------------------------------------------------------------------
    def _metrics_due(self, tag, step, source):
        """Whether metrics of `tag` at `step` are still to be written by `source`; raises on a step that goes back
        within one kind of call."""
        last = self._last_metrics.get(tag)
        if last is None or step > last[0]:
            return True
        if source == "attention":
            return False  # add_metrics already covered this step (or a later one): the probe goes without them
        if step == last[0] and last[1] == "attention":
            return False
        raise ValueError(
            f"step {step} for the metrics of tag {tag!r} is not after the last logged step {last[0]}; "
            "steps must strictly increase"
        )

    def _vectors(self, queries, keys, shape):
        if queries is None and keys is None:
            return None, None
        if queries is None or keys is None:
            raise ValueError("pass queries and keys together (or neither)")
        num_layers, heads, query_len, key_len = shape
        q = validation.vectors(queries, "queries", query_len, alloc=self._pool.take)
        k = validation.vectors(keys, "keys", key_len, d_head=q.shape[-1], alloc=self._pool.take)
        if q.shape[:2] != (num_layers, heads):
            raise ValueError(f"queries have {q.shape[0]} layers x {q.shape[1]} heads, attention {num_layers} x {heads}")
        if k.shape[0] != num_layers or heads % k.shape[1]:
            raise ValueError(
                f"keys have {k.shape[0]} layers x {k.shape[1]} heads; need {num_layers} layers and a head count "
                f"dividing {heads} (grouped-query attention)"
            )
        return q, k

    def _enqueue(self, job):
        size = _nbytes(job)
        with self._cond:
            # A single step larger than the budget still goes through once the queue is empty.
            self._cond.wait_for(lambda: not self._pending or self._pending_bytes + size <= self._max_pending)
            self._pending.append((job, size))
            self._pending_bytes += size
            # Only the background thread waits for new jobs. While it gathers per-step metrics it needs waking only
            # when its wait could end (saves a thread switch per training step).
            if (len(self._pending) == 1 or not _batchable(job) or len(self._pending) >= _METRICS_BATCH
                    or self._pending_bytes > self._max_pending // 2):
                self._cond.notify_all()

    def _run(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                if _batchable(self._pending[0][0]):
                    # Per-step metrics of a small probe: let a few steps gather and compute them in one pass (the
                    # per-call numpy overhead dominates at this size). Ends early on flush/close, on a probe step,
                    # or when memory is short.
                    self._cond.wait_for(
                        lambda: self._closed or self._flushing or len(self._pending) >= _METRICS_BATCH
                        or not isinstance(self._pending[-1][0], MetricsJob)
                        or self._pending_bytes > self._max_pending // 2,
                        timeout=_METRICS_LINGER_S,
                    )
                jobs = [self._pending.popleft()]
                while (self._pending and len(jobs) < _METRICS_BATCH
                       and _same_batch(jobs[0][0], self._pending[0][0])):
                    jobs.append(self._pending.popleft())
                self._busy = True
            try:
                if len(jobs) > 1:
                    self._write_metrics_batch([job for job, _ in jobs])
                else:
                    self._write(jobs[0][0])
            except Exception as e:  # surfaced to the training thread on its next call
                self._error = self._error or e
            finally:
                for job, _ in jobs:
                    for array in (job.attention, job.queries, job.keys):
                        self._pool.give(array)
                with self._cond:
                    self._busy = False
                    self._pending_bytes -= sum(size for _, size in jobs)
                    self._cond.notify_all()

    def _write_metrics_batch(self, jobs):
        """Metrics of several steps of one small probe, computed in one pass (heads of all steps side by side)."""
        first_job = jobs[0]
        num_layers, heads = first_job.attention.shape[:2]
        stacked = np.concatenate([job.attention for job in jobs], axis=1)  # [L, S*H, Q, K]
        values = summary.metric_values(stacked, first_job.options)
        for i, job in enumerate(jobs):
            step_values = {name: v[:, i * heads:(i + 1) * heads] for name, v in values.items()}
            first = {name for name in step_values if (job.tag, name) not in self._described}
            self._emit(summary.metric_events(job.tag, job.step, job.wall_time, step_values, first))
            self._described.update((job.tag, name) for name in step_values)

    def _write(self, job):
        if isinstance(job, Job):
            # Written (and released) before the metrics are computed: the encoded blobs of a long probe are large.
            self._emit(summary.probe_events(job, job.tag not in self._described))
            self._described.add(job.tag)
            options = job.metrics
        else:
            options = job.options
        if options is not None:
            values = summary.metric_values(job.attention, options)
            first = {name for name in values if (job.tag, name) not in self._described}
            self._emit(summary.metric_events(job.tag, job.step, job.wall_time, values, first))
            self._described.update((job.tag, name) for name in values)

    def _emit(self, events):
        for event in events:
            if self._events is not None:
                self._events.add_event(event)
            else:
                self._summary_writer._get_file_writer().add_event(event, event.step, event.wall_time)

    def _accepting(self, tag, step):
        """Checks the writer can take a step and returns the validated (tag, step)."""
        self._raise_if_failed()
        if self._closed:
            raise RuntimeError("AttentionWriter is closed")
        tag = validation.tag_name(tag)
        if tag.rsplit("/", 1)[-1].startswith("_"):
            raise ValueError(f"tag {tag!r}: a last component starting with '_' is reserved for tb-attention")
        return tag, validation.step_value(step)

    def _raise_if_failed(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"tb-attention could not write a step: {error!r}") from error


_METRICS_BATCH = 32
_METRICS_LINGER_S = 0.5
_BATCH_MAX_BYTES = 1 << 20


def _batchable(job):
    """Metrics of one (unbatched, unmasked) small probe: can be computed together with other steps'."""
    if not isinstance(job, MetricsJob) or job.attention.ndim != 4 or job.attention.nbytes > _BATCH_MAX_BYTES:
        return False
    o = job.options
    return o.get("query_mask") is None and o.get("key_mask") is None and "query_coords" not in o


def _same_batch(a, b):
    if not (_batchable(a) and _batchable(b)) or a.tag != b.tag or a.attention.shape != b.attention.shape:
        return False
    ta, tb = a.options.get("tokens"), b.options.get("tokens")
    same_tokens = (ta is None and tb is None) or (ta is not None and tb is not None and np.array_equal(ta, tb))
    return same_tokens and a.options.get("causal") == b.options.get("causal")


def _coords(patch_grid, query_len, key_len):
    if patch_grid is None:
        return {}
    from tb_attention import metrics

    if query_len != key_len:
        raise ValueError("patch_grid is for self-attention over an image's tokens")
    if isinstance(patch_grid, dict):  # the manifest's form: {"rows", "cols", ...}
        patch_grid = (patch_grid["rows"], patch_grid["cols"])
    rows, cols = (int(x) for x in patch_grid)
    coords = metrics.patch_coords(query_len, (rows, cols))
    return {"query_coords": coords, "key_coords": coords}


def _metric_attention(value, alloc):
    """Validated copy: [L, H, Q, K], or [L, B, H, Q, K] for a per-layer batch of more than one example."""
    if isinstance(value, (list, tuple)) and value and all(
        hasattr(a, "shape") and len(a.shape) == 4 and a.shape[0] > 1 for a in value
    ):
        rows = [validation.attention([layer[b] for layer in value]) for b in range(value[0].shape[0])]
        if len({r.shape for r in rows}) > 1:
            raise ValueError("attentions: batch rows have different shapes")
        return np.stack(rows, axis=1)
    return validation.attention(value, alloc)


def _row_array(value, what, batch, length, dtype):
    """A copy of a per-token array ([length], or [batch, length] for a batch); None stays None."""
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.array(value, dtype=dtype)
    if dtype is None and array.dtype.kind not in "iuUSO":
        raise TypeError(f"{what} must be token ids or strings, got dtype {array.dtype}")
    expected = (length,) if batch is None else (batch, length)
    if batch is not None and array.shape == (length,):
        array = np.broadcast_to(array, expected).copy()
    if batch is None and array.shape == (1, length):
        array = array[0]
    if array.shape != expected:
        raise ValueError(f"{what} has shape {array.shape}; expected {expected}")
    return array


def _close_quietly(ref):
    writer = ref()
    if writer is not None:
        try:
            writer.close()
        except Exception:
            pass
