"""results.json -> chart.png and the README's Markdown table.

    python -m benchmarks.report            # redraw from benchmarks/results/results.json
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
BARS = [  # (key in step_s, label)
    ("diffusers_fp32", "diffusers fp32"),
    ("ldm_fp32", "ldm fp32"),
    ("ldm_fp32_g1", "ldm g=1"),
    ("ldm_fp32_channels_last", "ldm channels-last"),
    ("ldm_fp32_classic_attention", "ldm classic attn"),
    ("ldm_fp32_compile", "ldm --compile"),
    ("ldm_bf16", "ldm bf16"),
]
GIB = 2**30


def write_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    names = list(models)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    _step_panel(axes[0], models, names)
    _memory_panel(axes[1], models, names)
    _flops_panel(axes[2], results, models, names)
    m = results["machine"]
    fig.suptitle(f"ldm vs diffusers StableDiffusionPipeline — {m['cpu']}, {m['cores']} threads, torch {m['torch']}"
                 f" (no GPU measured)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _step_panel(ax, models, names):
    width = 0.8 / len(BARS)
    for i, (key, label) in enumerate(BARS):
        values = [models[n]["step_s"].get(key, 0) / models[n]["step_s"]["diffusers_fp32"] for n in names]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names)
    ax.set_ylabel("seconds per step / diffusers fp32 (lower is faster)")
    ax.set_yscale("log")
    ax.set_title("time per denoising step (guided)")
    ax.legend(fontsize=7)


def _memory_panel(ax, models, names):
    ldm = [models[n]["fresh_process"]["ldm"]["peak_rss_bytes"] / GIB for n in names]
    ref = [models[n]["fresh_process"]["diffusers"]["peak_rss_bytes"] / GIB for n in names]
    est = [models[n]["fresh_process"]["estimate_bytes"] / GIB for n in names]
    xs = range(len(names))
    ax.bar([x - 0.27 for x in xs], ref, 0.27, label="diffusers (fresh process)")
    ax.bar(list(xs), ldm, 0.27, label="ldm generate (fresh process)")
    ax.bar([x + 0.27 for x in xs], est, 0.27, label="ldm --dry-run estimate")
    labels = list(names)
    for n in names:
        tiling = models[n].get("vae_tiling")
        if tiling:
            x = len(labels)
            ax.bar([x - 0.15], [tiling["untiled"]["peak_rss_bytes"] / GIB], 0.3, color="grey", label="VAE decode")
            ax.bar([x + 0.15], [tiling["tiled"]["peak_rss_bytes"] / GIB], 0.3, color="silver", label="VAE decode tiled")
            labels.append(f"{n} VAE {tiling['size']}px")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("peak RSS, GiB")
    ax.set_title("peak memory (CPU)")
    ax.legend(fontsize=7)


def _flops_panel(ax, results, models, names):
    peak = results["machine"]["matmul_fp32_gflops"]
    achieved = [models[n]["achieved_gflops_fp32"] for n in names]
    ax.bar(names, achieved, color="tab:green", label="ldm UNet fp32, achieved")
    ax.axhline(peak, color="tab:red", linestyle="--", label=f"fp32 matmul peak {peak:.0f}")
    ax.axhline(results["machine"]["matmul_bf16_gflops"], color="tab:purple", linestyle=":",
               label=f"bf16 matmul peak {results['machine']['matmul_bf16_gflops']:.0f} (no native bf16)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("achieved vs this CPU's matmul peak")
    ax.legend(fontsize=7)


def table(results: dict) -> str:
    rows = [
        "| model (size, steps, threads) | s/step diffusers fp32 | s/step ldm fp32 | ldm/diffusers step | fresh `ldm generate` / diffusers script | peak RSS ldm / diffusers | ldm bf16 speed-up vs diffusers fp32 (PSNR) | g=1 step | channels-last step | classic attention step | `--compile` step (first image) | `--save-intermediates` preview cost | GFLOP/s (% of fp32 matmul peak) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        s, fp = r["step_s"], r["fresh_process"]
        base = s["ldm_fp32"]
        comp = r.get("compile")
        rows.append(
            f"| {name} ({r['size']}px, {r['steps']} steps, {r.get('threads', '?')} thr) "
            f"| {s['diffusers_fp32']:.3f} | {s['ldm_fp32']:.3f} "
            f"| **{r['ratio_ldm_over_diffusers_step']:.2f}** "
            f"| {fp['ldm']['wall_s']:.1f} s / {fp['diffusers']['wall_s']:.1f} s = {r['ratio_ldm_over_diffusers_fresh_process']:.2f} "
            f"| {fp['ldm']['peak_rss_bytes'] / GIB:.2f} / {fp['diffusers']['peak_rss_bytes'] / GIB:.2f} GiB "
            f"| {r['bf16_speedup_vs_diffusers_fp32']:.2f}x ({r['bf16_psnr_db']:.1f} dB at {r['bf16_psnr_size']}px) "
            f"| {s['ldm_fp32_g1'] / base:.2f}x | {s['ldm_fp32_channels_last'] / base:.2f}x "
            f"| {s['ldm_fp32_classic_attention'] / base:.2f}x "
            f"| {_compile_cell(comp)} | {_preview_cell(r['preview'])} "
            f"| {r['achieved_gflops_fp32']:.0f} ({100 * r['fraction_of_matmul_peak_fp32']:.0f}%) |"
        )
    m = results["machine"]
    rows.append("")
    rows.append(
        f"Machine: {m['cpu']}, {m['cores']} threads, torch {m['torch']}; avx512_bf16: {m['avx512_bf16']}, "
        f"AMX: {m['amx_bf16']}; matmul peak fp32 {m['matmul_fp32_gflops']:.0f} GFLOP/s, "
        f"bf16 {m['matmul_bf16_gflops']:.0f} GFLOP/s. `ldm --help`: {results['help_s']:.2f} s. "
        "Variant columns are relative to ldm fp32 measured in the same block (lower is faster). "
        "No GPU was available: CUDA fp16, `--offload` and GPU memory are not measured."
    )
    return "\n".join(rows) + "\n"


def _preview_cell(p) -> str:
    return f"{100 * p['overhead_fraction_50_steps']:.1f}% at 50 steps ({p['fit_s']:.2f} s once + {1000 * p['frame_s']:.1f} ms/step)"


def _compile_cell(comp) -> str:
    if not comp:
        return "not run (compile takes minutes here)"
    return f"{comp['step_s'] / comp['eager_step_s_same_clock']:.2f}x ({comp['first_image_s']:.0f} s)"


def write_table(results: dict, path: Path) -> None:
    path.write_text(table(results))


if __name__ == "__main__":
    data = json.loads((RESULTS / "results.json").read_text())
    write_chart(data, RESULTS / "chart.png")
    write_table(data, RESULTS / "table.md")
