"""The bounded hand-off between the training thread and the one background thread that encodes and writes.

Constraints, in order of priority:
- nothing is dropped: when `max_pending_bytes` of copies wait, `put` blocks until there is room (a single job
  larger than the bound still goes through once the queue is empty);
- the training thread pays as little as possible: it is woken only when a wait of its own could end, and the
  background thread is woken per step only when it is not gathering a metrics batch;
- an exception on the background thread is kept and raised on the training thread's next call (`take_error`).
"""

import collections
import threading

from tb_attention.write.jobs import METRICS_BATCH, METRICS_LINGER_S, MetricsJob, batchable, nbytes, same_batch


class WriteQueue:
    def __init__(self, max_pending_bytes, handle, release):
        """handle(jobs): encodes and writes a list of jobs (several only for a metrics batch);
        release(job): returns the job's arrays to the buffer pool once it is written (or failed)."""
        self._max_pending = int(max_pending_bytes)
        self._handle, self._release = handle, release
        self._pending: collections.deque = collections.deque()
        self._pending_bytes = 0
        self._busy = False
        self._flushing = 0
        self._closed = False
        self._error = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="tb-attention-writer", daemon=True)
        self._thread.start()

    def put(self, job):
        size = nbytes(job)
        with self._cond:
            self._cond.wait_for(lambda: not self._pending or self._pending_bytes + size <= self._max_pending)
            self._pending.append((job, size))
            self._pending_bytes += size
            # Only the background thread waits for new jobs. While it gathers per-step metrics it needs waking only
            # when its wait could end (saves a thread switch per training step).
            if (
                len(self._pending) == 1
                or not batchable(job)
                or len(self._pending) >= METRICS_BATCH
                or self._pending_bytes > self._max_pending // 2
            ):
                self._cond.notify_all()

    def drain(self):
        """Waits until every job put so far is handled."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: not self._pending and not self._busy)
            finally:
                self._flushing -= 1

    def close(self):
        """Stops the background thread after the jobs already queued."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def take_error(self):
        error, self._error = self._error, None
        return error

    def _run(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                if batchable(self._pending[0][0]):
                    # Let a few steps of per-step metrics gather. Ends early on flush/close, on a probe step, or
                    # when memory is short.
                    self._cond.wait_for(
                        lambda: (
                            self._closed
                            or self._flushing
                            or len(self._pending) >= METRICS_BATCH
                            or not isinstance(self._pending[-1][0], MetricsJob)
                            or self._pending_bytes > self._max_pending // 2
                        ),
                        timeout=METRICS_LINGER_S,
                    )
                jobs = [self._pending.popleft()]
                while self._pending and len(jobs) < METRICS_BATCH and same_batch(jobs[0][0], self._pending[0][0]):
                    jobs.append(self._pending.popleft())
                self._busy = True
            try:
                self._handle([job for job, _ in jobs])
            except Exception as e:  # surfaced to the training thread on its next call
                self._error = self._error or e
            finally:
                for job, _ in jobs:
                    self._release(job)
                with self._cond:
                    self._busy = False
                    self._pending_bytes -= sum(size for _, size in jobs)
                    self._cond.notify_all()
