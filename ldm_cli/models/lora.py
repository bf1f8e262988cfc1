"""Apply LoRA files to a loaded model for `ldm generate --lora FILE[:SCALE]` (repeatable).

Each LoRA pair (down A [r, in], up B [out, r], optional alpha) is merged into the weight it adapts:

    W <- W + scale * (alpha / r) * B @ A            (alpha absent: alpha / r = 1, as diffusers assumes)

Two key formats are read:
  diffusers / peft:  unet.<module>.lora_A.weight, unet.<module>.lora_B.weight   (text_encoder.<module>...)
                     also the older unet.<module>.lora.down.weight / lora.up.weight
  kohya (A1111):     lora_unet_<module with _>.lora_down.weight / .lora_up.weight / .alpha   (lora_te_...)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ldm_cli.errors import ModelError, UsageError

_PEFT = re.compile(r"^(unet|text_encoder)\.(.+)\.(lora_A|lora_B|lora\.down|lora\.up)\.weight$")
_PEFT_ALPHA = re.compile(r"^(unet|text_encoder)\.(.+)\.alpha$")
_KOHYA = re.compile(r"^lora_(unet|te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$")


@dataclass(frozen=True)
class LoraSpec:
    path: Path
    scale: float = 1.0

    def __str__(self) -> str:
        return f"{self.path}:{self.scale:g}"


def parse_lora_arg(value: str) -> LoraSpec:
    """'file.safetensors' or 'file.safetensors:0.7'; checks the file exists (a usage error if not)."""
    path_text, scale = value, 1.0
    head, sep, tail = value.rpartition(":")
    if sep and head:
        try:
            scale = float(tail)
            path_text = head
        except ValueError:
            if Path(head).expanduser().is_file():  # FILE:abc names a real file: the scale is what is wrong
                raise UsageError(f"--lora {value}: the scale {tail!r} is not a number; use FILE:SCALE, e.g. {head}:0.8") from None
            # else a ':' inside the path itself
    if not math.isfinite(scale):
        raise UsageError(f"--lora {value}: the scale must be a finite number, e.g. FILE:0.8")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UsageError(f"--lora {value}: no such file; pass a LoRA .safetensors file, optionally FILE:SCALE")
    if path.suffix != ".safetensors":
        raise UsageError(f"--lora {value}: expected a .safetensors LoRA file")
    return LoraSpec(path, scale)


def read_lora(path: Path) -> dict[tuple[str, str], dict]:
    """{(model, module key): {"down", "up", "alpha"}}; module keys are dotted (peft) or underscored (kohya)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types for bad headers
        raise ModelError(f"--lora {path}: not a readable .safetensors file ({' '.join(str(exc).split())[:160]})") from None
    groups: dict[tuple[str, str], dict] = {}
    for key, value in tensors.items():
        if match := _PEFT.match(key):
            model, module, kind = match.groups()
            groups.setdefault((model, module), {})["down" if kind in ("lora_A", "lora.down") else "up"] = value
        elif match := _PEFT_ALPHA.match(key):
            groups.setdefault((match.group(1), match.group(2)), {})["alpha"] = float(value)
        elif match := _KOHYA.match(key):
            model = "unet" if match.group(1) == "unet" else "text_encoder"
            slot = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}[match.group(3)]
            groups.setdefault((model, "_:" + match.group(2)), {})[slot] = float(value) if slot == "alpha" else value
    if not groups:
        raise ModelError(f"--lora {path}: no LoRA weights in it (expected diffusers 'unet.…lora_A' or kohya 'lora_unet_…' keys)")
    incomplete = [m for m, g in groups.items() if "down" not in g or "up" not in g]
    if incomplete:
        raise ModelError(f"--lora {path}: {len(incomplete)} modules lack their down or up weight (e.g. {incomplete[0][1]}); the file is damaged")
    return groups


def apply_loras(unet, text_encoder, specs: list[LoraSpec]) -> None:
    """Merge every LoRA into the weights, in order, each at its own scale."""
    for spec in specs:
        apply_lora(unet, text_encoder, spec)


def apply_lora(unet, text_encoder, spec: LoraSpec) -> int:
    import torch

    models = {"unet": unet, "text_encoder": text_encoder}
    lookup = {name: _module_index(model) for name, model in models.items()}
    merged = 0
    missing = []
    for (model, key), group in read_lora(spec.path).items():
        module = lookup[model].get(key)
        if module is None:
            missing.append(f"{model}:{key.removeprefix('_:')}")
            continue
        down, up = group["down"].float(), group["up"].float()
        rank = down.shape[0]
        factor = spec.scale * (group["alpha"] / rank if "alpha" in group else 1.0)
        weight = module.weight
        delta = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape) if weight.dim() == 2 else _conv_delta(up, down, weight)
        if delta.shape != weight.shape:
            raise ModelError(f"--lora {spec.path}: {key} has shape {tuple(delta.shape)}, the model's is {tuple(weight.shape)}; "
                             "this LoRA was trained for another model")
        with torch.no_grad():
            weight.add_((factor * delta).to(weight.device, weight.dtype))
        merged += 1
    if missing:
        raise ModelError(f"--lora {spec.path}: {len(missing)} of its modules are not in this model (e.g. {missing[0]}); "
                         "it was trained for another architecture — use the model it was made for")
    return merged


def _conv_delta(up, down, weight):
    """Conv LoRA: down is [r, in, kh, kw], up is [out, r, 1, 1]."""
    delta = up.flatten(1) @ down.flatten(1)  # [out, in*kh*kw]
    return delta.reshape(weight.shape) if delta.numel() == weight.numel() else delta


def _module_index(model) -> dict:
    """Both key styles -> module: 'a.b.0.c' (peft) and '_:a_b_0_c' (kohya); only modules with a weight."""
    index = {}
    if model is None:
        return index
    for name, module in model.named_modules():
        if getattr(module, "weight", None) is None or not name:
            continue
        index[name] = module
        index["_:" + name.replace(".", "_")] = module
    return index
