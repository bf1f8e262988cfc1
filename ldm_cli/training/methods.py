"""What gets trained (LoRA adapters via peft, or the whole UNet) and how it is exported.

LoRA (Hu et al. 2021) adds W + (alpha/r) B A to the attention projections; B starts at zero, so
step 0 is exactly the base model. The exported file has B pre-multiplied by alpha/r, so every
loader (diffusers' load_lora_weights assumes alpha = r) applies it at the trained strength.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ldm_cli.errors import as_os_error, write_error
from ldm_cli.files.modes import give_normal_mode

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def add_lora(model, rank: int, alpha: float, targets: list[str]) -> None:
    from peft import LoraConfig

    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets))


def trainable_parameters(model) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def lora_state(unet, text_encoder, rank: int, alpha: float, kohya: bool) -> dict[str, torch.Tensor]:
    """The adapters as a LoRA file's tensors, in diffusers/peft or kohya key format.

    Text-encoder modules get their canonical names (`text_encoder.text_model.encoder.layers.N…`,
    `lora_te_text_model_encoder_layers_N_…`), which ComfyUI, A1111, kohya and diffusers all read.
    """
    from peft import get_peft_model_state_dict

    from ldm_cli.models.text_encoder_names import canonical_key

    parts = [("unet", unet)] + ([("text_encoder", text_encoder)] if text_encoder is not None else [])
    out = {}
    for prefix, model in parts:
        for key, value in get_peft_model_state_dict(model).items():
            module, kind = key.rsplit(".lora_", 1)  # "down_blocks.0....to_q", "A.weight"
            if prefix == "text_encoder":  # the names every tool reads, whatever transformers calls them
                module = canonical_key(module)
            value = value.detach().float().cpu().contiguous()
            if kohya:
                name = ("lora_unet_" if prefix == "unet" else "lora_te_") + module.replace(".", "_")
                out[f"{name}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = value
                out[f"{name}.alpha"] = torch.tensor(float(alpha))
            else:
                if kind.startswith("B"):
                    value = value * (alpha / rank)
                out[f"{prefix}.{module}.lora_{kind}"] = value
    return out


def save_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write the LoRA file atomically (temp + rename)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        give_normal_mode(tmp)  # safetensors writes 0600; a LoRA is shared like any other file
        os.replace(tmp, path)
    except BaseException as exc:  # noqa: BLE001 - never leave a half-written file, say why it failed
        tmp.unlink(missing_ok=True)
        cause = as_os_error(exc) if isinstance(exc, Exception) else None
        if cause is not None:
            raise write_error(cause, path, "free some space, then --resume latest (the checkpoints are intact)") from None
        raise
    return path


def save_full_model(output: Path, components, unet, text_encoder, unet_weights: dict | None,
                    scheduler_config: dict | None = None, pipeline_class: str | None = None) -> None:
    """A diffusers folder at `output`; model_index.json is written last, so it marks a complete model.

    `scheduler_config` replaces the model's own (an LCM student names LCMScheduler), and model_index.json
    then names its class and `pipeline_class`, so diffusers' from_pretrained builds the same."""
    from ldm_cli.models.loading import SD15_CONFIG_DIR
    from ldm_cli.models.text_encoder_names import save_text_encoder

    staging = output / f".tmp-model-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    if unet_weights is not None:  # the EMA weights replace the live ones in the exported copy
        live = {k: v.detach().clone() for k, v in unet.state_dict().items()}
        unet.load_state_dict(unet_weights, strict=False)
    try:
        unet.save_pretrained(staging / "unet")
    finally:
        if unet_weights is not None:
            unet.load_state_dict(live)
    save_text_encoder(text_encoder, staging / "text_encoder")  # canonical text_model.* keys
    components.vae.save_pretrained(staging / "vae")
    source = components.source.path
    tokenizer = source / "tokenizer" if source is not None and (source / "tokenizer").is_dir() else SD15_CONFIG_DIR / "tokenizer"
    shutil.copytree(tokenizer, staging / "tokenizer")  # the same vocab.json/merges.txt the model came with
    (staging / "scheduler").mkdir()
    scheduler_config = scheduler_config or components.scheduler_config
    (staging / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2))
    give_normal_mode(staging)  # safetensors writes 0600; the model folder is shared like any other
    (output / "model_index.json").unlink(missing_ok=True)
    for name in ("unet", "text_encoder", "vae", "tokenizer", "scheduler"):
        if (output / name).exists():
            shutil.rmtree(output / name)
        os.replace(staging / name, output / name)
    index = json.loads((SD15_CONFIG_DIR / "model_index.json").read_text())
    if pipeline_class:
        index.update(_class_name=pipeline_class, scheduler=["diffusers", scheduler_config["_class_name"]])
    (staging / "model_index.json").write_text(json.dumps(index, indent=2))
    give_normal_mode(staging / "model_index.json")
    os.replace(staging / "model_index.json", output / "model_index.json")
    shutil.rmtree(staging, ignore_errors=True)
