"""`ldm serve` under faults: the bounded queue (503), interrupt, auth, the size limit, Ctrl-C and SIGTERM."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from serve_helpers import call, running_server

PROMPT = "a red square on a blue field"
LONG = {"prompt": PROMPT, "steps": 1000, "batch_size": 20, "width": 64, "height": 64, "sampler_name": "Euler"}


def wait_for(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def in_thread(target, *args, **kwargs):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", target(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, out


def progress(url):
    return call(url, "/sdapi/v1/progress")[2]


def test_full_queue_answers_503_and_interrupt_stops_the_running_job(tiny_model):
    with running_server(tiny_model, max_queue=1) as (url, worker):
        long_job, long_out = in_thread(call, url, "/sdapi/v1/txt2img", LONG)
        running = wait_for(lambda: (p := progress(url))["state"]["sampling_step"] > 0 and p)
        assert running["state"]["job"] == "txt2img" and running["state"]["job_count"] == 20
        assert 0 < running["progress"] < 1 and running["current_image"]  # a live preview, base64 PNG
        Image.open(io.BytesIO(base64.b64decode(running["current_image"]))).verify()
        queued_job, queued_out = in_thread(call, url, "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": 2, "seed": 4})
        wait_for(lambda: progress(url)["queued"] == 1)
        status, headers, body = call(url, "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": 2})
        assert status == 503 and int(headers["Retry-After"]) > 0 and "queue is full" in body["detail"]
        assert call(url, "/sdapi/v1/interrupt", {})[0] == 200
        long_job.join(60)
        queued_job.join(60)
        status, _, answer = long_out["value"]
        assert status == 200 and len(answer["images"]) < 20
        assert '"interrupted": true' in answer["info"]
        status, _, answer = queued_out["value"]
        assert status == 200 and len(answer["images"]) == 1  # the queued job was not touched by the interrupt
        assert progress(url)["state"]["job_count"] == 0


def test_a_queued_job_whose_client_left_is_dropped(tiny_model):
    import json
    import socket

    with running_server(tiny_model, max_queue=2) as (url, worker):
        long_job, _ = in_thread(call, url, "/sdapi/v1/txt2img", LONG)
        wait_for(lambda: progress(url)["state"]["sampling_step"] > 0)
        body = json.dumps({"prompt": PROMPT, "steps": 2}).encode()
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            wait_for(lambda: progress(url)["queued"] == 1)
        wait_for(lambda: progress(url)["queued"] == 0)  # the server noticed the client leave
        started = worker.jobs_run
        call(url, "/sdapi/v1/interrupt", {})
        long_job.join(60)
        status, _, answer = call(url, "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": 2, "seed": 1})
        assert status == 200 and len(answer["images"]) == 1
        assert worker.jobs_run == started + 1  # only the last request ran: the abandoned one never started


def test_interrupt_returns_the_images_already_made(tiny_model):
    with running_server(tiny_model, max_queue=2) as (url, worker):
        job, out = in_thread(call, url, "/sdapi/v1/txt2img", {**LONG, "steps": 20, "batch_size": 50, "seed": 100})
        wait_for(lambda: progress(url)["state"]["job_no"] >= 2)
        call(url, "/sdapi/v1/interrupt", {})
        job.join(60)
        status, _, answer = out["value"]
        import json

        info = json.loads(answer["info"])
        assert status == 200 and 2 <= len(answer["images"]) < 50
        assert info["interrupted"] and info["all_seeds"] == list(range(100, 100 + len(answer["images"])))


def test_skip_drops_the_current_image_and_the_job_goes_on(tiny_model):
    import json

    with running_server(tiny_model, max_queue=2) as (url, worker):
        job, out = in_thread(call, url, "/sdapi/v1/txt2img", {**LONG, "steps": 300, "batch_size": 3, "seed": 10})
        wait_for(lambda: progress(url)["state"]["sampling_step"] > 0)
        call(url, "/sdapi/v1/skip", {})
        wait_for(lambda: progress(url)["state"]["job_no"] >= 1)
        call(url, "/sdapi/v1/skip", {})
        wait_for(lambda: (p := progress(url)["state"])["job_no"] >= 2 and p["sampling_step"] > 0)
        job.join(120)
        status, _, answer = out["value"]
        assert status == 200 and len(answer["images"]) == 1
        info = json.loads(answer["info"])
        assert info["all_seeds"] == [12] and not info["interrupted"]  # the first two were skipped, the third made


def test_auth_is_required_when_set(tiny_model):
    webuiapi = pytest.importorskip("webuiapi")
    with running_server(tiny_model, credentials=(("alice", "s3cret"), ("bob", "pw"))) as (url, worker):
        for path in ("/sdapi/v1/sd-models", "/", "/sdapi/v1/progress"):
            status, headers, body = call(url, path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert call(url, "/sdapi/v1/txt2img", {"prompt": PROMPT}, auth=("alice", "wrong"))[0] == 401
        assert call(url, "/sdapi/v1/options", auth=("bob", "pw"))[0] == 200
        host, port = url.removeprefix("http://").split(":")
        client = webuiapi.WebUIApi(host=host, port=int(port), username="alice", password="s3cret")
        assert len(client.txt2img(prompt=PROMPT, steps=1, width=64, height=64).images) == 1
        anonymous = webuiapi.WebUIApi(host=host, port=int(port))
        with pytest.raises(RuntimeError, match="401"):
            anonymous.txt2img(prompt=PROMPT, steps=1)


def test_request_size_is_limited(tiny_model):
    with running_server(tiny_model, max_body_mb=1) as (url, worker):
        big = "A" * (2 * 2**20)
        status, _, body = call(url, "/sdapi/v1/img2img", {"prompt": PROMPT, "init_images": [big]})
        assert status == 413 and "--max-body-mb" in body["detail"]
        status, _, body = call(url, "/sdapi/v1/img2img", {"prompt": PROMPT, "init_images": ["A" * (2**20 // 2)]})
        assert status == 422 and "init_images[0]" in body["detail"]  # under the limit: read and judged
        assert call(url, "/sdapi/v1/options")[0] == 200


def test_a_public_host_needs_auth_or_insecure(ldm, tiny_model):
    result = ldm("serve", "--model", tiny_model, "--host", "0.0.0.0")
    assert result.code == 2 and "--api-auth" in result.stderr and "--insecure" in result.stderr
    result = ldm("serve", "--model", tiny_model, "--api-auth", "nopassword")
    assert result.code == 2 and "USER:PASSWORD" in result.stderr
    result = ldm("serve", "--model", tiny_model, "--max-queue", "0")
    assert result.code == 2 and "--max-queue" in result.stderr


def start_process(tiny_model):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ldm_cli", "serve", "--model", str(tiny_model), "--port", "0", "--device", "cpu", "--offline"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )
    lines = []
    for line in process.stderr:
        lines.append(line)
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if match:
            return process, match.group(1), lines
    process.wait(10)
    raise AssertionError("the server did not start:\n" + "".join(lines))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cancels_the_running_job_and_exits_cleanly(tiny_model, signum):
    process, url, lines = start_process(tiny_model)
    try:
        job, out = in_thread(call, url, "/sdapi/v1/txt2img", LONG)
        wait_for(lambda: progress(url)["state"]["sampling_step"] > 0)
        queued, queued_out = in_thread(call, url, "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": 2})
        wait_for(lambda: progress(url)["queued"] == 1)
        process.send_signal(signum)
        assert process.wait(60) == 0
        job.join(10)
        queued.join(10)
        rest = process.stderr.read()
    finally:
        process.kill()
    assert f"stopped by {signal.Signals(signum).name}" in rest and "Traceback" not in rest
    status, _, answer = out["value"]
    assert status == 200 and '"interrupted": true' in answer["info"]  # answered before the exit
    status, _, answer = queued_out["value"]
    assert status == 503 and "shutting down" in answer["detail"]
