"""`--backend openvino` against ldm's torch UNet: seconds per step, the picture, the one-time export.

    PYTHONPATH=. .venv/bin/python -m benchmarks.openvino_backend [--size 512] [--repeats 1]

SD1.5's architecture with random weights (benchmarks/models.sd15_folder), 512 px, DDIM, CFG 7.5,
torch's default threads (OpenVINO gets as many). Variants, all in one process:

    torch fp32        the reference picture
    torch auto        what `ldm generate` runs by default (bf16 on a CPU with native bf16)
    openvino auto     `--backend openvino`: OpenVINO's default CPU precision (bf16 where native)
    openvino fp32     `--backend openvino --dtype fp32`

The OpenVINO variants wrap the torch UNet of their precision's dtype (bf16 or fp32, shared with the
torch variant of that dtype) as `ldm generate` does (models/openvino_unet.py: unet_identity +
OpenVinoUNet; text encoder and VAE stay torch in that dtype), exporting into a fresh cache folder so the export is really made
and timed; a second stand-in over the same cache then measures what a later process pays (read
the IR and compile, no export). s/step is (time of a 6-step image - time of a 2-step image) / 4,
each timed inside this process, so text encoding, VAE decode and PNG work cancel; rounds run
the variants interleaved and keep the min. Each variant's 6-step picture is compared with torch
fp32's (PSNR, SSIM). Writes benchmarks/results/openvino_backend.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).parent / ".cache" / "ldm-cache-openvino-bench"
SEED, PROMPT, SCHEDULER = 7, "a lighthouse at dusk, oil painting", "ddim"


def load(folder: Path, dtype: str):
    """Components as `ldm generate --dtype DTYPE` loads them (torch backend)."""
    from ldm_cli.models.performance import PerformanceSettings
    from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
    from ldm_cli.pipeline.txt2img import load_model

    settings = GenerateSettings(prompts=(PROMPT,), model=ModelSettings(model=str(folder), dtype=dtype),
                                performance=PerformanceSettings())
    components, device, torch_dtype, seconds = load_model(settings)
    return components, torch_dtype, seconds


def openvino_variant(loaded: dict, dtype: str, folder: Path):
    """Torch components of the precision's dtype with the UNet swapped for OpenVINO's, as load_model
    does it (sharing the torch variant's weights: one copy in memory)."""
    from ldm_cli.models.backends import openvino_precision, torch_dtype_for
    from ldm_cli.models.openvino_unet import OpenVinoUNet, unet_identity

    precision, reason = openvino_precision(dtype)
    torch_dtype = torch_dtype_for(precision)
    components = next((c for c, d in loaded.values() if d == torch_dtype), None)
    if components is None:  # no torch variant of that dtype (torch auto kept fp32 for a narrow UNet)
        components = load(folder, "bf16" if precision == "bf16" else "fp32")[0]
    unet = OpenVinoUNet(components.unet, unet_identity(components, []), precision, reason, log=print)
    return replace(components, unet=unet), torch_dtype, precision


def image(components, torch_dtype, size: int, steps: int):
    from ldm_cli.pipeline.config import GenerateSettings
    from ldm_cli.pipeline.generation import TextToImage
    from ldm_cli.pipeline.txt2img import resolve_plan

    settings = GenerateSettings(prompts=(PROMPT,), steps=steps, guidance=7.5, height=size, width=size, scheduler=SCHEDULER)
    plan = resolve_plan(settings, components)
    result = TextToImage(components, "cpu", torch_dtype).generate(PROMPT, SEED, plan)
    return result.seconds, result.pixels


def cached_load_seconds(ov_components, torch_dtype, size: int) -> dict:
    """A second stand-in over the same cache: what a later process pays before its first step."""
    from ldm_cli.models.openvino_unet import OpenVinoUNet

    first = ov_components.unet
    again = OpenVinoUNet(first.unet, first.identity, first.precision, first.reason, log=print)
    image(replace(ov_components, unet=again), torch_dtype, size, 1)
    return {"exports": again.exports, "read_and_compile_s": round(again.compile_seconds, 2)}


def main() -> None:
    import torch

    from benchmarks.deepcache import cpu_name
    from benchmarks.models import sd15_folder, tiny_folder
    from ldm_cli.pipeline.codec.quality import psnr, ssim

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds of 2- and 6-step images (min kept)")
    parser.add_argument("--model", choices=("sd15", "tiny"), default="sd15", help="tiny: a quick check of the script")
    args = parser.parse_args()
    shutil.rmtree(CACHE, ignore_errors=True)
    os.environ["LDM_CACHE_DIR"] = str(CACHE)  # a fresh cache: the export below is real
    folder = sd15_folder() if args.model == "sd15" else tiny_folder()
    flags = Path("/proc/cpuinfo").read_text()
    report = {"machine": {"cpu": cpu_name(), "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
                          "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "load_average_start": list(os.getloadavg()),
                          "note": "shared 2-core machine: timings move +-15% between runs"},
              "settings": {"model": "SD1.5 architecture, random weights" if args.model == "sd15" else "tiny", "size": args.size, "scheduler": SCHEDULER,
                           "guidance": 7.5, "seed": SEED, "steps_timed": [2, 6], "repeats": args.repeats}}
    import openvino

    report["machine"]["openvino"] = openvino.__version__
    fp32, fp32_dtype, _ = load(folder, "fp32")
    auto, auto_dtype, _ = load(folder, "auto")
    variants = {"torch fp32": (fp32, fp32_dtype), "torch auto": (auto, auto_dtype)}
    exports = {}
    for name, dtype in (("openvino auto", "auto"), ("openvino fp32", "fp32")):
        components, torch_dtype, precision = openvino_variant(variants, dtype, folder)
        started = time.perf_counter()
        image(components, torch_dtype, args.size, 1)  # the first call exports and compiles
        first = time.perf_counter() - started
        exports[name] = {"precision": precision, "export_s": round(components.unet.export_seconds, 1),
                         "compile_after_export_s": round(components.unet.compile_seconds, 1),
                         "first_1_step_image_s": round(first, 1),
                         "ir_bytes": sum(p.stat().st_size for p in CACHE.rglob("unet.bin") if _precision(p) == precision),
                         "second_process": cached_load_seconds(components, torch_dtype, args.size)}
        print(f"{name}: {json.dumps(exports[name])}", flush=True)
        variants[name] = (components, torch_dtype)
    report["variants"] = {name: {"torch_dtype": str(d).replace("torch.", ""), **exports.get(name, {})}
                          for name, (_, d) in variants.items()}
    times = {name: {2: [], 6: []} for name in variants}
    pictures = {}
    for _ in range(args.repeats):  # interleaved: the machine's drift hits every variant alike
        for name, (components, torch_dtype) in variants.items():
            for steps in (2, 6):
                seconds, pixels = image(components, torch_dtype, args.size, steps)
                times[name][steps].append(seconds)
                if steps == 6:
                    pictures[name] = pixels
            print(f"{name}: 2 steps {times[name][2][-1]:.1f} s, 6 steps {times[name][6][-1]:.1f} s", flush=True)
    for name in variants:
        step = (min(times[name][6]) - min(times[name][2])) / 4
        row = report["variants"][name]
        row.update(s_per_step=round(step, 3), image_2_steps_s=round(min(times[name][2]), 2),
                   image_6_steps_s=round(min(times[name][6]), 2))
        if name != "torch fp32":
            db = psnr(pictures["torch fp32"], pictures[name])
            row["vs_torch_fp32_picture"] = {"psnr_db": round(db, 2) if np.isfinite(db) else "inf (identical)",
                                            "ssim": round(ssim(pictures["torch fp32"], pictures[name]), 4),
                                            "max_abs_diff": int(np.abs(pictures["torch fp32"].astype(int) - pictures[name].astype(int)).max())}
    auto_step = report["variants"]["torch auto"]["s_per_step"]
    for name, row in report["variants"].items():
        row["speedup_vs_torch_auto"] = round(auto_step / row["s_per_step"], 3)
    report["machine"]["load_average_end"] = list(os.getloadavg())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"openvino_backend{'' if args.model == 'sd15' else '_tiny'}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["variants"], indent=1))
    shutil.rmtree(CACHE, ignore_errors=True)  # several GB of IR


def _precision(bin_path: Path) -> str:
    return json.loads((bin_path.parent / "key.json").read_text())["precision"]


if __name__ == "__main__":
    main()
