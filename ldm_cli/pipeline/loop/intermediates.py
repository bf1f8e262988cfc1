"""--save-intermediates: the image as it forms, step by step, plus one contact sheet.

"preview" maps latents to RGB with a fitted linear map (almost free); "exact" runs the VAE
decoder on every saved step (slow, faithful).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ldm_cli.pipeline.codec import latents as latent_ops
from ldm_cli.files.images import contact_sheet, free_path, save_png
from ldm_cli.pipeline.loop.sampling import StepInfo, normalized_latents


class IntermediateRecorder:
    """An on_step callback that keeps every `every`-th step (and the last) as an RGB frame."""

    def __init__(self, vae, mode: str, every: int, preview_map=None):
        self.vae = vae
        self.mode = mode
        self.every = every
        self.preview_map = preview_map
        self.frames: list[tuple[int, np.ndarray]] = []

    def __call__(self, info: StepInfo) -> None:
        number = info.index + 1
        if number % self.every and number != info.total:
            return
        x = normalized_latents(info)
        if self.mode == "exact":
            frame = latent_ops.to_uint8(latent_ops.decode(self.vae, x))[0]
        else:
            factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
            frame = latent_ops.preview(x, self.preview_map, factor)
        self.frames.append((number, frame))

    def write_beside(self, image_path: Path) -> Path:
        """Write frames to <image stem>-steps/ with a contact sheet; return the folder."""
        folder = free_path(image_path.with_name(f"{image_path.stem}-steps"))
        folder.mkdir(parents=True)
        for number, frame in self.frames:
            save_png(frame, folder / f"step-{number:04d}.png")
        save_png(contact_sheet([frame for _, frame in self.frames]), folder / "sheet.png")
        return folder
