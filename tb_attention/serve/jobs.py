"""Background jobs of the Q/K embedding: one thread runs them in order, requests poll their progress.

A request never waits for a nonlinear layout: it gets `202` with the job's progress and asks again. A job that
failed answers its message once (with the status of its error: 422 for damaged data, 500 for a bug); the request
after that starts it afresh. Until its failure was answered, a failed job is never resubmitted.
"""

import logging
import queue
import threading

from tensorboard import errors

from tb_attention.analysis import embedding

_log = logging.getLogger(__name__)
_MAX_JOBS = 1024  # beyond this, finished jobs are forgotten (their results are in the layout cache)


class Job:
    def __init__(self):
        self.state, self.progress, self.message, self.done = "queued", 0.0, "", threading.Event()
        self.code = 500  # HTTP status of the failure


class JobRunner:
    def __init__(self):
        # One daemon thread, not a ThreadPoolExecutor: Python joins an executor's threads (and waits for its queued
        # jobs) at exit, so TensorBoard would ignore Ctrl+C/SIGTERM until every queued layout was computed.
        # TensorBoard relies on its main thread being the only non-daemon thread.
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = None
        self._jobs = {}
        self._lock = threading.Lock()

    def submit(self, job_key, fn):
        """The job running under `job_key`, or a new one running fn(job) (fn may set job.progress)."""
        with self._lock:
            job = self._jobs.get(job_key)
            if job is not None and job.state in ("queued", "running", "error"):
                return job  # an error is answered once (forget()), then a retry starts afresh
            if len(self._jobs) > _MAX_JOBS:
                self._jobs = {k: v for k, v in self._jobs.items() if v.state in ("queued", "running")}
            job = Job()
            self._jobs[job_key] = job

        def run():
            job.state = "running"
            try:
                fn(job)
                job.state, job.progress = "done", 1.0
            except errors.PublicError as e:
                job.state, job.message, job.code = "error", str(e), e.http_code
            except embedding.MissingDependencyError as e:
                job.state, job.message, job.code = "error", str(e), 400
            except Exception as e:  # noqa: BLE001 - reported to the client as a message, logged here
                _log.exception("embedding job %s failed", job_key)
                job.state, job.message = "error", f"layout failed: {type(e).__name__}: {e}"
            finally:
                job.done.set()

        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="tb-attention-embedding", daemon=True)
                self._thread.start()
        self._queue.put(run)
        return job

    def _work(self):
        while True:
            self._queue.get()()

    def forget(self, job):
        """Drops a failed job so that a retry starts afresh."""
        with self._lock:
            self._jobs = {k: v for k, v in self._jobs.items() if v is not job}

    def wait(self, timeout=60):
        """Waits for every queued job (tests and benchmarks)."""
        for job in list(self._jobs.values()):
            job.done.wait(timeout)
