"""`ldm serve` under a bounded concurrent load: N requests from T client threads against 127.0.0.1.

    python -m benchmarks.serve_load                      # 50 requests, 8 threads, the tiny model, 2 steps
    python -m benchmarks.serve_load --model demo --steps 10 --requests 20

Every request is a txt2img with its own seed; the figures are what a client sees (queueing
included): latency percentiles, throughput, and whether every request was answered with its own
image. Writes benchmarks/results/serve_load.json. Only loopback traffic; bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _post(url: str, body: dict, timeout: float) -> tuple[int, dict | None]:
    request = urllib.request.Request(url + "/sdapi/v1/txt2img", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:
        return 0, None  # refused, reset or timed out: counted as lost


def drive(url: str, requests: int = 50, threads: int = 8, steps: int = 2, size: int = 64, timeout: float = 300.0) -> dict:
    """Send `requests` txt2img requests (seed i for request i) from `threads` threads; return the figures."""
    next_index = iter(range(requests))
    lock = threading.Lock()
    answers: dict[int, dict] = {}

    def client() -> None:
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            body = {"prompt": f"load test {index}", "seed": index, "steps": steps, "width": size, "height": size,
                    "sampler_name": "Euler"}
            started = time.perf_counter()
            status, answer = _post(url, body, timeout)
            seconds = time.perf_counter() - started
            seeds = json.loads(answer["info"])["all_seeds"] if answer else []
            with lock:
                answers[index] = {"status": status, "seconds": seconds, "seeds": seeds,
                                  "images": len(answer["images"]) if answer else 0}

    started = time.perf_counter()
    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout * requests)
    wall = time.perf_counter() - started
    latencies = sorted(a["seconds"] for a in answers.values() if a["status"] == 200)
    statuses: dict[str, int] = {}
    for answer in answers.values():
        statuses[str(answer["status"])] = statuses.get(str(answer["status"]), 0) + 1
    own_image = sum(1 for i, a in answers.items() if a["status"] == 200 and a["seeds"] == [i] and a["images"] == 1)
    return {
        "requests": requests, "threads": threads, "steps": steps, "size": size,
        "answered": len(answers), "statuses": statuses, "with_own_image": own_image,
        "lost": requests - len(answers) + statuses.get("0", 0),
        "wall_s": round(wall, 3), "throughput_per_s": round(len(latencies) / wall, 3) if wall else None,
        "latency_s": _percentiles(latencies),
    }


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    pick = lambda q: values[min(len(values) - 1, round(q * (len(values) - 1)))]  # noqa: E731
    return {"min": round(values[0], 3), "p50": round(pick(0.5), 3), "p90": round(pick(0.9), 3),
            "p99": round(pick(0.99), 3), "max": round(values[-1], 3), "mean": round(statistics.fmean(values), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model for --model [default: a tiny random model built now]")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args(argv)

    from ldm_cli.pipeline.config import ModelSettings
    from ldm_cli.serve.server import ServeSettings, serving_in_thread

    with tempfile.TemporaryDirectory() as folder:
        model = args.model
        if model is None:
            from ldm_cli.tiny import build_tiny_model

            model = str(build_tiny_model(Path(folder) / "tiny", seed=0))
        settings = ServeSettings(model=ModelSettings(model=model, device="cpu"), port=0, max_queue=args.max_queue)
        with serving_in_thread(settings) as (url, worker):
            figures = drive(url, args.requests, args.threads, args.steps, args.size)
            figures["alive_after"] = urllib.request.urlopen(url + "/sdapi/v1/options", timeout=30).status == 200
    figures.update(model=args.model or "tiny (ldm_cli/tiny.py, seed 0)", max_queue=args.max_queue,
                   machine={"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                            "python": platform.python_version()},
                   measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
