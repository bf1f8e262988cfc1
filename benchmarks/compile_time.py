"""What `--compile` (torch.compile of the UNet, inductor) costs and buys at SD1.5 size on this CPU.

    PYTHONPATH=. .venv/bin/python -m benchmarks.compile_time [--size 256] [--variants default,freezing]

SD1.5's UNet (benchmarks/.cache/sd15-random: the shipped config, random weights), one guided call
(batch 2, as classifier-free guidance runs it) at --size px, in the dtype `--dtype auto` picks here.
For each inductor variant (default; freezing = torch._inductor.config.freezing, which folds the
weights into the graph and pre-packs them for oneDNN; max-autotune = mode="max-autotune", which
benchmarks GEMM templates while compiling), in two fresh processes sharing one empty inductor cache
dir (TORCHINDUCTOR_CACHE_DIR):
    cold   compile time (first compiled call minus one eager call), then eager and compiled calls
           interleaved (min of --repeats), max |difference| of the UNet output, and of the pixels of
           the x0 prediction decoded by the VAE (uint8)
    warm   a second process with the cache filled: its compile time (what a later `ldm generate
           --compile` pays, the FX graph / AOTAutograd caches being on by default in this torch)
From these: from how many 20-step images compiling pays, cold and warm.

Writes benchmarks/results/compile.json (--out NAME for another file).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def child(variant: str, size: int, dtype: str, repeats: int, phase: str) -> dict:
    import numpy as np
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from benchmarks.models import sd15_folder
    from ldm_cli.models.performance import use_sdpa

    torch.set_num_threads(2)
    if variant == "freezing":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    folder = sd15_folder()
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch_dtype).eval()
    use_sdpa(unet)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, size // 8, size // 8, generator=g).to(torch_dtype)
    text = torch.randn(2, 77, 768, generator=g).to(torch_dtype)
    t = torch.tensor(500)
    result = {"variant": variant, "phase": phase}
    with torch.no_grad():
        started = time.perf_counter()
        eager_out = unet(x, t, encoder_hidden_states=text, return_dict=False)[0]
        first_eager = time.perf_counter() - started
        compiled = torch.compile(unet, backend="inductor", dynamic=False,
                                 mode="max-autotune" if variant == "max-autotune" else None)
        started = time.perf_counter()
        compiled_out = compiled(x, t, encoder_hidden_states=text, return_dict=False)[0]
        first_compiled = time.perf_counter() - started
        result["first_compiled_call_s"] = round(first_compiled, 2)
        result["compile_s"] = round(first_compiled - first_eager, 2)
        if phase == "warm":
            return result
        eager_times, compiled_times = [], []
        for _ in range(repeats):  # interleaved: the shared machine's load hits both alike
            started = time.perf_counter()
            unet(x, t, encoder_hidden_states=text, return_dict=False)
            eager_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            compiled(x, t, encoder_hidden_states=text, return_dict=False)
            compiled_times.append(time.perf_counter() - started)
        result["eager_step_s"] = round(min(eager_times), 3)
        result["compiled_step_s"] = round(min(compiled_times), 3)
        result["speedup_per_step"] = round(min(eager_times) / min(compiled_times), 3)
        result["unet_output_max_abs_diff"] = float((eager_out.float() - compiled_out.float()).abs().max())
        # pixels: the x0 prediction of each output, decoded by the VAE (fp32)
        del compiled, unet
        scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
        alpha = scheduler.alphas_cumprod[500]
        vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
        use_sdpa(vae)
        pixels = []
        for eps in (eager_out, compiled_out):
            x0 = (x[1:].float() - (1 - alpha).sqrt() * eps[1:].float()) / alpha.sqrt()
            image = vae.decode(x0 / vae.config.scaling_factor).sample
            pixels.append(((image / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        result["pixel_max_abs_diff"] = int(np.abs(pixels[0].astype(int) - pixels[1].astype(int)).max())
        result["pixel_mean_abs_diff"] = round(float(np.abs(pixels[0].astype(int) - pixels[1].astype(int)).mean()), 4)
    return result


def run_child(args, variant: str, phase: str, cache_dir: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
    command = [sys.executable, "-m", "benchmarks.compile_time", "--child", phase, "--variants", variant,
               "--size", str(args.size), "--dtype", args.dtype, "--repeats", str(args.repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return {"variant": variant, "phase": phase, "error": done.stderr.strip().splitlines()[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def pays_from(compile_s: float, eager_step: float, compiled_step: float, steps: int = 20) -> int | None:
    saving = steps * (eager_step - compiled_step)
    return math.ceil(compile_s / saving) if saving > 0 else None


def main() -> None:
    from benchmarks.deepcache import cpu_name
    from ldm_cli.models.performance import cpu_has_native_bf16

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="bf16" if cpu_has_native_bf16() else "fp32")
    parser.add_argument("--variants", default="default,freezing", help="default, freezing, max-autotune")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="compile.json", help="results file name under benchmarks/results")
    parser.add_argument("--child", choices=("cold", "warm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.variants, args.size, args.dtype, args.repeats, args.child)))
        return
    import torch

    report = {"machine": {"cpu": cpu_name(), "cores": 2, "torch": torch.__version__,
                          "note": "shared 2-core machine: timings move +-15% between runs",
                          "load_average_at_start": [round(v, 2) for v in os.getloadavg()]},
              "unet": "SD1.5 (random weights), one guided call, batch 2", "size": args.size, "dtype": args.dtype,
              "variants": {}}
    for variant in args.variants.split(","):
        with tempfile.TemporaryDirectory(prefix="ldm-inductor-") as cache_dir:
            cold = run_child(args, variant, "cold", cache_dir)
            print(f"{variant} cold: {json.dumps(cold)}", flush=True)
            warm = run_child(args, variant, "warm", cache_dir) if "error" not in cold else {}
            print(f"{variant} warm: {json.dumps(warm)}", flush=True)
        entry = {"cold": cold, "warm": warm}
        if "compiled_step_s" in cold:
            entry["images_of_20_steps_to_pay_cold"] = pays_from(cold["compile_s"], cold["eager_step_s"], cold["compiled_step_s"])
            if "compile_s" in warm:
                entry["images_of_20_steps_to_pay_warm_cache"] = pays_from(
                    max(warm["compile_s"], 0), cold["eager_step_s"], cold["compiled_step_s"])
        report["variants"][variant] = entry
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
