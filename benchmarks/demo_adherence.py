"""Prompt adherence of the bundled demo model, read from the pixels by ldm_cli.demo.checker.

    .venv/bin/python -m benchmarks.demo_adherence [--images 240] [--guidance1 120]

Random prompts (plain phrasing, with size) and random seeds, generated through the same library
path as `ldm generate --model demo` (txt2img.load_model -> resolve_plan -> TextToImage.generate) at
default settings (50 steps, guidance 7.5, the model's own scheduler). Accuracy per attribute,
separately for trained and held-out colour+shape pairs (ldm_cli.demo.shapes.HELD_OUT); the same
prompts and seeds again at guidance 1 (no classifier-free guidance) for comparison. Also: VAE
round-trip PSNR (`ldm encode` + `ldm decode`) on fresh generator images, and the time of one 128x128 image at 30 steps.

Writes benchmarks/results/demo_adherence.json and benchmarks/results/demo_samples.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
from ldm_cli.demo.checker import agrees, read_image
from ldm_cli.demo.shapes import HELD_OUT, Scene, random_scene, render_array
from ldm_cli.pipeline.generation import TextToImage
from ldm_cli.pipeline.txt2img import load_model, resolve_plan

RESULTS = Path(__file__).parent / "results"
ATTRIBUTES = ("colour", "background", "shape", "size")


def prompts_and_seeds(count: int, seed: int, held_out_share: float = 0.2) -> list[tuple[Scene, int]]:
    """`count` random scenes (a share of them held-out pairs) with random seeds."""
    rng = random.Random(seed)
    jobs = []
    while len(jobs) < count:
        scene = random_scene(rng, allow_held_out=True)
        if scene.held_out != (rng.random() < held_out_share):
            continue
        jobs.append((scene, rng.randrange(2**31)))
    return jobs


def load_maker(model: str) -> tuple:
    """The model loaded the way `ldm generate --model MODEL` loads it, on the CPU: (components, maker, seconds)."""
    settings = GenerateSettings(prompts=("",), model=ModelSettings(model=model, device="cpu"))
    components, device, dtype, load_seconds = load_model(settings)
    return components, TextToImage(components, device, dtype), load_seconds


def run_set(maker: TextToImage, plan, jobs) -> tuple[list[dict], list[np.ndarray]]:
    rows, pixels = [], []
    for scene, seed in jobs:
        result = maker.generate(scene.plain_prompt(), seed, plan)
        reading = read_image(result.pixels)
        expected = {"colour": scene.colour, "background": scene.background, "shape": scene.shape, "size": scene.size}
        rows.append({"prompt": scene.plain_prompt(), "seed": seed, "held_out": scene.held_out,
                     "read": reading.to_dict(), "correct": agrees(reading, expected), "seconds": round(result.seconds, 3)})
        pixels.append(result.pixels)
    return rows, pixels


def accuracy(rows: list[dict]) -> dict:
    """Per attribute and 'all' (every attribute right), for trained / held_out / every row."""
    groups = {"trained": [r for r in rows if not r["held_out"]], "held_out": [r for r in rows if r["held_out"]], "all": rows}
    report = {}
    for name, group in groups.items():
        if not group:
            continue
        scores = defaultdict(float)
        for row in group:
            for key in ATTRIBUTES:
                scores[key] += row["correct"][key]
            scores["all_attributes"] += all(row["correct"].values())
        report[name] = {"images": len(group), **{k: round(v / len(group), 4) for k, v in scores.items()}}
    return report


def grid(images: list[np.ndarray], columns: int = 8) -> "Image.Image":
    from PIL import Image

    rows = [np.concatenate(images[i : i + columns], axis=1) for i in range(0, len(images) - columns + 1, columns)]
    return Image.fromarray(np.concatenate(rows, axis=0))


def cli_round_trip_psnr(model: str, count: int = 32, seed: int = 123) -> dict:
    """`ldm encode` then `ldm decode` (the real commands) on fresh generator images; PSNR per image."""
    import subprocess
    import sys
    import tempfile

    from PIL import Image

    from ldm_cli.pipeline.codec.quality import psnr

    rng = random.Random(seed)
    images = render_array([random_scene(rng, allow_held_out=True) for _ in range(count)])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "img").mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / "img" / f"{i:03d}.png")
        ldm = [sys.executable, "-m", "ldm_cli"]
        subprocess.run([*ldm, "encode", folder / "img", "-o", folder / "lat", "--model", model], check=True, capture_output=True)
        latents = sorted((folder / "lat").glob("*.latent.safetensors"))
        subprocess.run([*ldm, "decode", *latents, "-o", folder / "dec", "--model", model], check=True, capture_output=True)
        values = []
        for i, image in enumerate(images):
            with Image.open(folder / "dec" / f"{i:03d}.png") as decoded:
                values.append(psnr(image, np.asarray(decoded.convert("RGB"))))
    return {"images": count, "mean_db": round(float(np.mean(values)), 2), "min_db": round(float(np.min(values)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=240, help="images at default guidance")
    parser.add_argument("--guidance1", type=int, default=120, help="of those, how many to repeat at guidance 1")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the prompt/seed draw")
    parser.add_argument("--model", default="demo")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    components, maker, load_seconds = load_maker(args.model)
    plan = resolve_plan(GenerateSettings(prompts=("",)), components)  # defaults: 50 steps, guidance 7.5, the model's scheduler
    jobs = prompts_and_seeds(args.images, args.seed)
    started = time.perf_counter()
    rows, pixels = run_set(maker, plan, jobs)
    default_seconds = time.perf_counter() - started
    plan_g1 = resolve_plan(GenerateSettings(prompts=("",), guidance=1.0), components)
    rows_g1, _ = run_set(maker, plan_g1, jobs[: args.guidance1])
    timing_plan = resolve_plan(GenerateSettings(prompts=("",), steps=30), components)
    times = [maker.generate("a red circle on a blue background", s, timing_plan).seconds for s in range(5)]
    report = {
        "model": args.model,
        "settings": {"steps": plan.steps, "guidance": plan.guidance, "scheduler": plan.scheduler,
                     "size": [plan.height, plan.width]},
        "held_out_pairs": sorted(f"{c} {s}" for c, s in HELD_OUT),
        "default_guidance": accuracy(rows),
        "guidance_1_same_first_prompts": accuracy(rows_g1),
        "default_guidance_same_first_prompts": accuracy(rows[: args.guidance1]),
        "vae_round_trip_psnr_cli": cli_round_trip_psnr(args.model),
        "seconds_per_image_30_steps": round(float(np.median(times)), 3),
        "seconds_per_image_default": round(default_seconds / len(jobs), 3),
        "model_load_s": round(load_seconds, 3),
        "machine": f"{platform.machine()} {platform.processor() or ''} torch threads=1, shared 2-core CPU".strip(),
        "rows": rows,
        "rows_guidance_1": rows_g1,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "demo_adherence.json").write_text(json.dumps(report, indent=1) + "\n")
    grid(pixels[:32]).save(RESULTS / "demo_samples.png")
    summary = {k: report[k] for k in ("default_guidance", "guidance_1_same_first_prompts", "vae_round_trip_psnr_cli",
                                      "seconds_per_image_30_steps")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
