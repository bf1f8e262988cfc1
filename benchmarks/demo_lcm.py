"""The bundled demo-lcm LoRA at 4 LCM steps against the demo model at its 50-step default, same prompts and seeds.

    .venv/bin/python -m benchmarks.demo_lcm [--images 240] [--lora demo-lcm] [--steps 4]
    .venv/bin/python -m benchmarks.demo_lcm --lcm-model runs/demo-lcm-full --out benchmarks/results/demo_lcm_full.json

Both sets go through the library path of `ldm generate --model demo` (txt2img.load_model -> resolve_plan ->
TextToImage.generate); the LCM set as `--lora demo-lcm --scheduler lcm --steps 4` with no --g (the lcm
sampler's own guidance for an LCM-LoRA, 1: no CFG pass). Adherence read from the pixels by
ldm_cli.demo.checker, on benchmarks.demo_adherence's prompt/seed draw. Time per image: the median of each
set's per-image generation time, measured in this one run.

With --lcm-model the LCM set is that model folder instead (`ldm distill --method full`: its own LCMScheduler
and w embedding, the lcm sampler's default guidance 8.5 for such a UNet), against the same --model baseline.

Controls: the same step count on the model without the LoRA (lcm sampler at guidance 1, and DDIM with CFG 7.5).

Writes benchmarks/results/demo_lcm.json and benchmarks/results/demo_lcm_samples.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from benchmarks.demo_adherence import RESULTS, accuracy, grid, prompts_and_seeds, run_set
from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
from ldm_cli.pipeline.generation import TextToImage
from ldm_cli.pipeline.txt2img import load_model, resolve_plan


def load(model: str, loras: tuple[str, ...]):
    from ldm_cli.models.lora import parse_lora_arg

    settings = GenerateSettings(prompts=("",), model=ModelSettings(model=model, device="cpu"),
                                loras=tuple(str(parse_lora_arg(v)) for v in loras))
    components, device, dtype, _ = load_model(settings)
    return components, TextToImage(components, device, dtype)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def median_seconds(rows: list[dict]) -> float:
    return float(np.median([r["seconds"] for r in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--seed", type=int, default=2024, help="seed of the prompt/seed draw (demo_adherence's)")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--lora", default="demo-lcm")
    parser.add_argument("--lcm-model", default=None, help="an LCM model folder to measure instead of --model + --lora")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--extra-steps", type=int, nargs="*", default=[2, 8], help="also measure LCM at these step counts")
    parser.add_argument("--out", default=str(RESULTS / "demo_lcm.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    jobs = prompts_and_seeds(args.images, args.seed)
    base_components, base = load(args.model, ())
    base_plan = resolve_plan(GenerateSettings(prompts=("",)), base_components)  # 50 steps, guidance 7.5, DDIM
    if args.lcm_model:
        args.lora = None
    lcm_components, lcm = load(args.lcm_model or args.model, (args.lora,) if args.lora else ())
    lcm_plans = {steps: resolve_plan(GenerateSettings(prompts=("",), scheduler="lcm", steps=steps, guidance_default=True),
                                     lcm_components) for steps in [args.steps, *args.extra_steps]}
    started = time.perf_counter()
    base_rows, base_pixels = run_set(base, base_plan, jobs)
    base_wall = time.perf_counter() - started
    results, lcm_pixels = {}, None
    for steps, plan in lcm_plans.items():
        started = time.perf_counter()
        rows, pixels = run_set(lcm, plan, jobs)
        results[steps] = {"settings": {"steps": plan.steps, "guidance": plan.guidance, "scheduler": plan.scheduler,
                                       "lora": args.lora},
                          "adherence": accuracy(rows), "seconds_per_image_median": round(median_seconds(rows), 4),
                          "wall_s": round(time.perf_counter() - started, 1), "rows": rows}
        if steps == args.steps:
            lcm_pixels = pixels
    controls = {}  # the same 4 steps without the LoRA: what the distillation adds
    for name, settings in (("no_lora_lcm", GenerateSettings(prompts=("",), scheduler="lcm", steps=args.steps, guidance_default=True)),
                           ("no_lora_ddim_cfg", GenerateSettings(prompts=("",), steps=args.steps))):
        plan = resolve_plan(settings, base_components)
        rows, _ = run_set(base, plan, jobs)
        controls[name] = {"settings": {"steps": plan.steps, "guidance": plan.guidance, "scheduler": plan.scheduler},
                          "adherence": accuracy(rows)}
    base_all, main_all = accuracy(base_rows)["all"], results[args.steps]["adherence"]["all"]
    gap = {k: round(100 * (main_all[k] - base_all[k]), 2) for k in ("colour", "shape", "background", "size", "all_attributes")}
    report = {
        "model": args.model,
        "lora": args.lora,
        "lcm_model": args.lcm_model,
        "images": len(jobs),
        "baseline": {"settings": {"steps": base_plan.steps, "guidance": base_plan.guidance, "scheduler": base_plan.scheduler},
                     "adherence": accuracy(base_rows), "seconds_per_image_median": round(median_seconds(base_rows), 4),
                     "wall_s": round(base_wall, 1)},
        "lcm": {str(k): {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in results.items()},
        f"lcm_{args.steps}_minus_baseline_points": gap,
        f"controls_{args.steps}_steps_without_lora": controls,
        "target": "colour and shape within 3 points of the 50-step model",
        "target_met": gap["colour"] >= -3 and gap["shape"] >= -3,
        "time_per_image_ratio": round(median_seconds(base_rows) / results[args.steps]["seconds_per_image_median"], 2),
        "machine": f"{platform.machine()} {_cpu_name()} torch threads=1, shared 2-core CPU",
        "rows_baseline": base_rows,
        f"rows_lcm_{args.steps}": results[args.steps]["rows"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        f.write(json.dumps(report, indent=1) + "\n")
    if args.out == str(RESULTS / "demo_lcm.json"):
        grid([p for pair in zip(base_pixels[:16], lcm_pixels[:16]) for p in pair]).save(RESULTS / "demo_lcm_samples.png")
    print(json.dumps({k: report[k] for k in ("baseline", "lcm", f"lcm_{args.steps}_minus_baseline_points", "target_met",
                                              "time_per_image_ratio")}, indent=1))


if __name__ == "__main__":
    main()
