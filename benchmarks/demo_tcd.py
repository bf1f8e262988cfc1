"""The tcd sampler on the bundled demo-lcm LoRA: demo adherence at 4 steps for several gammas, beside the
lcm sampler at 4 steps and the demo model at its 50-step default, same prompts and seeds, one run.

    .venv/bin/python -m benchmarks.demo_tcd [--images 240] [--steps 4] [--gammas 0 0.3 0.6 1]

Every set goes through the library path of `ldm generate --model demo` (load_model -> resolve_plan ->
TextToImage.generate); the few-step sets as `--lora demo-lcm --scheduler lcm|tcd --steps 4 [--tcd-gamma G]`
with no --g (both samplers' own guidance for a LoRA on a plain UNet: 1, no CFG pass). Adherence is read from
the pixels by ldm_cli.demo.checker on benchmarks.demo_adherence's prompt/seed draw; time per image is the
median of each set's per-image generation time, and lcm against tcd taking turns image by image.

Writes benchmarks/results/demo_tcd.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks.demo_adherence import RESULTS, accuracy, prompts_and_seeds, run_set
from benchmarks.demo_lcm import _cpu_name, load, median_seconds
from ldm_cli.pipeline.config import GenerateSettings
from ldm_cli.pipeline.records.recipe import RecipeSettings
from ldm_cli.pipeline.txt2img import resolve_plan


def measure(maker, plan, jobs) -> dict:
    started = time.perf_counter()
    rows, _ = run_set(maker, plan, jobs)
    return {"settings": {"steps": plan.steps, "guidance": plan.guidance, "scheduler": plan.scheduler,
                         "tcd_gamma": plan.tcd_gamma},
            "adherence": accuracy(rows)["all"], "seconds_per_image_median": round(median_seconds(rows), 4),
            "wall_s": round(time.perf_counter() - started, 1)}


def interleaved_seconds(maker, plans: dict, jobs) -> dict:
    """Median seconds per image for each plan, the plans taking turns image by image, so that a change in
    the machine's load hits them alike (what the separate sets above cannot promise on a shared CPU)."""
    import statistics

    times = {name: [] for name in plans}
    for scene, seed in jobs:
        for name, plan in plans.items():
            started = time.perf_counter()
            maker.generate(scene.plain_prompt(), seed, plan)
            times[name].append(time.perf_counter() - started)
    return {name: round(statistics.median(values), 4) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--seed", type=int, default=2024, help="seed of the prompt/seed draw (demo_adherence's)")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--lora", default="demo-lcm")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.0, 0.3, 0.6, 1.0])
    parser.add_argument("--interleaved", type=int, default=60, help="images for the lcm/tcd turn-taking timing")
    parser.add_argument("--out", default=str(RESULTS / "demo_tcd.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    load_at_start = os.getloadavg()
    jobs = prompts_and_seeds(args.images, args.seed)
    base_components, base = load(args.model, ())
    lora_components, lora = load(args.model, (args.lora,))
    sets = {"baseline": measure(base, resolve_plan(GenerateSettings(prompts=("",)), base_components), jobs)}

    def few_step(scheduler: str, gamma: float | None = None):
        settings = GenerateSettings(prompts=("",), scheduler=scheduler, steps=args.steps, guidance_default=True,
                                    recipe=RecipeSettings(tcd_gamma=gamma))
        return measure(lora, resolve_plan(settings, lora_components), jobs)

    sets[f"lcm_{args.steps}"] = few_step("lcm")
    for gamma in args.gammas:
        sets[f"tcd_{args.steps}_gamma_{gamma:g}"] = few_step("tcd", gamma)
    turns = {s: resolve_plan(GenerateSettings(prompts=("",), scheduler=s, steps=args.steps, guidance_default=True),
                             lora_components) for s in ("lcm", "tcd")}
    interleaved = interleaved_seconds(lora, turns, jobs[:args.interleaved])
    base_all, base_s = sets["baseline"]["adherence"], sets["baseline"]["seconds_per_image_median"]
    for entry in sets.values():
        entry["minus_baseline_points"] = {k: round(100 * (entry["adherence"][k] - base_all[k]), 2)
                                          for k in ("colour", "shape", "background", "size", "all_attributes")}
        entry["time_per_image_ratio"] = round(base_s / entry["seconds_per_image_median"], 2)
    report = {"model": args.model, "lora": args.lora, "images": len(jobs), "sets": sets,
              "interleaved_seconds_per_image": {**interleaved, "images": len(jobs[:args.interleaved])},
              "machine": f"{_cpu_name()}, torch threads=1, shared 2-core CPU",
              "load_average_1_5_15": {"start": list(load_at_start), "end": list(os.getloadavg())}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        f.write(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
