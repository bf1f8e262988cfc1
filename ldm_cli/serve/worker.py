"""One job at a time on the device: a worker thread, a bounded queue, progress and interrupt.

Requests wait on a concurrent Future; a request whose client has gone is simply not waited for
(a queued job that nobody waits for any more is cancelled before it starts). /interrupt sets a flag
that the step callback checks, so sampling stops cleanly between two steps.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from ldm_cli.serve.engine import Engine, Interrupted, Skipped, now_stamp
from ldm_cli.serve.requests import JobSpec


class QueueFull(Exception):
    """Every queue slot is taken; the request is answered 503 with Retry-After."""


class ShuttingDown(Exception):
    """The server is stopping; queued jobs are answered 503."""


@dataclass
class Job:
    spec: JobSpec
    future: Future


class Progress:
    """What /sdapi/v1/progress reports, in A1111's terms (job_no of job_count images, sampling_step of sampling_steps)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.job = ""
        self.job_count = 0
        self.job_no = 0
        self.sampling_step = 0
        self.sampling_steps = 0
        self.interrupted = False
        self.job_timestamp = "0"
        self.time_start = 0.0
        self.current_image = None  # [H, W, 3] uint8 preview of the latest step

    def begin(self, kind: str, images: int) -> None:
        with self._lock:
            self.job, self.job_count, self.job_no = kind, images, 0
            self.sampling_step = self.sampling_steps = 0
            self.interrupted, self.current_image = False, None
            self.job_timestamp, self.time_start = now_stamp(), time.time()

    def image(self, number: int, total: int) -> None:
        with self._lock:
            self.job_no, self.job_count, self.sampling_step = number, total, 0

    def step(self, done: int, total: int, preview) -> None:
        with self._lock:
            self.sampling_step, self.sampling_steps, self.current_image = done, total, preview

    def end(self) -> None:
        with self._lock:
            self.job, self.job_count, self.job_no = "", 0, 0
            self.sampling_step = self.sampling_steps = 0
            self.current_image = None

    def mark_interrupted(self) -> None:
        with self._lock:
            self.interrupted = True

    def snapshot(self) -> dict:
        """A1111's ProgressResponse fields, except current_image (the raw preview array)."""
        with self._lock:
            state = {"skipped": False, "interrupted": self.interrupted, "stopping_generation": False, "job": self.job,
                     "job_count": self.job_count, "job_timestamp": self.job_timestamp, "job_no": self.job_no,
                     "sampling_step": self.sampling_step, "sampling_steps": self.sampling_steps}
            if self.job_count == 0:
                return {"progress": 0.0, "eta_relative": 0.0, "state": state, "preview": None}
            progress = 0.01 + self.job_no / self.job_count  # A1111's formula: never 0 while a job runs
            if self.sampling_steps:
                progress += self.sampling_step / self.sampling_steps / self.job_count
            elapsed = time.time() - self.time_start
            eta_relative = elapsed / progress - elapsed
            return {"progress": min(progress, 1.0), "eta_relative": eta_relative, "state": state, "preview": self.current_image}


class Worker:
    def __init__(self, engine: Engine, max_queue: int):
        self.engine = engine
        self.progress = Progress()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._interrupt = threading.Event()
        self._skip = threading.Event()
        self._closed = False
        self.jobs_run = 0  # jobs started (a cancelled one never starts)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="ldm-serve-worker", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Jobs waiting that someone still waits for."""
        with self._queue.mutex:
            return sum(1 for job in self._queue.queue if job is not None and not job.future.cancelled())

    def submit(self, spec: JobSpec) -> Future:
        job = Job(spec, Future())
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(f"the queue is full ({self._queue.maxsize} jobs waiting); try again shortly") from None
        return job.future

    def skip(self) -> None:
        """Drop the image being made; the job goes on with its next image (A1111's skip)."""
        if self.progress.job:
            self._skip.set()

    def interrupt(self) -> None:
        """Stop the running job after its current step (jobs still queued are not touched, as in A1111)."""
        if self.progress.job:
            self._interrupt.set()

    def stop(self) -> None:
        """Refuse new jobs, fail the queued ones and interrupt the running one; returns at once (signal-safe)."""
        with self._lock:
            self._closed = True
        self._interrupt.set()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDown("the server is shutting down; the job was not started"))
        try:
            self._queue.put_nowait(None)
        except queue.Full:  # a submit raced in: the loop sees _closed and fails it
            pass

    def close(self, timeout: float = 30.0) -> None:
        """stop(), then wait for the running job to end."""
        self.stop()
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                self.stop()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            if not job.future.set_running_or_notify_cancel():
                continue  # its client went away while it waited
            self._interrupt.clear()
            if self._closed:
                job.future.set_exception(ShuttingDown("the server is shutting down; the job was not started"))
                continue
            self.jobs_run += 1
            self.progress.begin(job.spec.kind, job.spec.settings.num_images)
            try:
                result = self.engine.run(job.spec, self._on_image, self._on_step)
            except BaseException as exc:  # noqa: BLE001 - the request answers with it; the worker lives on
                self.progress.end()
                job.future.set_exception(exc)
            else:
                self.progress.end()  # before the answer, so a client that polls next sees the job gone
                job.future.set_result(result)

    def _on_image(self, number: int, total: int) -> None:
        self._skip.clear()
        self.progress.image(number, total)

    def _on_step(self, info) -> None:
        self.progress.step(info.index + 1, info.total, self.engine.preview(info))
        if self._interrupt.is_set():
            self.progress.mark_interrupted()
            raise Interrupted()
        if self._skip.is_set():
            raise Skipped()
