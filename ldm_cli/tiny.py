"""Tiny SD1-family models with random weights, in diffusers format, for tests and benchmarks.

Same architecture family as SD1 (real CLIP tokenizer, CLIPTextModel, AutoencoderKL with
downsampling factor 8 and 4 latent channels, cross-attention UNet), only narrower and shallower.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ldm_cli.models.loading import SD15_CONFIG_DIR

HIDDEN = 32


def build_tiny_model(folder: Path, seed: int = 0, sample_size: int = 8, in_channels: int = 4) -> Path:
    """Create a tiny random model at `folder` (native size sample_size*8 pixels) and return it.

    in_channels=9 makes an inpainting UNet (latents + mask + masked-picture latents)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    text_config = json.loads((SD15_CONFIG_DIR / "text_encoder" / "config.json").read_text())
    text_config.update(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=HIDDEN)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    # A fresh LayerNorm has bias 0, so every output vector has mean 0 and A1111's emphasis (which
    # restores a chunk's mean) would divide by ~0; real CLIP's final layer norm has a bias.
    norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
    norm.bias.data = torch.linspace(-0.5, 1.0, norm.bias.numel())
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=sample_size * 8,
        scaling_factor=0.18215,
    )
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=HIDDEN,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    text_encoder.save_pretrained(folder / "text_encoder")
    vae.save_pretrained(folder / "vae")
    unet.save_pretrained(folder / "unet")
    shutil.copytree(SD15_CONFIG_DIR / "tokenizer", folder / "tokenizer", dirs_exist_ok=True)
    shutil.copytree(SD15_CONFIG_DIR / "scheduler", folder / "scheduler", dirs_exist_ok=True)
    shutil.copy(SD15_CONFIG_DIR / "model_index.json", folder / "model_index.json")
    return folder
