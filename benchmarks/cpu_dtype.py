"""Should `--dtype auto` pick bf16 on this CPU? bf16 against fp32, picture and speed, in one run.

    PYTHONPATH=. .venv/bin/python -m benchmarks.cpu_dtype [--images 24] [--sizes 256,512]

1. The bundled demo model at its default settings: the same prompt/seed pairs as
   benchmarks/demo_adherence.py draws, in fp32 and in bf16: demo adherence of each, PSNR/SSIM of each
   bf16 picture against its fp32 picture, seconds per image (one thread, as demo_adherence.py).
2. SD1.5's architecture with random weights (benchmarks/models.sd15_folder, built once): one picture
   per seed in fp32 and bf16 at the first size (PSNR/SSIM), and seconds per guided step at each size,
   fp32 and bf16 interleaved, min of repeats, torch's default threads.

Writes benchmarks/results/cpu_dtype.json; `resolve_dtype` (models/devices.py) cites it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"


def demo(images: int, seed: int) -> dict:
    from benchmarks.demo_adherence import accuracy, prompts_and_seeds, run_set
    from ldm_cli.models.loading import load_components, resolve_source
    from ldm_cli.models.performance import PerformanceSettings, apply_fast_paths
    from ldm_cli.pipeline.config import GenerateSettings
    from ldm_cli.pipeline.generation import TextToImage
    from ldm_cli.pipeline.codec.quality import psnr, ssim
    from ldm_cli.pipeline.txt2img import resolve_plan

    torch.set_num_threads(1)
    jobs = prompts_and_seeds(images, seed)
    out, pictures = {}, {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        components = load_components(resolve_source("demo"), "cpu", dtype)
        apply_fast_paths(components, "cpu", PerformanceSettings())
        plan = resolve_plan(GenerateSettings(prompts=("",)), components)
        started = time.perf_counter()
        rows, pictures[name] = run_set(TextToImage(components, "cpu", dtype), plan, jobs)
        out[name] = {"adherence": accuracy(rows)["all"], "seconds_per_image": round((time.perf_counter() - started) / len(jobs), 3)}
        print(f"demo {name}: {json.dumps(out[name])}", flush=True)
    psnrs = [psnr(a, b) for a, b in zip(pictures["fp32"], pictures["bf16"])]
    out["bf16_vs_fp32"] = {
        "psnr_db": {"mean": round(float(np.mean(psnrs)), 2), "min": round(float(np.min(psnrs)), 2)},
        "ssim": round(float(np.mean([ssim(a, b) for a, b in zip(pictures["fp32"], pictures["bf16"])])), 4),
        "speedup": round(out["fp32"]["seconds_per_image"] / out["bf16"]["seconds_per_image"], 3),
    }
    out["settings"] = {"steps": plan.steps, "guidance": plan.guidance, "scheduler": plan.scheduler,
                       "size": [plan.height, plan.width], "images": len(jobs), "draw_seed": seed, "threads": 1}
    print(f"demo bf16 vs fp32: {json.dumps(out['bf16_vs_fp32'])}", flush=True)
    return out


def sd15(sizes: list[int], repeats: int, seeds: int) -> dict:
    from benchmarks import measure
    from benchmarks.models import sd15_folder
    from ldm_cli.models.loading import load_components, resolve_source
    from ldm_cli.models.performance import PerformanceSettings, apply_fast_paths
    from ldm_cli.pipeline.codec.quality import psnr, ssim

    torch.set_num_threads(torch.get_num_threads())
    folder = sd15_folder()
    loaded = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        loaded[name] = (load_components(resolve_source(str(folder)), "cpu", dtype), dtype)
        apply_fast_paths(loaded[name][0], "cpu", PerformanceSettings())
    size, out = sizes[0], {"threads": torch.get_num_threads()}
    values = []
    for seed in range(seeds):
        fp32, bf16 = (measure.ldm_image(c, d, size, 4, "ddim", seed=seed) for c, d in (loaded["fp32"], loaded["bf16"]))
        values.append((psnr(fp32, bf16), ssim(fp32, bf16)))
    out["picture"] = {"size": size, "steps": 4, "scheduler": "ddim", "seeds": seeds,
                      "psnr_db": {"mean": round(float(np.mean([v[0] for v in values])), 2), "min": round(float(min(v[0] for v in values)), 2)},
                      "ssim": round(float(np.mean([v[1] for v in values])), 4)}
    print(f"sd15 picture: {json.dumps(out['picture'])}", flush=True)
    for size in sizes:
        steps = 3 if size <= 256 else 1
        times = {"fp32": [], "bf16": []}
        for _ in range(repeats):  # interleaved: the machine's drift hits both alike
            for name, (components, dtype) in loaded.items():
                times[name].append(measure.ldm_step_seconds(components, dtype, size, steps, "ddim"))
        best = {name: min(v) for name, v in times.items()}
        out[f"step_s_{size}"] = {"fp32": round(best["fp32"], 3), "bf16": round(best["bf16"], 3),
                                 "speedup": round(best["fp32"] / best["bf16"], 3), "steps_per_loop": steps, "repeats": repeats}
        print(f"sd15 {size}px: {json.dumps(out[f'step_s_{size}'])}", flush=True)
    return out


def auto_picks() -> dict:
    """What --dtype auto chooses on this machine for each measured model, and why."""
    from ldm_cli.models.devices import auto_cpu_dtype
    from ldm_cli.models.loading import BUNDLED_MODELS, SD15_CONFIG_DIR

    picks = {}
    for name, folder in (("sd15", SD15_CONFIG_DIR), ("demo", BUNDLED_MODELS["demo"])):
        config = json.loads((Path(folder) / "unet" / "config.json").read_text())
        chosen, reason = auto_cpu_dtype(config)
        picks[name] = {"dtype": chosen, "dtype_reason": reason}
    return picks


def main() -> None:
    from benchmarks.deepcache import cpu_name

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2, help="SD1.5 pictures compared")
    args = parser.parse_args()
    flags = Path("/proc/cpuinfo").read_text()
    report = {"machine": {"cpu": cpu_name(), "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
                          "torch": torch.__version__, "note": "shared 2-core machine: timings move +-15% between runs"}}
    report["sd15_random_weights"] = sd15([int(s) for s in args.sizes.split(",")], args.repeats, args.seeds)
    report["demo"] = demo(args.images, args.seed)
    report["auto_picks"] = auto_picks()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cpu_dtype.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
