"""Build LoRA-family files the way real tools lay them out (real key names, random weights) for the
tiny model, each with its oracle: diffusers loading the same file, diffusers loading a file that is
mathematically the same update, or peft's own LoHa/LoKr/DoRA layers holding the same tensors."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

RANK = 4
ATTN = re.compile(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$")
TEXT = re.compile(r"(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])$")
CONV = re.compile(r"resnets\.\d+\.conv[12]$")


@dataclass
class Built:
    path: Path
    oracle: str  # "diffusers" (load `path`; "diffusers-unet-config": with unet_config=), "equivalent"
    # (load `equivalent`), "peft" (`pipe`), "refused"
    equivalent: Path | None = None
    pipe: Callable | None = None  # builds the peft-adapted diffusers pipeline


def pipeline(tiny):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def modules(tiny):
    """(target, canonical module name, weight shape) of the modules real LoRAs adapt."""
    pipe = pipeline(tiny)
    out = []
    for name, module in pipe.unet.named_modules():
        if ATTN.search(name) or CONV.search(name):
            out.append(("unet", name, tuple(module.weight.shape)))
    for name, module in pipe.text_encoder.named_modules():
        if TEXT.search(name):
            name = name if name.startswith("text_model.") else "text_model." + name  # what every file says
            out.append(("text_encoder", name, tuple(module.weight.shape)))
    return out


def _rand(*shape, std=0.2, seed=[0]):
    seed[0] += 1
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed[0])) * std


def _pairs(tiny, convs=False, rank=RANK):
    """(target, module, down, up) with LoRA-shaped random tensors (convs: 3x3 LoCon on resnets too)."""
    for target, name, shape in modules(tiny):
        if len(shape) == 4 and not convs:
            continue
        down = _rand(rank, *shape[1:]) if len(shape) == 4 else _rand(rank, shape[1])
        up = _rand(shape[0], rank, 1, 1) if len(shape) == 4 else _rand(shape[0], rank)
        yield target, name, down, up


def kohya_name(target, name):
    return ("lora_unet_" if target == "unet" else "lora_te_") + name.replace(".", "_")


def _save(path, tensors, metadata=None):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata or {"format": "pt"})
    return path


# --- layouts diffusers loads itself ------------------------------------------------------------------

def kohya(tiny, folder, convs=False):
    tensors = {}
    for target, name, down, up in _pairs(tiny, convs):
        key = kohya_name(target, name)
        tensors |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(2.0)}
    return Built(_save(folder / "kohya.safetensors", tensors), "diffusers")


def peft(tiny, folder):
    tensors = {}
    for target, name, down, up in _pairs(tiny):
        tensors |= {f"{target}.{name}.lora_A.weight": down, f"{target}.{name}.lora_B.weight": up}
    return Built(_save(folder / "peft.safetensors", tensors), "diffusers")


def linear_layer(tiny, folder):
    """diffusers 0.2x: unet ….lora.down/up, text encoder ….lora_linear_layer.down/up."""
    tensors = {}
    for target, name, down, up in _pairs(tiny):
        kind = "lora" if target == "unet" else "lora_linear_layer"
        tensors |= {f"{target}.{name}.{kind}.down.weight": down, f"{target}.{name}.{kind}.up.weight": up}
    return Built(_save(folder / "linear_layer.safetensors", tensors), "diffusers")


def processor(tiny, folder):
    """diffusers' old attention processors: unet.….attn1.processor.to_q_lora.down.weight."""
    tensors = {}
    for target, name, down, up in _pairs(tiny):
        if target != "unet":
            continue
        head, proj = re.match(r"(.*attn[12])\.(to_q|to_k|to_v|to_out)", name).groups()
        tensors |= {f"unet.{head}.processor.{proj}_lora.down.weight": down, f"unet.{head}.processor.{proj}_lora.up.weight": up}
    return Built(_save(folder / "processor.safetensors", tensors), "diffusers")


def adapter_metadata(tiny, folder):
    """peft keys with diffusers' lora_adapter_metadata header: r 4, lora_alpha 8 (strength 2), one pattern."""
    tensors = {}
    for target, name, down, up in _pairs(tiny):
        tensors |= {f"{target}.{name}.lora_A.weight": down, f"{target}.{name}.lora_B.weight": up}
    unet_targets = sorted({n for t, n, *_ in _pairs(tiny) if t == "unet"})
    text_targets = sorted({n.removeprefix("text_model.") for t, n, *_ in _pairs(tiny) if t == "text_encoder"})
    metadata = {"unet.r": RANK, "unet.lora_alpha": 8, "unet.target_modules": unet_targets,
                "unet.alpha_pattern": {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k": 1},
                "unet.rank_pattern": {}, "text_encoder.r": RANK, "text_encoder.lora_alpha": 2,
                "text_encoder.target_modules": text_targets}
    header = {"format": "pt", "lora_adapter_metadata": json.dumps(metadata, indent=2, sort_keys=True)}
    return Built(_save(folder / "metadata.safetensors", tensors, header), "diffusers")


def locon_conv(tiny, folder):
    built = kohya(tiny, folder, convs=True)
    return Built(built.path.rename(folder / "locon.safetensors"), "diffusers")


def kohya_ldm_names(tiny, folder):
    """kohya keys with the original LDM UNet names (lora_unet_input_blocks_1_1_…, …_in_layers_2), as some
    SD1 tools write; diffusers maps them when given the UNet config (as its SDXL loader does)."""
    from ldm_cli.models.ldm_unet_names import aliases

    to_ldm = {kohya_name("unet", name): kohya_name("unet", alias) for alias, name in aliases(pipeline(tiny).unet).items()}
    tensors = {}
    for key, value in load_file(kohya(tiny, folder, convs=True).path).items():
        module, param = key.split(".", 1)
        tensors[f"{to_ldm.get(module, module)}.{param}"] = value
    assert any("input_blocks" in k for k in tensors) and any("output_blocks" in k for k in tensors)
    return Built(_save(folder / "ldm-names.safetensors", tensors), "diffusers-unet-config")


# --- layouts diffusers cannot load: compared with a mathematically equal file, or with peft's layers ----

def locon_tucker(tiny, folder):
    """LyCORIS LoCon with use_tucker: conv down [r, in, 1, 1], lora_mid [r, r, 3, 3], up [out, r, 1, 1].
    The same update as a plain conv LoRA: down' = mid contracted with down (einsum over the inner rank)."""
    tensors, equal = {}, {}
    for target, name, shape in modules(tiny):
        key = kohya_name(target, name)
        if len(shape) == 4:
            down, mid, up = _rand(RANK, shape[1], 1, 1), _rand(RANK, RANK, *shape[2:]), _rand(shape[0], RANK, 1, 1)
            tensors |= {f"{key}.lora_down.weight": down, f"{key}.lora_mid.weight": mid, f"{key}.lora_up.weight": up}
            equal |= {f"{key}.lora_down.weight": torch.einsum("ijkl,jc->ickl", mid, down[:, :, 0, 0]), f"{key}.lora_up.weight": up}
        else:
            down, up = _rand(RANK, shape[1]), _rand(shape[0], RANK)
            tensors |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up}
            equal |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up}
        tensors[f"{key}.alpha"] = equal[f"{key}.alpha"] = torch.tensor(2.0)
    return Built(_save(folder / "tucker.safetensors", tensors), "equivalent", _save(folder / "tucker-equal.safetensors", equal))


def _peft_adapted(tiny, config_for, scale_std, file_alpha, dora_as=None):
    """A pipeline whose UNet and text encoder carry peft adapters (LoHa/LoKr/DoRA) with random tensors,
    and the same tensors as a kohya/LyCORIS file. Returns (tensors, pipe with the adapters merged)."""
    from peft import inject_adapter_in_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    pipe = pipeline(tiny)
    tensors = {}
    for target, model in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder)):
        config = config_for(target)
        if config is None:
            continue
        inject_adapter_in_model(config, model, adapter_name="default")
        for name, layer in model.named_modules():
            if not isinstance(layer, BaseTunerLayer):
                continue
            canonical = name if target == "unet" or name.startswith("text_model.") else "text_model." + name
            key = kohya_name(target, canonical)
            for param_name in layer.adapter_layer_names:
                holder = getattr(layer, param_name)
                if "default" not in holder:
                    continue
                param = holder["default"]
                param = param.weight if isinstance(param, torch.nn.Module) else param
                with torch.no_grad():
                    if param_name == "lora_magnitude_vector":  # DoRA: a random positive magnitude per row
                        param.mul_(torch.rand(param.shape, generator=torch.Generator().manual_seed(7)) + 0.5)
                    else:
                        param.copy_(_rand(*param.shape, std=scale_std))
                file_name = {"lora_A": "lora_down.weight", "lora_B": "lora_up.weight",
                             "lora_magnitude_vector": "dora_scale"}.get(param_name, param_name)
                value = param.detach().clone()
                if param_name == "lora_magnitude_vector":
                    value = value.reshape(-1, 1) if dora_as == "kohya" else value
                tensors[f"{key}.{file_name}"] = value
            tensors[f"{key}.alpha"] = torch.tensor(float(file_alpha))
        for layer in model.modules():
            if isinstance(layer, BaseTunerLayer):
                layer.merge()
    return tensors, pipe


def _targets(target, convs=True):
    unet = ["to_q", "to_k", "to_v", "to_out.0"] + (["conv1", "conv2"] if convs else [])
    return unet if target == "unet" else ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def loha(tiny, folder):
    from peft import LoHaConfig

    config = lambda t: LoHaConfig(r=RANK, alpha=2, target_modules=_targets(t), use_effective_conv2d=True)  # noqa: E731
    tensors, pipe = _peft_adapted(tiny, config, 0.5, 2)
    return Built(_save(folder / "loha.safetensors", tensors), "peft", pipe=lambda: pipe)


def lokr(tiny, folder, r, decompose_both, name):
    from peft import LoKrConfig

    # both factors full -> LyCORIS merges at scale 1 whatever alpha says; peft at alpha / r: give peft alpha = r
    full = r >= 4
    config = lambda t: LoKrConfig(r=r, alpha=r if full else 2, target_modules=_targets(t),  # noqa: E731
                                  decompose_both=decompose_both, use_effective_conv2d=True)
    tensors, pipe = _peft_adapted(tiny, config, 0.4, 1 if full else 2)
    return Built(_save(folder / f"{name}.safetensors", tensors), "peft", pipe=lambda: pipe)


def dora_peft(tiny, folder):
    """peft DoRA as diffusers saves it: ….lora_A/lora_B.weight + ….lora_magnitude_vector (diffusers loads it)."""
    from peft import LoraConfig

    config = lambda t: LoraConfig(r=RANK, lora_alpha=RANK, use_dora=True, target_modules=_targets(t, convs=False)) if t == "unet" else None  # noqa: E731
    tensors, _ = _peft_adapted(tiny, config, 0.2, RANK)
    peft_keys = {}
    for key, value in tensors.items():
        module, param = key.split(".", 1)
        if param == "alpha":
            continue
        name = _unet_name(tiny, module)
        peft_keys[f"unet.{name}." + {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight",
                                     "dora_scale": "lora_magnitude_vector"}[param]] = value
    return Built(_save(folder / "dora-peft.safetensors", peft_keys), "diffusers")


def dora_kohya(tiny, folder):
    """LyCORIS DoRA (kohya keys + dora_scale [out, 1]); diffusers drops dora_scale, so peft's DoRA is the oracle."""
    from peft import LoraConfig

    config = lambda t: LoraConfig(r=RANK, lora_alpha=RANK, use_dora=True, target_modules=_targets(t, convs=False))  # noqa: E731
    tensors, pipe = _peft_adapted(tiny, config, 0.2, RANK, dora_as="kohya")
    return Built(_save(folder / "dora.safetensors", tensors), "peft", pipe=lambda: pipe)


def _unet_name(tiny, kohya_key):
    for target, name, _ in modules(tiny):
        if kohya_name(target, name) == kohya_key:
            return name
    raise KeyError(kohya_key)


# --- layouts for other model families (refused) --------------------------------------------------------

def sdxl(tiny, folder):
    key = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    te = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    te2 = "lora_te2_text_model_encoder_layers_0_self_attn_q_proj"
    tensors = {f"{key}.lora_down.weight": _rand(RANK, 2048), f"{key}.lora_up.weight": _rand(640, RANK), f"{key}.alpha": torch.tensor(4.0),
               f"{te}.lora_down.weight": _rand(RANK, 768), f"{te}.lora_up.weight": _rand(768, RANK),
               f"{te2}.lora_down.weight": _rand(RANK, 1280), f"{te2}.lora_up.weight": _rand(1280, RANK)}
    return Built(_save(folder / "sdxl.safetensors", tensors), "refused")


def sd2(tiny, folder):
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    tensors = {f"{key}.lora_down.weight": _rand(RANK, 1024), f"{key}.lora_up.weight": _rand(320, RANK),
               f"{te}.lora_down.weight": _rand(RANK, 1024), f"{te}.lora_up.weight": _rand(1024, RANK)}
    return Built(_save(folder / "sd2.safetensors", tensors), "refused")


BUILDERS = {
    "kohya LoRA, UNet + text encoder": kohya,
    "peft/diffusers LoRA, UNet + text encoder": peft,
    "kohya LoRA, LDM UNet names": kohya_ldm_names,
    "diffusers lora_linear_layer": linear_layer,
    "diffusers attention processors": processor,
    "diffusers lora_adapter_metadata": adapter_metadata,
    "LyCORIS LoCon (3x3 conv)": locon_conv,
    "LyCORIS LoCon with lora_mid (Tucker)": locon_tucker,
    "LyCORIS LoHa (+ Tucker conv)": loha,
    "LyCORIS LoKr, full w1 and w2": lambda t, f: lokr(t, f, 8, False, "lokr-full"),
    "LyCORIS LoKr, w2 decomposed (+ t2)": lambda t, f: lokr(t, f, 2, False, "lokr-w2"),
    "LyCORIS LoKr, w1 and w2 decomposed": lambda t, f: lokr(t, f, 1, True, "lokr-both"),
    "peft DoRA (lora_magnitude_vector)": dora_peft,
    "LyCORIS DoRA (dora_scale)": dora_kohya,
    "SDXL LoRA": sdxl,
    "SD2 LoRA": sd2,
}
