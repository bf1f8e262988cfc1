"""Checks around merging LoRA files (kept apart from lora.py, which reads the formats).

A LoRA that holds NaN/inf values would turn the model's weights to NaN and surface much later as
"the sampler produced NaN latents"; we name the file instead. A merge that fails on tensor shapes
the format reader did not foresee names the file too, rather than ending in an internal error.
"""

from __future__ import annotations

from ldm_cli.errors import ModelError


def check_finite(spec) -> None:
    """Refuse a LoRA file whose tensors hold NaN or infinity, naming the file and a tensor."""
    import torch
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(spec.path))
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the reader with its reason
        return
    bad = [key for key, value in tensors.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise ModelError(f"--lora {spec.path}: the LoRA file contains NaN/inf values ({len(bad)} of {len(tensors)} "
                         f"tensors, e.g. {bad[0]}); it is damaged or came from a training run that diverged")


def apply_loras_checked(unet, text_encoder, specs) -> list:
    """lora.apply_loras (every file planned before the first merge), each file checked for NaN/inf
    first; a merge that fails on shapes names the file(s). Returns apply_loras' LoraInfo list."""
    from ldm_cli.models.lora import apply_loras

    for spec in specs:
        check_finite(spec)
    try:
        return apply_loras(unet, text_encoder, specs)
    except ModelError:
        raise
    except (RuntimeError, ValueError, IndexError, KeyError) as exc:  # torch reports shape mismatches this way
        detail = " ".join(str(exc).split())[:160]
        names = ", ".join(str(spec.path) for spec in specs)
        raise ModelError(f"--lora {names}: its tensors do not fit this model ({detail}); "
                         "it was made for another model or is damaged") from None
