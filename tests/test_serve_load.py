"""A bounded concurrent load against `ldm serve` on 127.0.0.1: 50 requests from 8 threads, all answered.

Timings are reported (benchmarks/serve_load.py writes them), never asserted.
"""

from __future__ import annotations

from benchmarks.serve_load import drive
from serve_helpers import call, running_server


def test_fifty_requests_from_eight_threads_are_all_answered(tiny_model):
    with running_server(tiny_model, max_queue=16) as (url, worker):
        figures = drive(url, requests=50, threads=8, steps=2, size=64, timeout=120)
        assert figures["answered"] == 50 and figures["lost"] == 0
        assert figures["statuses"] == {"200": 50}
        assert figures["with_own_image"] == 50  # every client got the image of its own seed: none swapped or lost
        assert set(figures["latency_s"]) == {"min", "p50", "p90", "p99", "max", "mean"}
        assert call(url, "/sdapi/v1/options")[0] == 200  # still serving
        assert worker.queued == 0 and worker.progress.snapshot()["state"]["job_count"] == 0
