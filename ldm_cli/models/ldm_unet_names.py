"""The original LDM/CompVis name of each diffusers UNet module (`input_blocks.4.1.proj_in` for
`down_blocks.1.attentions.0.proj_in`), so LoRAs keyed either way apply, as A1111 and ComfyUI accept.

Block n of input_blocks is down block (n-1) // (L+1), layer (n-1) % (L+1) (the last is the
downsampler); output_blocks has L+1 layers per up block; L = layers_per_block. Sub-module 0 is the
resnet, 1 the attention; resnet layers: in_layers.2 = conv1, out_layers.3 = conv2, emb_layers.1 =
time_emb_proj, skip_connection = conv_shortcut.
"""

from __future__ import annotations

import re

_RESNET = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
           "conv_shortcut": "skip_connection", "norm1": "in_layers.0", "norm2": "out_layers.0"}
_TOP = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "conv_norm_out": "out.0",
        "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2"}


def ldm_name(name: str, layers_per_block: int, up_attention: set[int]) -> str | None:
    """The LDM name of diffusers module `name` (None when it has none); up_attention: up blocks with attention."""
    step = layers_per_block + 1
    if name in _TOP:
        return _TOP[name]
    if match := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)(?:\.(.+))?$", name):
        block, kind, layer, rest = match.groups()
        head = f"input_blocks.{1 + int(block) * step + int(layer)}.{0 if kind == 'resnets' else 1}"
        return _inner(head, kind, rest)
    if match := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv$", name):
        return f"input_blocks.{(int(match.group(1)) + 1) * step}.0.op"
    if match := re.match(r"mid_block\.(resnets|attentions)\.(\d+)(?:\.(.+))?$", name):
        kind, layer, rest = match.groups()
        head = f"middle_block.{2 * int(layer) if kind == 'resnets' else 1}"
        return _inner(head, kind, rest)
    if match := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)(?:\.(.+))?$", name):
        block, kind, layer, rest = match.groups()
        head = f"output_blocks.{int(block) * step + int(layer)}.{0 if kind == 'resnets' else 1}"
        return _inner(head, kind, rest)
    if match := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv$", name):
        block = int(match.group(1))
        return f"output_blocks.{block * step + layers_per_block}.{2 if block in up_attention else 1}.conv"
    return None


def _inner(head: str, kind: str, rest: str | None) -> str | None:
    if rest is None:
        return head
    if kind == "attentions":
        return f"{head}.{rest}"  # proj_in, transformer_blocks.0.attn1.to_q, ... keep their names
    return f"{head}.{_RESNET[rest]}" if rest in _RESNET else None


def aliases(unet) -> dict[str, str]:
    """{LDM name: diffusers name} for every module of `unet` that has one."""
    config = unet.config
    up_attention = {i for i, kind in enumerate(config.up_block_types) if "CrossAttn" in kind}
    out = {}
    for name, _ in unet.named_modules():
        if name and (alias := ldm_name(name, config.layers_per_block, up_attention)):
            out[alias] = name
    return out
