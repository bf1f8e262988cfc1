"""Write a diffusers folder as an A1111-style single-file SD1 checkpoint (original LDM key names).

The inverse of diffusers' single-file conversion, so the tests can build a real single-file
checkpoint from a tiny model and check that `ldm generate --model file.safetensors` loads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def unet_key(key: str, layers: int) -> str:
    for old, new in _UNET_FIXED.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * (layers + 1) + j
        return f"input_blocks.{index}.{0 if kind == 'resnets' else 1}.{_resnet_rest(rest) if kind == 'resnets' else rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * (layers + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_rest(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * (layers + 1) + j
        return f"output_blocks.{index}.{0 if kind == 'resnets' else 1}.{_resnet_rest(rest) if kind == 'resnets' else rest}"
    raise KeyError(key)


def _resnet_rest(rest: str) -> str:
    name, _, tail = rest.partition(".")
    return f"{_RESNET.get(name, name)}.{tail}"


def unet_state_dict(state: dict, config: dict) -> dict:
    layers = config["layers_per_block"]
    has_attention = {i for i, t in enumerate(config["up_block_types"]) if "CrossAttn" in t}
    out = {}
    for key, value in state.items():
        if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            block = int(m[1])
            slot = 2 if block in has_attention else 1
            out[f"output_blocks.{block * (layers + 1) + layers}.{slot}.conv.{m[2]}"] = value
        else:
            out[unet_key(key, layers)] = value
    return {f"model.diffusion_model.{k}": v for k, v in out.items()}


def vae_state_dict(state: dict, config: dict) -> dict:
    n_up = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        new = key
        new = re.sub(r"(encoder|decoder)\.down_blocks\.(\d+)\.resnets\.", r"\1.down.\2.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        if m := re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)\.(.*)", new):
            ldm_block = n_up - 1 - int(m[1])
            kind = "block." if m[2] == "resnets" else "upsample."
            new = f"decoder.up.{ldm_block}.{kind}{m[3]}"
        new = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        if ".mid_block.attentions.0." in new:
            prefix, rest = new.split(".mid_block.attentions.0.")
            name, _, tail = rest.rpartition(".")
            new = f"{prefix}.mid.attn_1.{_VAE_ATTN.get(name, name)}.{tail}"
            if value.ndim == 2:
                value = value[:, :, None, None]  # LDM stores these projections as 1x1 convolutions
        new = new.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        out[f"first_stage_model.{new}"] = value
    return out


def export_single_file(folder: Path, target: Path) -> Path:
    folder = Path(folder)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state = {}
    state.update(unet_state_dict(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"), unet_config))
    state.update(vae_state_dict(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"), vae_config))
    for key, value in load_file(folder / "text_encoder" / "model.safetensors").items():
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        state[f"cond_stage_model.transformer.{key}"] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    return target


def config_folder(folder: Path, target: Path) -> Path:
    """The component configs of a diffusers folder without weights (what --config takes)."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "model_index.json", target)
    for component in ("unet", "vae", "text_encoder", "scheduler", "tokenizer"):
        shutil.copytree(folder / component, target / component,
                        ignore=shutil.ignore_patterns("*.safetensors", "*.bin"), dirs_exist_ok=True)
    return target


assert torch  # safetensors.torch needs torch imported
