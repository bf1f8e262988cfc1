"""Hires fix, as A1111's txt2img does it: a first pass at the requested size, an upscale, and an
img2img second pass at the larger size.

    1. first pass at --height x --width                                  [1, 4, h, w]
    2. upscale to int(side * --hires-scale), rounded down to a multiple of 8:
         latent:  bilinear interpolation of the latents (A1111's "Latent" upscaler)
         lanczos: decode, PIL Lanczos resize, encode (posterior sample from the image's seed)
    3. S = --hires-steps (0: --steps); the schedule is int(S / min(strength, 0.999)) steps long and
       its last S steps run (A1111's setup_img2img_steps with steps given)
    4. start: add_noise(upscaled, noise of the seed at the new shape, first kept timestep)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ldm_cli.errors import UsageError

UPSCALERS = {"latent": "Latent", "lanczos": "Lanczos"}  # ours -> A1111's "Hires upscaler" name
DEFAULT_STRENGTH = 0.7  # A1111's hires denoising strength default


@dataclass(frozen=True)
class HiresPlan:
    scale: float
    steps: int = 0  # 0: as many as the first pass
    strength: float = DEFAULT_STRENGTH
    upscaler: str = "latent"


def upscaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return int(width * scale) // 8 * 8, int(height * scale) // 8 * 8


def check_hires(scale: float, steps: int, strength: float, upscaler: str, width: int | None, height: int | None) -> None:
    from ldm_cli.pipeline.config import MAX_SIZE

    if not (1 <= scale <= 8):  # also false for NaN
        raise UsageError(f"--hires-scale {scale}: must be between 1 and 8 (2 is typical)")
    if not 0 <= steps <= 1000:
        raise UsageError(f"--hires-steps {steps}: must be between 0 (as many as --steps) and 1000")
    if not (0 < strength <= 1):
        raise UsageError(f"--hires-strength {strength}: must be above 0 and at most 1 (0.7 is typical)")
    if upscaler not in UPSCALERS:
        raise UsageError(f"--hires-upscaler {upscaler!r}: choose {' or '.join(UPSCALERS)}")
    for flag, side in (("--width", width), ("--height", height)):
        if side is not None and int(side * scale) > MAX_SIZE:
            raise UsageError(f"--hires-scale {scale} makes {flag} {side} into {int(side * scale)} pixels, over {MAX_SIZE}; use a smaller scale")


def second_pass_steps(steps: int, hires: HiresPlan) -> tuple[int, int]:
    """(schedule length, steps run) of the second pass."""
    run = hires.steps or steps
    return int(run / min(hires.strength, 0.999)), run


def _upscale(text_to_image, latents, seed, plan) -> torch.Tensor:
    width, height = upscaled_size(plan.width, plan.height, plan.hires.scale)
    factor = text_to_image.components.vae_scale_factor
    if plan.hires.upscaler == "latent":
        return torch.nn.functional.interpolate(latents, size=(height // factor, width // factor), mode="bilinear", antialias=False)
    import numpy as np
    from PIL import Image

    from ldm_cli.files.image_io import to_tensor
    from ldm_cli.pipeline.codec import latents as latent_ops
    from ldm_cli.pipeline.codec import vae_ops

    vae = text_to_image.components.vae
    pixels = latent_ops.to_uint8(latent_ops.decode(vae, latents))[0]
    resized = Image.fromarray(pixels).resize((width, height), Image.LANCZOS)
    image = to_tensor(np.asarray(resized)).to(text_to_image.device, text_to_image.dtype)
    generator = torch.Generator("cpu").manual_seed(seed)
    return vae_ops.encode(vae, image, sample=True, generator=generator).latents.to(text_to_image.dtype)


def step_counter(on_step):
    """(callback for the first pass, callback for the second) that report one run of steps."""
    if on_step is None:
        return None, None
    from dataclasses import replace

    done = [0, 0]  # steps of the first pass, and its total

    def first(info):
        done[:] = [info.index + 1, info.total]
        on_step(info)

    def second(info):
        on_step(replace(info, index=info.index + done[0], total=info.total + done[1]))

    return first, second


def second_pass(text_to_image, conditioning, latents: torch.Tensor, seed: int, plan, on_step=None) -> torch.Tensor:
    """The upscaled, re-noised and denoised latents of the hires pass."""
    from ldm_cli.pipeline.loop.noise import scheduler_step_kwargs
    from ldm_cli.pipeline.loop.sampling import denoise
    from ldm_cli.pipeline.loop.schedulers import build_scheduler

    c = text_to_image.components
    start = _upscale(text_to_image, latents, seed, plan)
    total, run = second_pass_steps(plan.steps, plan.hires)
    scheduler = build_scheduler(plan.scheduler, c.scheduler_config, plan.schedule_type)
    scheduler.set_timesteps(total, device=text_to_image.device)
    begin = (total - run) * scheduler.order
    timesteps = scheduler.timesteps[begin:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    generator = torch.Generator("cpu").manual_seed(seed)  # A1111 draws the seed's noise afresh at the new size
    noise = text_to_image.noise(start.shape, generator, plan)
    x = scheduler.add_noise(start, noise, timesteps[:1])
    return denoise(c.unet, scheduler, x, conditioning, timesteps, scheduler_step_kwargs(plan, generator, seed), on_step)
