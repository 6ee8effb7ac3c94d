"""AttentionWriter: validates on the caller's thread, encodes and writes on a background thread."""

import atexit
import collections
import os
import threading
import time
import weakref

from tb_attention import buffers, fast_crc, summary, validation

Job = collections.namedtuple(
    "Job", "tag step wall_time attention queries keys tokens key_tokens description"
)


def _nbytes(job):
    return sum(a.nbytes for a in (job.attention, job.queries, job.keys) if a is not None)


class AttentionWriter:
    """Logs attention (and optionally queries/keys) of a fixed probe input as TensorBoard events.

    `target` is a log directory, or a `torch.utils.tensorboard.SummaryWriter` whose event file is shared.
    At most `max_pending_bytes` of copied arrays wait for the background thread; beyond that
    `add_attention` blocks until there is room (nothing is dropped).
    """

    def __init__(self, target, *, max_pending_bytes=512 << 20, flush_secs=10):
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
        self._pool = buffers.BufferPool(self._max_pending)
        self._pending = collections.deque()
        self._pending_bytes = 0
        self._busy = False
        self._cond = threading.Condition()
        self._last_step = {}
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
        description="",
    ):
        """Logs one probe input's attention at `step`.

        attentions: per layer [heads, query_len, key_len] (list/tuple of arrays or tensors, or one
            [layers, heads, q, k] array; a leading batch dimension of 1 is dropped).
        queries: per layer [heads, query_len, d_head]; keys: per layer [kv_heads, key_len, d_head]
            with kv_heads dividing heads (grouped-query attention; keys are not repeated).
        tokens: one string per query position; key_tokens: per key position (cross-attention).
        """
        self._raise_if_failed()
        if self._closed:
            raise RuntimeError("AttentionWriter is closed")
        tag = validation.tag_name(tag)
        if tag.rsplit("/", 1)[-1].startswith("_"):
            raise ValueError(f"tag {tag!r}: a last component starting with '_' is reserved for tb-attention")
        step = validation.step_value(step)
        last = self._last_step.get(tag)
        if last is not None and step <= last:
            raise ValueError(
                f"step {step} for tag {tag!r} is not after the last logged step {last}; steps must strictly increase"
            )
        attention = validation.attention(attentions, self._pool.take)
        _, heads, query_len, key_len = attention.shape
        tokens = validation.token_list(tokens, "tokens", query_len)
        if key_tokens is None and key_len != query_len:
            raise ValueError(f"key_len {key_len} differs from query_len {query_len}: pass key_tokens")
        key_tokens = None if key_tokens is None else validation.token_list(key_tokens, "key_tokens", key_len)
        queries, keys = self._vectors(queries, keys, attention.shape)
        job = Job(
            tag, step, time.time() if walltime is None else float(walltime), attention, queries, keys,
            tokens, key_tokens, str(description),
        )
        self._last_step[tag] = step
        self._enqueue(job)

    def flush(self):
        """Waits until everything added so far is written to the event file."""
        with self._cond:
            self._cond.wait_for(lambda: not self._pending and not self._busy)
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
            self._cond.notify_all()

    def _run(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                job, size = self._pending.popleft()
                self._busy = True
            try:
                self._write(job)
            except Exception as e:  # surfaced to the training thread on its next call
                self._error = self._error or e
            finally:
                for array in (job.attention, job.queries, job.keys):
                    self._pool.give(array)
                with self._cond:
                    self._busy = False
                    self._pending_bytes -= size
                    self._cond.notify_all()

    def _write(self, job):
        first = job.tag not in self._described
        for event in summary.probe_events(job, first):
            if self._events is not None:
                self._events.add_event(event)
            else:
                self._summary_writer._get_file_writer().add_event(event, event.step, event.wall_time)
        self._described.add(job.tag)

    def _raise_if_failed(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"tb-attention could not write a step: {error!r}") from error


def _close_quietly(ref):
    writer = ref()
    if writer is not None:
        try:
            writer.close()
        except Exception:
            pass
