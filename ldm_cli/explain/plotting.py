"""Pictures for the explain commands, drawn with matplotlib's Agg backend (no display needed).

matplotlib is imported inside each function, so `ldm --help` never pays for it. Every figure is
written through files.images.write_new_file: atomically, and never over an existing file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ldm_cli.files.images import write_new_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    try:
        return write_new_file(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    finally:
        plt.close(fig)


def schedule_figure(view, path: Path) -> Path:
    """beta_t, abar_t and log-SNR(t) over t, with the sampler's timesteps marked."""
    plt = _pyplot()
    t = np.arange(len(view.alphas_cumprod))
    log_snr = np.array(view.log_snr)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    panels = [(view.betas, r"$\beta_t$", "log"), (view.alphas_cumprod, r"$\bar\alpha_t$", "linear"),
              (log_snr, r"log-SNR$(t) = \log \bar\alpha_t / (1-\bar\alpha_t)$", "linear")]
    visited = [v for v in view.timesteps if 0 <= v < len(t)]
    for ax, (values, title, scale) in zip(axes, panels):
        values = np.asarray(values, dtype=float)
        ax.plot(t, values, color="#1f5fa8", lw=1.6)
        ax.scatter(visited, values[visited], color="#d62728", s=14, zorder=3, label=f"{view.scheduler}, {view.steps} steps")
        ax.set_yscale(scale)
        ax.set_title(title)
        ax.set_xlabel("training timestep t")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"noise schedule (T = {len(t)}); red: the timesteps {view.scheduler} visits", fontsize=10, y=1.04)
    return _save(fig, path)


def forward_figure(image: np.ndarray, rows, channel_row, path: Path) -> Path:
    """Top: the image and decoded x_t for each t with its SNR. Bottom: x_0's latent channels."""
    plt = _pyplot()
    columns = max(len(rows) + 1, len(channel_row))
    fig, axes = plt.subplots(2, columns, figsize=(1.9 * columns, 4.4))
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image", fontsize=9)
    for ax, (noised, pixels) in zip(axes[0, 1:], rows):
        ax.imshow(pixels)
        snr = noised.snr
        ax.set_title(f"t = {noised.t}\nSNR = {_short(snr)}", fontsize=9)
    for index, (ax, channel) in enumerate(zip(axes[1], channel_row)):
        limit = float(np.abs(channel).max()) or 1.0
        ax.imshow(channel, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"x_0 channel {index}", fontsize=9)
    fig.suptitle(r"forward process $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$, decoded by the VAE", fontsize=10)
    return _save(fig, path)


def _short(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"


def elbo_figure(estimate, prompt: str, path: Path) -> Path:
    """Each sample's weighted term w_t ||eps - eps_theta||^2 (bits/dim) and its error, over t."""
    plt = _pyplot()
    t = np.array([row["t"] for row in estimate.per_timestep])
    term = np.array([row["term_bits_per_dim"] for row in estimate.per_timestep])
    mse = np.array([row["mse"] for row in estimate.per_timestep])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    axes[0].scatter(t, np.maximum(term, 1e-12), s=12, color="#1f5fa8")
    axes[0].set_yscale("log")
    axes[0].set_title(r"$L_{t-1}$ estimate: $w_t\,\|\epsilon-\epsilon_\theta\|^2$ / (d ln 2)  [bits/dim]", fontsize=9)
    axes[1].scatter(t, mse, s=12, color="#d62728")
    axes[1].set_yscale("log")
    axes[1].set_title(r"$\|\epsilon-\epsilon_\theta(x_t,t,c)\|^2$ / d", fontsize=9)
    for ax in axes:
        ax.set_xlabel("timestep t")
        ax.grid(alpha=0.3)
    fig.suptitle(f"\"{prompt}\": {estimate.bits_per_dim:.4f} ± {estimate.stderr:.4f} bits/dim "
                 f"({estimate.samples} samples)", fontsize=10, y=1.04)
    return _save(fig, path)


def classify_figure(image: np.ndarray, ranking, path: Path, top: int = 12) -> Path:
    """The image beside its best labels: each one's paired difference to the winner, with its standard error."""
    plt = _pyplot()
    unit = "mean ||eps - eps_theta||^2 per dim" if ranking.weighting == "uniform" else "bits/dim"
    rows = ranking.labels[:top][::-1]
    fig, (ax_image, ax) = plt.subplots(1, 2, figsize=(11, 0.32 * len(rows) + 1.9), gridspec_kw={"width_ratios": [1, 2.4]})
    ax_image.imshow(image)
    ax_image.axis("off")
    ax_image.set_title(f"best: {ranking.labels[0]['label']}", fontsize=9)
    colours = ["#2ca02c" if r is ranking.labels[0] else ("#bbbbbb" if r["eliminated"] else "#1f5fa8") for r in rows]
    ax.barh(range(len(rows)), [r["difference"] for r in rows], xerr=[r["difference_stderr"] or 0 for r in rows],
            color=colours, ecolor="#444444", capsize=2)
    ax.set_yticks(range(len(rows)), [r["label"] + (f"  (dropped at {r['samples']})" if r["eliminated"] else "") for r in rows],
                  fontsize=8)
    ax.yaxis.tick_right()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"negative ELBO minus the best label's, {unit} (paired samples; grey: dropped early)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def attention_figure(image: np.ndarray, maps, path: Path) -> Path:
    """The image, then one panel per word: its attention map (scaled to its own max) over the image."""
    import torch

    from ldm_cli.explain.attention import upsample

    plt = _pyplot()
    count = len(maps.words) + 1
    columns = min(count, 6)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.3 * rows))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    size = image.shape[:2]
    gray = image.astype(np.float32).mean(axis=2)
    for ax, word, word_map in zip(axes[1:], maps.words, maps.word_maps):
        heat = upsample(torch.as_tensor(word_map), size).numpy()
        ax.imshow(gray, cmap="gray", vmin=0, vmax=255)
        ax.imshow(heat / max(float(heat.max()), 1e-12), cmap="jet", alpha=0.55, vmin=0, vmax=1)
        ax.set_title(word, fontsize=10)
    return _save(fig, path)
