"""`make bench`: ldm against diffusers' StableDiffusionPipeline, and against the machine's matmul peak.

    python -m benchmarks.run                   # tiny, demo (when built), SD1.5 size: 23 min on a busy 2-core CPU
    python -m benchmarks.run --sizes tiny      # about two minutes

For each model size, on the same components, settings and seed, in one run:
    1. fresh process: `ldm generate` vs a StableDiffusionPipeline script from the shell
       (imports + model load + sampling + decode), peak RSS of each, and the two pictures compared
    2. in process: seconds per denoising step, ldm vs diffusers (interleaved, best of `repeats`)
    3. ldm's fast paths: g <= 1 (no unconditional pass), channels-last, classic attention (what SDPA
       saves), bf16, torch.compile (compile time, steady state, parity), preview intermediates cost
    4. UNet FLOPs per guided step (torch's FlopCounterMode) -> achieved FLOP/s vs matmul peak
Writes benchmarks/results/results.json, chart.png and table.md (the README table).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import measure
from benchmarks.models import ModelCase, cases
from benchmarks.report import write_chart, write_table
from ldm_cli.models.loading import load_components, quiet_library_logs, read_scheduler_config, resolve_source
from ldm_cli.models.performance import PerformanceSettings, apply_fast_paths, compile_unet, use_classic_attention, use_sdpa
from ldm_cli.pipeline.loop.schedulers import name_for_class

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,demo,sd15", help="comma-separated: tiny, demo, sd15")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    quiet_library_logs()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {"machine": machine(), "help_s": measure.help_seconds(), "models": previous_models(args.out)}
    say(f"ldm --help: {results['help_s']:.3f} s; matmul peak fp32 {results['machine']['matmul_fp32_gflops']:.0f} "
        f"GFLOP/s, bf16 {results['machine']['matmul_bf16_gflops']:.0f} GFLOP/s")
    default_threads = torch.get_num_threads()
    for case in cases(set(args.sizes.split(","))):
        torch.set_num_threads(case.threads or default_threads)
        say(f"== {case.name}: {case.size}x{case.size}, {case.steps} steps, {torch.get_num_threads()} threads")
        results["models"][case.name] = bench_case(case, results["machine"]["matmul_fp32_gflops"] * 1e9)
        results["models"][case.name]["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        save(results, args.out)
    results["total_s"] = time.perf_counter() - started
    save(results, args.out)
    write_chart(results, args.out / "chart.png")
    write_table(results, args.out / "table.md")
    say(f"done in {results['total_s'] / 60:.1f} min: {args.out}/results.json, chart.png, table.md")


def previous_models(out: Path) -> dict:
    """Sizes not re-run this time keep their last results (each size's comparison is within one run)."""
    try:
        return json.loads((out / "results.json").read_text())["models"]
    except (OSError, ValueError, KeyError):
        return {}


def machine() -> dict:
    flags = _cpu_flags()
    return {
        "cpu": _cpu_name(),
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "avx512f": "avx512f" in flags,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "matmul_fp32_gflops": measure.matmul_peak(torch.float32, 4096) / 1e9,
        "matmul_bf16_gflops": measure.matmul_peak(torch.bfloat16, 2048) / 1e9,
    }


def bench_case(case: ModelCase, peak_flops: float) -> dict:
    scheduler = name_for_class(read_scheduler_config(case.folder).get("_class_name", ""))
    r = {"size": case.size, "steps": case.steps, "variant_steps": case.variant_steps, "scheduler": scheduler,
         "threads": torch.get_num_threads()}
    r["fresh_process"] = fresh_processes(case)
    say(f"  fresh process: ldm {r['fresh_process']['ldm']['wall_s']:.1f} s, "
        f"diffusers {r['fresh_process']['diffusers']['wall_s']:.1f} s")

    components = load_components(resolve_source(str(case.folder)), "cpu", torch.float32)
    apply_fast_paths(components, "cpu", PerformanceSettings())
    latent = case.size // 8
    r["unet_flops_per_guided_step"] = measure.unet_flops(components.unet, latent, 2, torch.float32)

    ldm_times, ref_times = [], []
    for _ in range(case.repeats):  # interleaved, so load from other processes hits both alike
        ldm_times.append(measure.ldm_step_seconds(components, torch.float32, case.size, case.steps, scheduler))
        ref_times.append(measure.diffusers_step_seconds(components, case.size, case.steps, scheduler))
    r["step_s"] = {"diffusers_fp32": min(ref_times), "ldm_fp32": min(ldm_times)}
    r["step_s_all"] = {"diffusers_fp32": ref_times, "ldm_fp32": ldm_times}
    say(f"  per step: ldm {min(ldm_times):.4f} s, diffusers {min(ref_times):.4f} s")
    r["step_s"].update(variants(case, components, scheduler))
    r["preview"] = preview_cost(components, latent, r["step_s"]["ldm_fp32"], case.steps)
    r["bf16_psnr_db"], r["bf16_psnr_size"] = bf16_psnr(case, components, scheduler), case.psnr_size
    if case.compile:
        r["compile"] = compiled(case, scheduler, components)
        r["step_s"]["ldm_fp32_compile"] = r["compile"]["step_s"]
    if case.name == "sd15":
        r["vae_tiling"] = vae_tiling_memory(case)
    r.update(derived(r, peak_flops))
    return r


def fresh_processes(case: ModelCase) -> dict:
    """`ldm generate` and the diffusers script from the shell, interleaved, best wall time of `repeats`.

    Both start with the weights in the OS page cache and ldm's weight-hash cache filled, as on a
    user's second run of a model (the first run of any tool also pays the disk read; ldm also
    hashes the weights once for the PNG provenance record).
    """
    from PIL import Image

    warm_up(case.folder)
    runs = {"ldm": [], "diffusers": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = ["--steps", str(case.e2e_steps), "--seed", "0"]
        for i in range(case.repeats):
            runs["ldm"].append(measure.run_measured(
                [sys.executable, "-m", "ldm_cli", "generate", measure.PROMPT, "--model", str(case.folder),
                 "--dim", str(case.size), "--out", str(tmp / f"ldm{i}.png"), "--json", "--device", "cpu",
                 "--dtype", "fp32", *common], tmp, case.threads))
            runs["diffusers"].append(measure.run_measured(
                [sys.executable, "-m", "benchmarks.reference_generate", str(case.folder), measure.PROMPT,
                 "--size", str(case.size), "--out", str(tmp / f"ref{i}.png"), *common], tmp, case.threads))
        a, b = (np.asarray(Image.open(tmp / name).convert("RGB"), dtype=int) for name in ("ldm0.png", "ref0.png"))
    best = {name: min(found, key=lambda run: run["wall_s"]) for name, found in runs.items()}
    best["ldm"]["report"] = {k: best["ldm"]["report"].get(k) for k in ("timings", "seconds")}
    return {**best, "wall_s_all": {name: [run["wall_s"] for run in found] for name, found in runs.items()},
            "max_pixel_diff": int(np.abs(a - b).max()), "estimate_bytes": dry_run_estimate(case)}


def warm_up(folder: Path) -> None:
    """Read every weight file once (page cache) and fill ldm's hash cache."""
    from ldm_cli.files.hashing import sha256_files

    for path in sorted(folder.glob("*/*.safetensors")):
        sha256_files([path])
        with open(path, "rb") as handle:
            while handle.read(1 << 26):
                pass


def dry_run_estimate(case: ModelCase) -> int:
    from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
    from ldm_cli.pipeline.dry_run import describe

    settings = GenerateSettings(prompts=("x",), steps=case.e2e_steps, height=case.size, width=case.size,
                                model=ModelSettings(model=str(case.folder), device="cpu", dtype="fp32"))
    return describe(settings)["memory"]["peak_bytes"]


def variants(case: ModelCase, components, scheduler) -> dict:
    """ldm's fast paths, each a loop of variant_steps on the same components (restored after),
    compared with the best ldm fp32 time of the interleaved comparison just before."""
    steps, size, unet = case.variant_steps, case.size, components.unet
    out = {"ldm_fp32_g1": measure.ldm_step_seconds(components, torch.float32, size, steps, scheduler, guidance=1.0)}
    unet.to(memory_format=torch.channels_last)
    out["ldm_fp32_channels_last"] = measure.ldm_step_seconds(components, torch.float32, size, steps, scheduler)
    unet.to(memory_format=torch.contiguous_format)
    use_classic_attention(unet, components.vae)
    out["ldm_fp32_classic_attention"] = measure.ldm_step_seconds(components, torch.float32, size, steps, scheduler)
    use_sdpa(unet, components.vae)
    say("  variants: " + ", ".join(f"{k} {v:.4f}" for k, v in out.items()))
    bf16 = load_components(resolve_source(str(case.folder)), "cpu", torch.bfloat16)
    apply_fast_paths(bf16, "cpu", PerformanceSettings())
    out["ldm_bf16"] = measure.ldm_step_seconds(bf16, torch.bfloat16, size, steps, scheduler)
    say(f"  bf16: {out['ldm_bf16']:.4f} s per step")
    return out


def bf16_psnr(case: ModelCase, components, scheduler) -> float:
    """The same picture in bf16 and fp32 (ldm, full pipeline with decode), compared by PSNR."""
    steps = max(case.steps, 2)
    fp32 = measure.ldm_image(components, torch.float32, case.psnr_size, steps, scheduler)
    bf16 = load_components(resolve_source(str(case.folder)), "cpu", torch.bfloat16)
    apply_fast_paths(bf16, "cpu", PerformanceSettings())
    value = measure.psnr(fp32, measure.ldm_image(bf16, torch.bfloat16, case.psnr_size, steps, scheduler))
    say(f"  bf16 vs fp32 PSNR {value:.1f} dB at {case.psnr_size}px")
    return value


def compiled(case: ModelCase, scheduler, reference_components) -> dict:
    """--compile: one-time compile cost, steady-state step time (no hook), parity with the reference."""
    components = load_components(resolve_source(str(case.folder)), "cpu", torch.float32)
    apply_fast_paths(components, "cpu", PerformanceSettings())
    compile_unet(components.unet)
    started = time.perf_counter()
    image = measure.ldm_image(components, torch.float32, case.size, case.steps, scheduler)  # compiles here
    first = time.perf_counter() - started
    steady = min(measure.ldm_step_seconds(components, torch.float32, case.size, case.steps, scheduler, hook=False)
                 for _ in range(case.repeats))
    eager = measure.ldm_step_seconds(reference_components, torch.float32, case.size, case.steps, scheduler, hook=False)
    reference = measure.reference_image(reference_components, case.size, case.steps, scheduler)
    result = {"first_image_s": first, "step_s": steady, "eager_step_s_same_clock": eager,
              "max_pixel_diff_vs_diffusers": int(np.abs(image.astype(int) - reference.astype(int)).max())}
    say(f"  compile: first image {first:.1f} s, then {steady:.4f} s per step (eager {eager:.4f})")
    return result


def preview_cost(components, latent: int, step_s: float, steps: int) -> dict:
    """--save-intermediates preview: fitting the map once plus one cheap frame per step, vs the loop."""
    from ldm_cli.pipeline.loop.intermediates import IntermediateRecorder
    from ldm_cli.pipeline.codec.latents import fit_preview_map
    from ldm_cli.pipeline.loop.sampling import StepInfo
    from ldm_cli.pipeline.loop.schedulers import build_scheduler

    started = time.perf_counter()
    preview_map = fit_preview_map(components.vae)
    fit = time.perf_counter() - started
    recorder = IntermediateRecorder(components.vae, "preview", 1, preview_map)
    scheduler = build_scheduler("pndm", components.scheduler_config)
    x = torch.randn(1, components.unet.config.in_channels, latent, latent)
    started = time.perf_counter()
    for i in range(20):
        recorder(StepInfo(i, 20, 0, x, scheduler))
    frame = (time.perf_counter() - started) / 20
    loop = step_s * steps
    return {"fit_s": fit, "frame_s": frame, "overhead_fraction": (fit + frame * steps) / loop,
            "overhead_fraction_50_steps": (fit + frame * 50) / (step_s * 50)}


def vae_tiling_memory(case: ModelCase, size: int = 768) -> dict:
    out = {"size": size}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("untiled", []), ("tiled", ["--tiling"])):
            run = measure.run_measured([sys.executable, "-m", "benchmarks.vae_decode", str(case.folder),
                                        "--size", str(size), *extra], Path(tmp))
            out[name] = {"peak_rss_bytes": run["peak_rss_bytes"], "decode_s": run["report"]["decode_s"]}
    say(f"  VAE decode {size}px peak RSS: untiled {out['untiled']['peak_rss_bytes'] / 2**30:.2f} GiB, "
        f"tiled {out['tiled']['peak_rss_bytes'] / 2**30:.2f} GiB")
    return out


def derived(r: dict, peak: float) -> dict:
    s = r["step_s"]
    achieved = r["unet_flops_per_guided_step"] / s["ldm_fp32"]
    return {
        "ratio_ldm_over_diffusers_step": s["ldm_fp32"] / s["diffusers_fp32"],
        "ratio_ldm_over_diffusers_fresh_process": r["fresh_process"]["ldm"]["wall_s"] / r["fresh_process"]["diffusers"]["wall_s"],
        "bf16_speedup_vs_diffusers_fp32": s["diffusers_fp32"] / s["ldm_bf16"],
        "achieved_gflops_fp32": achieved / 1e9,
        "fraction_of_matmul_peak_fp32": achieved / peak,
    }


def save(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def say(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    main()
