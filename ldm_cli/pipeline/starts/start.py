"""Where the denoising loop starts, resolved once per run into one object the loop consumes.

    NoiseStart    text-to-image: seeded noise x init_noise_sigma, every timestep
    InitStart     img2img (SDEdit): the init latents noised to the strength's first timestep
    MaskedStart   inpainting / outpainting (pipeline/starts/inpaint.py): init and mask, plus what the
                  UNet needs on top of the latents (9-channel models) or the blend after each step
                  (4-channel models), and the composite over the picture at the end

Each start has the same small surface, so the orchestrator (txt2img.run) is a straight line:

    start = resolve_start(settings)         files read and checked, before any model loads
    start.check_source(source)              the model's configs, before its weights load (UNet kind)
    start.prepare(components, vae_hash)     checks against the loaded model (latents fit, UNet kind)
    plan  = start.fit_plan(plan)            the picture's size wins over the model's native size
    begun = start.begin(components, device, dtype, scheduler, generator, plan)    per image
    pixels = start.finish(image)            None, or the final [H, W, 3] uint8 (composites)
    start.record()                          what the JSON record keeps about the start
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from ldm_cli.errors import UsageError
from ldm_cli.pipeline.config import kept_steps
from ldm_cli.pipeline.loop.noise import plan_noise


@dataclass
class Begun:
    """What one image's loop starts from."""

    latents: torch.Tensor  # [1, 4, h, w], already at the first timestep's noise level
    timesteps: object
    unet_extra: torch.Tensor | None = None  # [1, C, h, w] appended to the UNet input (9-channel inpainting)
    after_step: Callable[[int, torch.Tensor], torch.Tensor] | None = None  # latent blend (4-channel inpainting)


def latent_channels(components) -> int:
    return components.vae.config.latent_channels


def needs_mask(components) -> bool:
    """An inpainting UNet takes the mask and the masked picture's latents beside the noise."""
    return components.unet.config.in_channels != latent_channels(components)


def refuse_inpainting_model(components) -> None:
    if needs_mask(components):
        raise UsageError(inpainting_model_message(components.source.spec, components.unet.config.in_channels))


def inpainting_model_message(spec: str, channels: int) -> str:
    return (f"--model {spec} is an inpainting model (its UNet takes {channels} input channels: latents, mask and "
            "masked picture); pass --init-image IMG --mask MASK, or use a normal model")


def refuse_inpainting_source(source) -> None:
    """Before the weights load: a folder config or single-file header that shows an inpainting UNet."""
    from ldm_cli.models.inpaint_detect import unet_in_channels

    channels = unet_in_channels(source)
    if channels is not None and channels != 4:  # SD1 latents have 4 channels
        raise UsageError(inpainting_model_message(source.spec, channels))


def first_timesteps(scheduler, steps: int, strength: float):
    """The timesteps the strength keeps, from index t_start * order (diffusers' get_timesteps)."""
    t_start, _ = kept_steps(steps, strength)
    begin = t_start * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)  # sigma schedulers index from there
    return scheduler.timesteps[begin:]


class NoiseStart:
    """Pure noise at the first timestep."""

    def check_source(self, source) -> None:
        refuse_inpainting_source(source)

    def prepare(self, components, vae_hash: str | None = None) -> None:
        refuse_inpainting_model(components)

    def fit_plan(self, plan):
        return plan

    def begin(self, components, device, dtype, scheduler, generator, plan) -> Begun:
        noise = plan_noise(plan.latent_shape(components), generator, dtype, device, plan)
        return Begun(noise * scheduler.init_noise_sigma, scheduler.timesteps)

    def finish(self, image):
        return None

    def record(self) -> dict:
        return {}


class InitStart:
    """img2img: the init image's latents (a seeded posterior sample, as diffusers draws it) or the
    given latent file, noised to the timestep the strength selects."""

    def __init__(self, init):
        self.init = init  # img2img.InitSource

    @property
    def size(self) -> tuple[int, int]:
        return self.init.size

    def check_source(self, source) -> None:
        refuse_inpainting_source(source)

    def prepare(self, components, vae_hash: str | None = None) -> None:
        refuse_inpainting_model(components)
        if self.init.latent_file is not None:
            from ldm_cli.pipeline.codec.decode_latents import check_fits

            check_fits(self.init.latent_file, components.vae, components.source.spec, vae_hash or "")

    def fit_plan(self, plan):
        width, height = self.init.size
        return replace(plan, height=height, width=width)

    def begin(self, components, device, dtype, scheduler, generator, plan) -> Begun:
        timesteps = first_timesteps(scheduler, plan.steps, self.init.strength)
        start = self.start_latents(components, device, dtype, generator)  # draws from the generator first, as diffusers
        noise = plan_noise(start.shape, generator, dtype, device, plan)
        return Begun(scheduler.add_noise(start, noise, timesteps[:1]), timesteps)

    def start_latents(self, components, device, dtype, generator) -> torch.Tensor:
        """x_0 in the UNet's space: a seeded posterior sample of the image, or the given latents."""
        if self.init.latent_file is not None:
            return self.init.latent_file.latents.to(device, dtype)
        return encode_sample(components.vae, self.init.image.pixels, device, dtype, generator)

    def finish(self, image):
        return None

    def record(self) -> dict:
        return {"img2img": self.init.record()}


def encode_sample(vae, pixels, device, dtype, generator) -> torch.Tensor:
    """[H, W, 3] uint8 -> scaled latents, a posterior sample drawn with `generator`."""
    from ldm_cli.files.image_io import to_tensor
    from ldm_cli.pipeline.codec import vae_ops

    tensor = to_tensor(pixels).to(device, dtype)
    return vae_ops.encode(vae, tensor, sample=True, generator=generator).latents.to(dtype)


def resolve_start(settings):
    """Read and check the init image, latents and mask the settings name; no model is loaded."""
    from ldm_cli.pipeline.starts import img2img

    init = img2img.load_init(settings)
    if init is None:
        return NoiseStart()
    if getattr(settings, "mask", None) is None and not getattr(settings, "outpaint", None):
        return InitStart(init)
    from ldm_cli.pipeline.starts.inpaint import load_masked

    return load_masked(settings, init)
