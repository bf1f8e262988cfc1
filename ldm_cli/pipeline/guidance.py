"""Classifier-free guidance (Ho & Salimans 2022) as a pure function."""

from __future__ import annotations


def uses_unconditional_pass(guidance_scale: float) -> bool:
    """With g <= 1 the guided prediction is just the conditional one, so skip the extra UNet work."""
    return guidance_scale > 1.0


def guide(eps_uncond, eps_cond, guidance_scale: float):
    """eps = eps_u + g * (eps_c - eps_u): step further along the direction the prompt pulls."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)
