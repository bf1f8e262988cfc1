"""Classifier-free guidance (Ho & Salimans 2022) as a pure function."""

from __future__ import annotations


def uses_unconditional_pass(guidance_scale: float) -> bool:
    """With g <= 1 the guided prediction is just the conditional one, so skip the extra UNet work."""
    return guidance_scale > 1.0


def guide(eps_uncond, eps_cond, guidance_scale: float):
    """eps = eps_u + g * (eps_c - eps_u): step further along the direction the prompt pulls."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def guidance_embedding(guidance_scale: float, dim: int):
    """[1, dim] sinusoidal embedding of w = g - 1 for guidance-distilled UNets (LCM; `time_cond_proj_dim`).

    Such a UNet learned classifier-free guidance inside itself (Luo et al. 2023): it gets the scale as
    this extra timestep condition, and no unconditional pass. g - 1 because w follows the Imagen form
    eps_c + w (eps_c - eps_u) while our --guidance is eps_u + g (eps_c - eps_u). The embedding is the
    VDM one (sin/cos of w*1000 at log-spaced frequencies), as diffusers' LCM pipeline computes it.
    """
    import torch

    return _sinusoidal(torch.tensor([(guidance_scale - 1) * 1000.0]), dim)


def w_embedding(w, dim: int):
    """[B, dim] the same embedding for a batch of w (a float tensor [B]), as `ldm distill` trains it."""
    return _sinusoidal(w.float() * 1000.0, dim)


def _sinusoidal(scaled, dim: int):
    import math

    import torch

    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = scaled[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return torch.nn.functional.pad(emb, (0, dim % 2))  # [B, dim]


LCM_DISTILLED_GUIDANCE = 8.5  # diffusers' LatentConsistencyModelPipeline default for LCM-distilled UNets
LCM_LORA_GUIDANCE = 1.0  # an LCM- or TCD-LoRA on a plain UNet: no CFG pass (LCM's authors use 1-2, TCD's 0)


def consistency_default_guidance(unet_config: dict) -> float:
    """The guidance a consistency sampler (`lcm`, `tcd`) uses when --g is not given.

    A guidance-distilled UNet (`time_cond_proj_dim`) gets the scale as an embedding and was trained
    around 8.5; a plain UNet under an LCM- or TCD-LoRA already samples with the teacher's guidance baked
    in, so a CFG pass on top over-saturates: 1.0 = the conditional prediction alone, half the UNet work."""
    return LCM_DISTILLED_GUIDANCE if unet_config.get("time_cond_proj_dim") else LCM_LORA_GUIDANCE


def resolved_guidance(scheduler: str, guidance: float, guidance_default: bool, unet_config) -> float:
    """The run's guidance: --g, or, when it was not given, what suits a consistency sampler (lcm, tcd)."""
    from ldm_cli.pipeline.loop.schedulers import spec_for

    if guidance_default and spec_for(scheduler).consistency:
        return consistency_default_guidance(unet_config)
    return guidance
