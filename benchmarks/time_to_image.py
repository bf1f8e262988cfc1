"""Time to an image, and how good it is: diffusers' default against ldm's fast recipes, in one run.

    PYTHONPATH=. .venv/bin/python -m benchmarks.time_to_image [--quick] [--images 24] [--sd15-size 256]

Rows (same weights, dtype, prompt and seed for each):
    diffusers default 50   StableDiffusionPipeline as from_pretrained builds it: the model's own scheduler
                           (SD1.5: PNDM; the demo model: DDIM, v-prediction), 50 steps (ldm_cli/reference.py)
    diffusers PNDM 50      PNDM forced, where the model's own scheduler is another one
    ldm DPM++ 2M 20        ldm generate --scheduler dpm++2m --steps 20
    ldm DPM++ 2M 20 + DC3  the same with --cache-interval 3 (DeepCache)
    ldm LCM 4              ldm generate --scheduler lcm --steps 4 (with the demo-lcm LoRA when it is bundled)

1. Demo model (128 px, 1 thread): the pixel adherence checker (benchmarks/demo_adherence.py's prompt/seed
   draw) on every row, plus PSNR/SSIM of each picture against the diffusers default 50-step picture; the rows
   run interleaved per prompt, so the shared machine's drift hits all alike.
2. SD1.5 architecture, random weights (benchmarks/.cache/sd15-random), at --sd15-size px: seconds per
   image (text encoding + sampling + decode, round-robin over the rows, min of --repeats), PSNR/SSIM
   against the diffusers 50-step picture. Random weights make no picture worth reading, so this
   figure says how far each recipe moves the output, not how good it looks.
LCM quality needs LCM weights: without them the LCM row reports its speed only ("not measured").

Writes benchmarks/results/time_to_image.json, time_to_image.png and time_to_image.md (the README table).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
LCM_LORA = Path(__file__).resolve().parent.parent / "ldm_cli" / "assets" / "loras" / "demo-lcm.safetensors"
ROWS = (  # (key, label, scheduler, steps, cache interval); None: the model's own scheduler
    ("diffusers-default-50", "diffusers default, 50 steps", None, 50, 1),
    ("diffusers-pndm-50", "diffusers PNDM 50 steps", "pndm", 50, 1),
    ("ldm-dpm2m-20", "ldm DPM++ 2M 20 steps", "dpm++2m", 20, 1),
    ("ldm-dpm2m-20-cache3", "ldm DPM++ 2M 20 + --cache-interval 3", "dpm++2m", 20, 3),
    ("ldm-lcm-4", "ldm LCM 4 steps", "lcm", 4, 1),
)
NO_LCM = "not measured: no LCM weights"


class Rows:
    """One picture per row for a prompt and seed: diffusers' pipeline for the reference row, ldm for the rest."""

    def __init__(self, components, maker, lcm_maker=None):
        from ldm_cli.pipeline.config import GenerateSettings
        from ldm_cli.pipeline.txt2img import resolve_plan

        self.components, self.maker, self.lcm_maker = components, maker, lcm_maker
        self.base = resolve_plan(GenerateSettings(prompts=("",)), components)
        self.lcm_guidance = resolve_plan(GenerateSettings(prompts=("",), scheduler="lcm", guidance_default=True),
                                         components).guidance

    def plan(self, scheduler: str, steps: int, interval: int, size: int | None):
        plan = replace(self.base, scheduler=scheduler or self.base.scheduler, steps=steps, cache_interval=interval)
        if scheduler == "lcm":
            plan = replace(plan, guidance=self.lcm_guidance)
        return replace(plan, height=size, width=size) if size else plan

    def keys(self) -> list[str]:
        """Every row, less the forced-PNDM one where PNDM is the model's own (it would repeat the default row)."""
        return [key for key, _, scheduler, *_ in ROWS if not (key == "diffusers-pndm-50" and self.base.scheduler == "pndm")]

    def make(self, key: str, prompt: str, seed: int, size: int | None = None) -> np.ndarray:
        _, _, scheduler, steps, interval = next(r for r in ROWS if r[0] == key)
        plan = self.plan(scheduler, steps, interval, size)
        if key.startswith("diffusers"):
            from ldm_cli.reference import reference_pipeline

            pipe = reference_pipeline(self.components, plan.scheduler)
            with torch.no_grad():
                image = pipe(prompt, num_inference_steps=steps, guidance_scale=plan.guidance, height=plan.height,
                             width=plan.width, generator=torch.Generator().manual_seed(seed), output_type="np").images[0]
            return (image * 255).round().clip(0, 255).astype(np.uint8)
        maker = self.lcm_maker if scheduler == "lcm" and self.lcm_maker is not None else self.maker
        return maker.generate(prompt, seed, plan).pixels


def compare(reference: list[np.ndarray], pictures: list[np.ndarray]) -> dict:
    from ldm_cli.pipeline.codec.quality import psnr, ssim

    values = [psnr(a, b) for a, b in zip(reference, pictures)]
    finite = [v for v in values if np.isfinite(v)]
    return {"psnr_vs_50_step_db": {"mean": round(float(np.mean(finite)), 2) if finite else None,
                                   "min": round(float(np.min(values)), 2)},
            "ssim_vs_50_step": round(float(np.mean([ssim(a, b) for a, b in zip(reference, pictures)])), 4)}


def demo_rows(images: int, seed: int) -> dict:
    from benchmarks.demo_adherence import accuracy, load_maker, prompts_and_seeds
    from ldm_cli.demo.checker import agrees, read_image
    from ldm_cli.pipeline.generation import TextToImage

    torch.set_num_threads(1)  # the demo UNet is narrow: one thread (as demo_adherence.py)
    components, maker, _ = load_maker("demo")
    lcm_maker = None
    if LCM_LORA.exists():  # the demo-lcm LoRA, when bundled: its own loaded copy so the other rows stay plain
        from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
        from ldm_cli.pipeline.txt2img import load_model

        settings = GenerateSettings(prompts=("",), loras=(str(LCM_LORA),), model=ModelSettings(model="demo", device="cpu"))
        lcm_components, device, dtype, _ = load_model(settings)
        lcm_maker = TextToImage(lcm_components, device, dtype)
    rows = Rows(components, maker, lcm_maker)
    keys = rows.keys()
    jobs = prompts_and_seeds(images, seed)
    found, pixels, seconds = {key: [] for key in keys}, {key: [] for key in keys}, {key: 0.0 for key in keys}
    for scene, job_seed in jobs:  # rows interleaved per prompt
        expected = {"colour": scene.colour, "background": scene.background, "shape": scene.shape, "size": scene.size}
        for key in keys:
            started = time.perf_counter()
            picture = rows.make(key, scene.plain_prompt(), job_seed)
            seconds[key] += time.perf_counter() - started
            pixels[key].append(picture)
            found[key].append({"held_out": scene.held_out, "correct": agrees(read_image(picture), expected)})
    out = {}
    for key, label, scheduler, steps, interval in (row for row in ROWS if row[0] in keys):
        label = label.replace("default", f"default ({rows.base.scheduler.upper()})") if scheduler is None else label
        scheduler = scheduler or rows.base.scheduler
        entry = {"label": label, "scheduler": scheduler, "steps": steps, "cache_interval": interval,
                 "seconds_per_image": round(seconds[key] / len(jobs), 3),
                 "speedup_vs_diffusers": round(seconds[ROWS[0][0]] / seconds[key], 2)}
        if scheduler == "lcm" and lcm_maker is None:
            entry["guidance"] = rows.lcm_guidance
            entry["adherence"] = NO_LCM
        else:
            entry["adherence"] = accuracy(found[key])["all"]
            if key != ROWS[0][0]:
                entry.update(compare(pixels[ROWS[0][0]], pixels[key]))
        out[key] = entry
        print(f"demo {key}: {json.dumps(entry)}", flush=True)
    return {"size": [rows.base.height, rows.base.width], "images": len(jobs), "draw_seed": seed, "threads": 1,
            "lcm_weights": str(LCM_LORA.name) if lcm_maker else None, "rows": out}


def sd15_rows(size: int, repeats: int, dtype: str) -> dict:
    from benchmarks.models import sd15_folder
    from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
    from ldm_cli.pipeline.generation import TextToImage
    from ldm_cli.pipeline.txt2img import load_model

    torch.set_num_threads(2)
    settings = GenerateSettings(prompts=("",), model=ModelSettings(model=str(sd15_folder()), device="cpu", dtype=dtype))
    components, device, torch_dtype, _ = load_model(settings)
    rows = Rows(components, TextToImage(components, device, torch_dtype))
    prompt, seed = "a photograph of an astronaut riding a horse", 0
    keys = rows.keys()
    times = {key: [] for key in keys}
    pictures = {}
    for repeat in range(repeats):  # round-robin: every row sees the same stretch of machine load
        for key in keys:
            started = time.perf_counter()
            pictures[key] = rows.make(key, prompt, seed, size)
            times[key].append(time.perf_counter() - started)
            print(f"sd15 {size}px {key} repeat {repeat}: {times[key][-1]:.1f} s", flush=True)
    best = {key: min(v) for key, v in times.items()}
    out = {}
    for key, label, scheduler, steps, interval in (row for row in ROWS if row[0] in keys):
        label = label.replace("default", f"default ({rows.base.scheduler.upper()})") if scheduler is None else label
        scheduler = scheduler or rows.base.scheduler
        entry = {"label": label, "scheduler": scheduler, "steps": steps, "cache_interval": interval,
                 "seconds_per_image": round(best[key], 2), "speedup_vs_diffusers": round(best[ROWS[0][0]] / best[key], 2)}
        if scheduler == "lcm":
            entry["quality"] = NO_LCM  # a 4-step LCM picture from a non-LCM UNet says nothing
        elif key != ROWS[0][0]:
            entry.update(compare([pictures[ROWS[0][0]]], [pictures[key]]))
        out[key] = entry
        print(f"sd15 {key}: {json.dumps(entry)}", flush=True)
    return {"size": [size, size], "dtype": str(torch_dtype).removeprefix("torch."), "threads": 2,
            "repeats": repeats, "prompt": prompt, "seed": seed, "rows": out}


def write_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [(name, report[name]) for name in ("demo", "sd15_random_weights") if report.get(name)]
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 3.6), squeeze=False)
    for ax, (name, part) in zip(axes[0], parts):
        labels = [row["label"].replace(" + --cache-interval 3", "\n+ cache 3") for row in part["rows"].values()]
        values = [row["seconds_per_image"] for row in part["rows"].values()]
        bars = ax.barh(labels[::-1], values[::-1], color=(["#999", "#bbb", "#4a8", "#2a6", "#275"][-len(values):])[::-1])
        for bar, row in zip(bars, list(part["rows"].values())[::-1]):
            quality = row.get("adherence")
            if isinstance(quality, dict):
                note = f"adherence {quality['all_attributes']:.0%}"
            elif "psnr_vs_50_step_db" in row:
                note = f"PSNR {row['psnr_vs_50_step_db']['mean']} dB"
            else:
                note = "quality n/m" if row["scheduler"] == "lcm" else ""
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {bar.get_width():.2f} s  {note}",
                    va="center", fontsize=8)
        title = "demo model" if name == "demo" else "SD1.5 size, random weights"
        ax.set_title(f"{title}, {part['size'][0]} px: seconds per image", fontsize=10)
        ax.set_xlim(0, max(values) * 1.6)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"time to image on {report['machine']['cpu']} ({report['machine']['cores']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def quality_cell(row: dict) -> str:
    adherence = row.get("adherence")
    if isinstance(adherence, dict):
        return f"{adherence['all_attributes']:.2f} all attributes right ({adherence['images']} images)"
    if "psnr_vs_50_step_db" in row:
        return f"{row['psnr_vs_50_step_db']['mean']} dB, SSIM {row['ssim_vs_50_step']}"
    return adherence or row.get("quality") or "reference"


def write_table(report: dict, path: Path) -> None:
    """The README's time-to-image table: one row per recipe, both models side by side."""
    demo, sd15 = report.get("demo") or {"rows": {}}, report.get("sd15_random_weights") or {"rows": {}}
    lines = [f"| recipe | demo {demo.get('size', ['?'])[0]} px: s/image | demo: adherence | demo: PSNR/SSIM vs 50-step default "
             f"| SD1.5 random, {sd15.get('size', ['?'])[0]} px {sd15.get('dtype', '')}: s/image | SD1.5: PSNR/SSIM vs 50-step default |",
             "|---|---|---|---|---|---|"]
    for key, label, *_ in ROWS:
        d, s = demo["rows"].get(key), sd15["rows"].get(key)
        if not d and not s:
            continue
        label = (d or s)["label"] if key != ROWS[0][0] else "diffusers default, 50 steps (demo: DDIM; SD1.5: PNDM)"
        demo_time = f"{d['seconds_per_image']} ({d['speedup_vs_diffusers']}x)" if d else "-"
        demo_adherence = quality_cell({k: v for k, v in d.items() if k != "psnr_vs_50_step_db"}) if d else "-"
        demo_psnr = f"{d['psnr_vs_50_step_db']['mean']} dB, {d['ssim_vs_50_step']}" if d and "psnr_vs_50_step_db" in d else "-"
        sd_time = f"{s['seconds_per_image']} ({s['speedup_vs_diffusers']}x)" if s else "-"
        sd_quality = quality_cell(s) if s else "-"
        lines.append(f"| {label} | {demo_time} | {demo_adherence} | {demo_psnr} | {sd_time} | {sd_quality} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    from benchmarks.deepcache import cpu_name
    from ldm_cli.models.loading import quiet_library_logs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12 demo prompts, one SD1.5 round at 256 px")
    parser.add_argument("--images", type=int, default=24, help="demo prompt/seed pairs")
    parser.add_argument("--seed", type=int, default=2024, help="the prompt/seed draw of demo_adherence.py")
    parser.add_argument("--sd15-size", type=int, default=256, help="512 takes about 4x as long")
    parser.add_argument("--repeats", type=int, default=2, help="SD1.5 rounds (min kept)")
    parser.add_argument("--dtype", default="auto", help="SD1.5 weights dtype (ldm's --dtype; auto = bf16 on native-bf16 CPUs)")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-sd15", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeats = min(args.images, 12), 1
    quiet_library_logs()
    started = time.perf_counter()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    report = {"machine": {"cpu": cpu_name(), "avx512_bf16": "avx512_bf16" in flags, "cores": torch.get_num_threads(),
                          "torch": torch.__version__, "note": "shared 2-core machine: timings move +-15% between runs"},
              "quick": args.quick}
    previous = json.loads((RESULTS / "time_to_image.json").read_text()) if (RESULTS / "time_to_image.json").exists() else {}
    report["demo"] = previous.get("demo") if args.skip_demo else demo_rows(args.images, args.seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "time_to_image.json").write_text(json.dumps({**previous, **report}, indent=1) + "\n")  # kept if SD1.5 fails
    report["sd15_random_weights"] = (previous.get("sd15_random_weights") if args.skip_sd15
                                     else sd15_rows(args.sd15_size, args.repeats, args.dtype))
    report["total_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "time_to_image.json").write_text(json.dumps(report, indent=1) + "\n")
    write_chart(report, RESULTS / "time_to_image.png")
    write_table(report, RESULTS / "time_to_image.md")
    print(f"done in {report['total_s'] / 60:.1f} min: {RESULTS}/time_to_image.json, time_to_image.png", flush=True)


if __name__ == "__main__":
    main()
