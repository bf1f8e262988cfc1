"""Validation images during training: fixed prompts and seeds, one grid PNG per check."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ldm_cli.files.images import save_png


def render_grid(components, unet, text_encoder, prompts, seed: int, steps: int, step: int, output: Path) -> Path:
    """One row per prompt (2 seeds each) with the weights as they are now; returns the grid path."""
    from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
    from ldm_cli.pipeline.loop.schedulers import name_for_class

    scheduler = name_for_class(components.scheduler_config.get("_class_name", ""))
    live = replace(components, unet=unet, text_encoder=text_encoder)
    size = components.native_size
    plan = SamplingPlan(height=size, width=size, steps=steps, guidance=7.5, scheduler=scheduler)
    device = next(unet.parameters()).device
    was_training = unet.training, text_encoder.training
    unet.eval(), text_encoder.eval()
    try:
        with torch.no_grad():
            rows = [
                np.concatenate([TextToImage(live, device, torch.float32).generate(p, seed + i, plan).pixels for i in range(2)], axis=1)
                for p in prompts
            ]
    finally:
        unet.train(was_training[0]), text_encoder.train(was_training[1])
    text = {"ldm-validation": "\n".join(prompts), "step": str(step)}
    return save_png(np.concatenate(rows, axis=0), output / "validation" / f"step-{step:06d}.png", text)
