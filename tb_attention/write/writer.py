"""AttentionWriter: validates on the caller's thread, encodes and writes on a background thread."""

import atexit
import collections
import os
import time
import weakref

import numpy as np

from tb_attention.format import crc
from tb_attention.write import attention_args, buffers, encode, qk_layers, remote, rows, validation
from tb_attention.write.jobs import Job, MetricsJob
from tb_attention.write.queue import WriteQueue


class AttentionWriter:
    """Logs attention (and optionally queries/keys) of a fixed probe input as TensorBoard events.

    `target` is a log directory, a URL (`s3://bucket/runs/exp1`, `gs://…`, any fsspec URL; `storage_options` go to
    fsspec), or a `torch.utils.tensorboard.SummaryWriter` whose event file is shared.
    At most `max_pending_bytes` of copied arrays wait for the background thread; beyond that
    `add_attention` blocks until there is room (nothing is dropped). A step whose attention would take more than
    `max_step_bytes` as float32 is refused with advice, instead of exhausting memory (docs/scale.md).
    """

    def __init__(
        self, target, *, max_pending_bytes=512 << 20, max_step_bytes=2 << 30, flush_secs=10, storage_options=None
    ):
        crc.install()
        self._summary_writer = None
        self._events = None
        if remote.is_url(target):
            # Object storage cannot append: spool locally, upload immutable parts (write/remote.py, docs/scale.md).
            self._events = remote.RemoteEventFileWriter(target, flush_secs=flush_secs, storage_options=storage_options)
        elif isinstance(target, (str, os.PathLike)):
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
        self._last_step = {}
        # Metrics series have their own steps: {tag: (last step, "attention" | "metrics")}.
        self._last_metrics = {}
        self._numbering: dict = {}  # {tag: the model's layer/head indices its metrics series record}
        # What the background thread wrote, and jobs it failed to write: a failed step must not block later ones.
        self._written, self._written_metrics = {}, {}
        self._failed: collections.deque = collections.deque()
        self._described, self._rows = set(), rows.RowSumCheck()
        self._closed = False
        self._queue = WriteQueue(self._max_pending, self._write_jobs, self._release)
        # Daemon threads die at exit; don't lose steps the user forgot to close().
        atexit.register(_close_quietly, weakref.ref(self))

    # -- public API ----------------------------------------------------------------------------
    def add_attention(
        self,
        tag,
        attentions=None,  # a default, so that a call without the tag is told about the tag (validation.tag_name)
        *,
        tokens,
        step,
        queries=None,
        keys=None,
        key_tokens=None,
        walltime=None,
        description="",
        metrics=True,
        patch_grid=None,
        segments=None,
        image=None,
        partial_rows=False,
        layers=None,
        store=None,
        check=None,
    ):
        """Logs one probe input's attention at `step`.

        attentions: per layer [heads, query_len, key_len] (list/tuple of arrays or tensors, or one
            [layers, heads, q, k] array; a leading batch dimension of 1 is dropped); None to store only q/k.
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
        partial_rows: rows may sum to less than 1 (attention sinks); otherwise a row whose sum is not 1 gets a
            warning, once per tag (write/rows.py).
        layers: per stored layer, its index in the model (`[0, 5]`) or a dict adding its heads' indices and how to
            recompute its weights from q/k (scaling, softcap, mask, …; write/probe_args.py, docs/format.md); `bias`
            may be a float [heads, query_len + key_len - 1] relative position table (T5, ALiBi).
        store: "weights", "both" or "qk" (q/k only, weights rebuilt from `layers=`), or one per layer; default "qk"
            without attentions, else weights (and q/k when given); write/attention_args.py. check: without
            attentions, (rows, per layer [heads, len(rows), key_len]): real weights the rebuilt ones are checked on.
        """
        tag, step = self._accepting(tag, step)
        self._rows.allow_partial(tag, partial_rows)
        wall = validation.wall_time(walltime)
        last = self._last_step.get(tag)
        if last is not None and step <= last:
            raise ValueError(
                f"step {step} for tag {tag!r} is not after the last logged step {last}; steps must strictly increase"
            )
        args = attention_args.prepare(
            tag, attentions, queries, keys, layers, store, check, self._pool.take, self._max_step
        )
        query_len, key_len = args.shape[2:]
        tokens, key_tokens, segments, grid, image = attention_args.probe_fields(
            args.shape, tokens, key_tokens, segments, patch_grid, image
        )
        options = numbered = None
        if metrics and self._metrics_due(tag, step, "attention"):
            num_layers, heads = args.shape[:2]
            numbered = attention_args.numbering(self._numbering, tag, args.layers, num_layers, heads, strict=False)
            options = {"tokens": tokens if key_tokens is None else None}
            options.update(validation.metric_coords(grid and (grid["rows"], grid["cols"]), query_len, key_len))
        # Prepared's fields are the Job's: attention, queries, keys, then layers to check_weights (no slots yet).
        wall = time.time() if wall is None else wall
        probe = (tokens, key_tokens, str(description), options, segments, image, grid)
        job = Job(tag, step, wall, *args[:3], *probe, *args[3:], None, numbered)  # type: ignore[call-arg]
        self._last_step[tag] = step
        if options is not None:
            self._last_metrics[tag] = (step, "attention")
        self._queue.put(job)

    def add_metrics(
        self,
        tag,
        attentions=None,
        *,
        step,
        tokens=None,
        mask=None,
        query_mask=None,
        key_mask=None,
        patch_grid=None,
        causal=None,
        walltime=None,
        partial_rows=False,
        layers=None,
    ):
        """Logs only the per-head metrics (docs/metrics.md) of a probe's attention at `step`: cheap enough for
        every training step. The training thread validates and copies; the metrics are computed in the background.

        attentions: as for `add_attention`, or a probe batch: per layer [batch, heads, q, k] (e.g. HF
            `outputs.attentions`); the metrics average over every valid query row of every example.
        tokens: ids or strings, [q] or [batch, q]: needed for the induction score (NaN without them).
        mask: [q] or [batch, q], True on real tokens (padding excluded; self-attention); or query_mask/key_mask.
        patch_grid: (rows, cols) of a ViT input, for attention distance in patch units; causal: None = detect.
        partial_rows: as for `add_attention`. layers: the model's layer (and head) indices of the rows (and columns)
            of the metrics, as `add_attention(layers=)` takes them: fixed by a series' first step.

        The metrics series of `tag` may share the tag with `add_attention` probes logged every N steps: each
        series' steps increase independently. When `add_attention` already logged metrics for this tag at
        `step`, the call is skipped and returns False; otherwise it returns True.
        """
        tag, step = self._accepting(tag, step)
        self._rows.allow_partial(tag, partial_rows)
        wall = validation.wall_time(walltime)
        if not self._metrics_due(tag, step, "metrics"):
            return False
        attention = validation.metric_attention(attentions, self._pool.take)
        query_len, key_len = attention.shape[-2:]
        batch = attention.shape[1] if attention.ndim == 5 else None
        if mask is not None:
            if query_mask is not None or key_mask is not None:
                raise ValueError("pass mask, or query_mask/key_mask, not both")
            if query_len != key_len:
                raise ValueError("mask= is for self-attention; pass query_mask and key_mask for cross-attention")
            query_mask = key_mask = mask
        options = {
            "query_mask": validation.row_array(query_mask, "query_mask", batch, query_len, bool),
            "key_mask": validation.row_array(key_mask, "key_mask", batch, key_len, bool),
            "tokens": validation.row_array(tokens, "tokens", batch, query_len, None),
            "causal": causal,
        }
        options.update(validation.metric_coords(patch_grid, query_len, key_len))
        heads = attention.shape[-3]
        numbered = attention_args.numbering(self._numbering, tag, layers, len(attention), heads, strict=True)
        job = MetricsJob(tag, step, time.time() if wall is None else wall, attention, options, numbered=numbered)
        self._last_metrics[tag] = (step, "metrics")
        self._queue.put(job)
        return True

    def add_attention_batch(self, prefix, attentions=(), *, tokens, step, queries=None, keys=None, walltime=None):
        """Logs a probe batch: input i (its own sequence) as probe `prefix/i`, all at `step`.

        The joint query-key embedding (docs/embedding.md) pools the queries and keys of every `prefix/i`.
        attentions, tokens (and queries, keys when given) are lists with one entry per input, each as in
        `add_attention`. Steps are checked for every input first; each input is then validated and queued as
        by `add_attention` (an invalid input i raises after inputs 0..i-1 were queued).
        """
        prefix = validation.tag_name(prefix)
        n = len(attentions)
        if n == 0:
            raise ValueError("add_attention_batch needs at least one input")
        for name, value in (("tokens", tokens), ("queries", queries), ("keys", keys)):
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries, attentions {n}: one per input")
        for i in range(n):
            tag = f"{prefix}/{i}"
            last = self._last_step.get(tag)
            if last is not None and validation.step_value(step) <= last:
                raise ValueError(f"step {step} for tag {tag!r} is not after the last logged step {last}")
        for i in range(n):
            self.add_attention(
                f"{prefix}/{i}",
                attentions[i],
                tokens=tokens[i],
                step=step,
                queries=None if queries is None else queries[i],
                keys=None if keys is None else keys[i],
                walltime=walltime,
            )
        return [f"{prefix}/{i}" for i in range(n)]

    def add_capture(self, tag, cap=None, *, step, tokens=None, decoder_tokens=None, rows=None, image=None, store=None):
        """Logs what `tb_attention.capture(model)` recorded (README, "Capturing from your model"); one tag per stream/row.
        ViT probes carry the captured input image unless `image=` (one, or one per batch row) replaces it. `store`:
        as for add_attention (capture/log.py); a weights=False capture is stored as q/k."""
        from tb_attention.capture import log_capture

        validation.tag_name(tag)  # add_capture(cap, step=...) without the tag: say so
        return log_capture(
            self, tag, cap, step=step, tokens=tokens, decoder_tokens=decoder_tokens, rows=rows, image=image, store=store
        )

    def flush(self):
        """Waits until everything added so far is written to the event file (nothing to do after close())."""
        if self._closed:
            return
        self._queue.drain()
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
            self._queue.close()
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

    def _write_jobs(self, jobs):
        try:
            if len(jobs) > 1:
                self._write_metrics_batch(jobs)
            else:
                self._write(jobs[0])
        except Exception:
            self._failed.extend(jobs)  # their steps are given back on the training thread (_forget_failed)
            raise
        for job in jobs:
            if isinstance(job, Job):
                self._written[job.tag] = job.step
            if isinstance(job, MetricsJob) or job.metrics is not None:
                self._written_metrics[job.tag] = (job.step, "attention" if isinstance(job, Job) else "metrics")

    def _release(self, job):
        for array in (job.attention, job.queries, job.keys):
            self._pool.give(array)

    def _write_metrics_batch(self, jobs):
        """Metrics of several steps of one small probe, computed in one pass (heads of all steps side by side)."""
        first_job = jobs[0]
        num_layers, heads = first_job.attention.shape[:2]
        for job in jobs:
            self._rows.check(job.tag, job.attention)
        stacked = np.concatenate([job.attention for job in jobs], axis=1)  # [L, S*H, Q, K]
        values = encode.metric_values(stacked, first_job.options)
        for i, job in enumerate(jobs):
            step_values = {name: v[:, i * heads : (i + 1) * heads] for name, v in values.items()}
            first = {name for name in step_values if (job.tag, name) not in self._described}
            self._emit(encode.metric_events(job.tag, job.step, job.wall_time, step_values, first, job.numbered))
            self._described.update((job.tag, name) for name in step_values)

    def _write(self, job):
        if job.attention is not None:
            self._rows.check(job.tag, job.attention, None if isinstance(job, Job) else job.options.get("query_mask"))
        values = None
        if isinstance(job, Job):
            if job.storage is not None:  # q/k-only layers: checked and summarised one head at a time
                job = job._replace(slots=qk_layers.attention_slots(job, encode._maybe_compress))
                values = job.slots.metrics
            # Written (and released) before the metrics are computed: the encoded blobs of a long probe are large.
            self._emit(encode.probe_events(job, job.tag not in self._described))
            self._described.add(job.tag)
            options = job.metrics
        else:
            options = job.options
        if options is not None:
            values = encode.metric_values(job.attention, options) if values is None else values
            first = {name for name in values if (job.tag, name) not in self._described}
            self._emit(encode.metric_events(job.tag, job.step, job.wall_time, values, first, job.numbered))
            self._described.update((job.tag, name) for name in values)

    def _emit(self, events):
        for event in events:
            if self._events is not None:
                self._events.add_event(event)
            elif self._summary_writer is not None:
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
        error = self._queue.take_error()
        if error is not None:
            self._forget_failed()
            raise RuntimeError(f"tb-attention could not write a step: {error!r}") from error

    def _forget_failed(self):
        """Steps the background thread could not write no longer count as logged, unless a later step of the same
        tag was logged since (then that one is the last)."""
        while self._failed:
            job = self._failed.popleft()
            if isinstance(job, Job) and self._last_step.get(job.tag) == job.step:
                _restore(self._last_step, job.tag, self._written.get(job.tag))
            if self._last_metrics.get(job.tag, (None,))[0] == job.step:
                _restore(self._last_metrics, job.tag, self._written_metrics.get(job.tag))


def _close_quietly(ref):
    writer = ref()
    if writer is not None:
        try:
            writer.close()
        except Exception:
            pass


def _restore(table, key, value):
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value
