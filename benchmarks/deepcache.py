"""What `--cache-interval N` (DeepCache, pipeline/loop/deepcache.py) buys and costs, in one run.

    PYTHONPATH=. .venv/bin/python -m benchmarks.deepcache [--images 24] [--sizes 256,512]

1. Quality on the bundled demo model at its default settings (50 steps, guidance 7.5, its own
   scheduler): the same prompt/seed pairs as benchmarks/demo_adherence.py draws, at interval 1 (no
   caching) and N = 2, 3, 5: demo adherence (the pixel checker), and PSNR/SSIM of each picture
   against its uncached picture.
2. Speed on SD1.5's UNet (the shipped config, random weights; no weights can be downloaded here):
   one guided UNet call (batch 2) in full against the shallow path of a cached step, interleaved,
   min of repeats, at each size; and a real DDIM loop of 6 steps at interval 1 and 3 at the first size.

Writes benchmarks/results/deepcache.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
INTERVALS = (1, 2, 3, 5)


def demo_quality(images: int, seed: int) -> dict:
    from benchmarks.demo_adherence import accuracy, load_maker, prompts_and_seeds, run_set
    from ldm_cli.pipeline.config import GenerateSettings
    from ldm_cli.pipeline.codec.quality import psnr, ssim
    from ldm_cli.pipeline.txt2img import resolve_plan

    torch.set_num_threads(1)  # the demo UNet is narrow: one thread (as demo_adherence.py)
    components, maker, _ = load_maker("demo")
    plan = resolve_plan(GenerateSettings(prompts=("",)), components)
    jobs = prompts_and_seeds(images, seed)
    rows, pixels, seconds = {n: [] for n in INTERVALS}, {n: [] for n in INTERVALS}, {n: 0.0 for n in INTERVALS}
    for job in jobs:  # intervals interleaved per image: the shared machine's drift hits all alike
        for interval in INTERVALS:
            started = time.perf_counter()
            found, made = run_set(maker, replace(plan, cache_interval=interval), [job])
            seconds[interval] += time.perf_counter() - started
            rows[interval] += found
            pixels[interval] += made
    out, reference = {}, pixels[1]
    for interval in INTERVALS:
        entry = {"adherence": accuracy(rows[interval])["all"], "seconds_per_image": round(seconds[interval] / len(jobs), 3),
                 "speedup_vs_uncached": round(seconds[1] / seconds[interval], 3)}
        if interval != 1:
            psnrs = [psnr(a, b) for a, b in zip(reference, pixels[interval])]
            entry["psnr_vs_uncached_db"] = {"mean": round(float(np.mean(psnrs)), 2), "min": round(float(np.min(psnrs)), 2)}
            entry["ssim_vs_uncached"] = round(float(np.mean([ssim(a, b) for a, b in zip(reference, pixels[interval])])), 4)
        out[str(interval)] = entry
        print(f"demo interval {interval}: {json.dumps(entry)}", flush=True)
    return {"settings": {"steps": plan.steps, "guidance": plan.guidance, "scheduler": plan.scheduler,
                         "size": [plan.height, plan.width], "images": len(jobs), "draw_seed": seed},
            "by_interval": out}


def sd15_unet():
    from diffusers import UNet2DConditionModel

    from ldm_cli.models.loading import SD15_CONFIG_DIR
    from ldm_cli.models.performance import use_sdpa

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SD15_CONFIG_DIR / "unet")).eval()
    use_sdpa(unet)
    return unet


def sd15_speed(sizes: list[int], repeats: int) -> dict:
    from ldm_cli.pipeline.loop.deepcache import CachedUNet

    torch.set_num_threads(2)
    unet = sd15_unet()
    out = {}
    for size in sizes:
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 4, size // 8, size // 8, generator=g)
        text = torch.randn(2, 77, 768, generator=g)
        t = torch.tensor(500)
        cached = CachedUNet(unet, 3)
        full_times, shallow_times = [], []
        with torch.no_grad():
            cached.begin_step(0)
            cached(x, t, encoder_hidden_states=text)  # fills the cache (and warms up)
            for _ in range(repeats):
                started = time.perf_counter()
                unet(x, t, encoder_hidden_states=text, return_dict=False)
                full_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                cached.shallow(x, t, text, None, cached.cached[0])
                shallow_times.append(time.perf_counter() - started)
        full, shallow = min(full_times), min(shallow_times)
        ratio = shallow / full
        out[str(size)] = {
            "full_unet_call_s": round(full, 4), "shallow_call_s": round(shallow, 4), "shallow_over_full": round(ratio, 4),
            "expected_speedup_per_step": {str(n): round(n / (1 + (n - 1) * ratio), 3) for n in INTERVALS[1:]},
        }
        print(f"sd15 {size}px: {json.dumps(out[str(size)])}", flush=True)
    out["loop"] = sd15_loop(unet, sizes[0])
    return out


def sd15_loop(unet, size: int, steps: int = 3, repeats: int = 2) -> dict:
    """A real guided DDIM loop through sampling.denoise at interval 1 and 3, same start and conditioning,
    interleaved `repeats` times (min kept): load from other work on the shared machine hits both alike."""
    from diffusers import DDIMScheduler

    from ldm_cli.models.loading import SD15_CONFIG_DIR
    from ldm_cli.pipeline.loop.deepcache import cached_unet
    from ldm_cli.pipeline.loop.sampling import Conditioning, denoise

    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(1, 4, size // 8, size // 8, generator=g)
    conditioning = Conditioning(torch.randn(1, 77, 768, generator=g), torch.randn(1, 77, 768, generator=g), 7.5)
    result = {"size": size, "steps": steps, "repeats": repeats}
    times = {1: [], 3: []}
    for _ in range(repeats):
        for interval in times:
            scheduler = DDIMScheduler.from_pretrained(SD15_CONFIG_DIR / "scheduler")
            scheduler.set_timesteps(steps)
            started = time.perf_counter()
            denoise(cached_unet(unet, interval), scheduler, x0.clone(), conditioning, scheduler.timesteps)
            times[interval].append((time.perf_counter() - started) / steps)
    for interval, values in times.items():
        result[f"interval_{interval}_s_per_step"] = round(min(values), 4)
    result["speedup_interval_3"] = round(result["interval_1_s_per_step"] / result["interval_3_s_per_step"], 3)
    print(f"sd15 loop: {json.dumps(result)}", flush=True)
    return result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--seed", type=int, default=2024, help="the prompt/seed draw of demo_adherence.py")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-demo", action="store_true", help="keep the demo figures of the last run")
    parser.add_argument("--skip-sd15", action="store_true", help="keep the SD1.5 figures of the last run")
    args = parser.parse_args()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    report = {
        "machine": {"cpu": cpu_name(), "avx512_bf16": "avx512_bf16" in flags, "cores": torch.get_num_threads(),
                    "torch": torch.__version__, "note": "shared 2-core machine: timings move +-15% between runs"},
        "method": "DeepCache branch 0, uniform: a full UNet pass every Nth step, the others run conv_in, "
                  "the final up block's last layer on the cached deep features, and the output head",
    }
    if not args.skip_demo:
        report["demo"] = demo_quality(args.images, args.seed)
    elif (RESULTS / "deepcache.json").exists():  # keep the last run's demo figures
        report["demo"] = json.loads((RESULTS / "deepcache.json").read_text()).get("demo")
    if not args.skip_sd15:
        report["sd15_random_weights"] = sd15_speed([int(s) for s in args.sizes.split(",")], args.repeats)
    elif (RESULTS / "deepcache.json").exists():  # keep the last run's SD1.5 figures
        report["sd15_random_weights"] = json.loads((RESULTS / "deepcache.json").read_text()).get("sd15_random_weights")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deepcache.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
