"""Inpainting and outpainting: repaint where the mask is white, as diffusers'
StableDiffusionInpaintPipeline does, then keep the rest of the picture as A1111 does.

Per image, in the order diffusers draws from the seeded generator (so a seed gives its pixels):
    1. the timesteps the strength keeps (all of them at the default strength 1)
    2. init latents: a posterior sample of the picture (skipped for a 9-channel UNet at strength 1)
    3. noise; the start is noise x init_noise_sigma at strength 1, else the init latents noised
    4. the masked picture (picture x (mask < 0.5), grey where repainted) encoded with a sample;
       a 4-channel UNet does not use it, but the draw is made all the same
    5. the loop:
         9-channel UNet   input = [scaled latents, mask at latent size, masked-picture latents]
         4-channel UNet   after each step, latents = (1 - mask) x init latents noised to the next
                          step's level + mask x latents (the known part is re-noised and blended)
    6. decode; with --keep-unmasked (default) composite over the picture through the mask
       blurred by --mask-blur (A1111's overlay); "only masked" pastes the crop back first
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ldm_cli.errors import UsageError
from ldm_cli.pipeline.starts import mask_ops
from ldm_cli.pipeline.loop.noise import plan_noise
from ldm_cli.pipeline.starts.start import Begun, encode_sample, first_timesteps, latent_channels, needs_mask


@dataclass(frozen=True)
class InpaintOptions:
    mask_blur: int = 4
    keep_unmasked: bool = True
    area: str = "whole"
    padding: int = 32
    invert: bool = False
    masked_content: str = "original"
    outpaint: tuple[int, int, int, int] | None = None
    outpaint_fill: str = "mean"


@dataclass
class MaskedStart:
    picture: np.ndarray  # [H, W, 3] uint8: the init image (grown by --outpaint)
    mask: np.ndarray  # [H, W] uint8, 255 = repaint (thresholded, inverted, grown)
    strength: float
    options: InpaintOptions
    init_record: dict
    mask_record: dict
    box: tuple[int, int, int, int] | None = None  # "only masked": the crop, set by prepare()
    work: tuple[np.ndarray, np.ndarray] | None = None  # picture and mask the diffusion sees
    composite_mask: np.ndarray | None = None  # [H, W] uint8: how much of the result shows (0 = the picture's pixel)
    notes: list[str] = field(default_factory=list)  # what was done to the mask file, said once and recorded

    @property
    def size(self) -> tuple[int, int]:
        return self.picture.shape[1], self.picture.shape[0]

    def check_source(self, source) -> None:
        pass  # normal and inpainting models both inpaint

    def prepare(self, components, vae_hash: str | None = None) -> None:
        unet_in, latent = components.unet.config.in_channels, latent_channels(components)
        if needs_mask(components) and unet_in != 2 * latent + 1:
            raise UsageError(f"--model {components.source.spec}: a UNet with {unet_in} input channels is neither a normal "
                             f"({latent}) nor an inpainting ({2 * latent + 1}) model; ldm cannot inpaint with it")
        picture = self.picture
        if self.options.masked_content == "fill":
            picture = mask_ops.blur_fill(picture, self.mask)
        blurred = mask_ops.gaussian_blur(self.mask, self.options.mask_blur)
        self.composite_mask = self._overlay(blurred)
        if self.options.area == "whole":
            self.work = (picture, self.mask)
            return
        self.box = mask_ops.crop_box(blurred, self.options.padding, 1, 1)  # A1111 crops around the blurred mask
        self.work = _crop_and_resize(picture, self.mask, self.box, components.native_size)

    def fit_plan(self, plan):
        width, height = self.size
        return replace(plan, height=height, width=width)

    def begin(self, components, device, dtype, scheduler, generator, plan) -> Begun:
        vae = components.vae
        pixels, mask = self.work
        nine_channels = needs_mask(components)
        full_strength = self.strength == 1.0
        timesteps = first_timesteps(scheduler, plan.steps, self.strength)
        image_latents = None
        if not nine_channels or not full_strength:
            image_latents = encode_sample(vae, pixels, device, dtype, generator)
        shape = (1, latent_channels(components), pixels.shape[0] // components.vae_scale_factor,
                 pixels.shape[1] // components.vae_scale_factor)
        noise = plan_noise(shape, generator, dtype, device, plan)
        if full_strength:
            latents = noise * scheduler.init_noise_sigma
        else:
            latents = scheduler.add_noise(image_latents, noise, timesteps[:1])
        mask_full = torch.from_numpy((mask >= 128).astype(np.float32))[None, None]  # [1, 1, H, W]
        latent_mask = torch.nn.functional.interpolate(mask_full, size=shape[-2:]).to(device, dtype)  # [1, 1, h, w]
        if nine_channels:
            masked_latents = _encode_masked(vae, pixels, mask_full, device, dtype, generator)
            return Begun(latents, timesteps, unet_extra=torch.cat([latent_mask, masked_latents], dim=1))
        torch.randn(shape, generator=generator, dtype=vae.dtype)  # diffusers' unused masked-picture sample
        return Begun(latents, timesteps, after_step=_blend(scheduler, image_latents, noise, latent_mask, timesteps))

    def finish(self, image) -> np.ndarray:
        """The decoded image [1, 3, h, w] in [0, 1] -> the final picture [H, W, 3] uint8."""
        from PIL import Image

        from ldm_cli.pipeline.codec.latents import to_uint8

        result = to_uint8(image)[0]
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            pasted = self.picture.copy()
            pasted[y1:y2, x1:x2] = np.asarray(Image.fromarray(result).resize((x2 - x1, y2 - y1), Image.Resampling.LANCZOS))
            result = pasted
        if not self.options.keep_unmasked:
            return result
        return mask_ops.composite(self.picture, result, self.composite_mask)

    def _overlay(self, blurred: np.ndarray) -> np.ndarray:
        """How much of the generated result shows at each pixel (0 = the picture's own pixel)."""
        overlay = mask_ops.overlay_mask(blurred, only_masked=self.options.area == "masked")
        if self.options.outpaint is not None:  # the original area is kept, except where --mask repaints it
            x1, y1, x2, y2 = _original_area(self.size, self.options.outpaint)
            inside = overlay[y1:y2, x1:x2]
            inside[self.mask[y1:y2, x1:x2] == 0] = 0
        return overlay

    def record(self) -> dict:
        o = self.options
        inpaint = {
            **self.mask_record, "mask_blur": o.mask_blur, "keep_unmasked": o.keep_unmasked, "inpaint_area": o.area,
            "inpaint_padding": o.padding, "invert_mask": o.invert, "masked_content": o.masked_content,
            "outpaint": list(o.outpaint) if o.outpaint else None, "outpaint_fill": o.outpaint_fill if o.outpaint else None,
            "crop_box": list(self.box) if self.box else None, "notes": self.notes,
        }
        if self.work is not None:
            inpaint["work_size"] = [int(self.work[0].shape[1]), int(self.work[0].shape[0])]
        return {"img2img": self.init_record, "inpaint": inpaint}


def _encode_masked(vae, pixels, mask_full, device, dtype, generator) -> torch.Tensor:
    """The masked picture's latents, built as diffusers builds them: to [-1, 1] first, then x (mask < 0.5)."""
    from ldm_cli.files.image_io import to_tensor
    from ldm_cli.pipeline.codec import vae_ops

    masked = to_tensor(pixels) * (mask_full < 0.5)
    return vae_ops.encode(vae, masked.to(device, dtype), sample=True, generator=generator).latents.to(dtype)


def _blend(scheduler, image_latents, noise, latent_mask, timesteps):
    """4-channel inpainting: after step i, the known part is the init noised to step i+1's level."""

    def after_step(index: int, latents: torch.Tensor) -> torch.Tensor:
        known = image_latents
        if index < len(timesteps) - 1:
            known = scheduler.add_noise(image_latents, noise, torch.tensor([timesteps[index + 1]]))
        return (1 - latent_mask) * known + latent_mask * latents

    return after_step


def _crop_and_resize(picture, mask, box, native: int):
    """'Only masked': the crop at about the model's native area, sides multiples of 8."""
    from PIL import Image

    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    scale = native / (width * height) ** 0.5
    size = (max(64, round(width * scale / 8) * 8), max(64, round(height * scale / 8) * 8))
    crop = Image.fromarray(picture[y1:y2, x1:x2]).resize(size, Image.Resampling.LANCZOS)
    crop_mask = Image.fromarray(mask[y1:y2, x1:x2]).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(crop), np.where(np.asarray(crop_mask) >= 128, 255, 0).astype(np.uint8)


def _original_area(size, sides):
    from ldm_cli.pipeline.starts.outpaint import original_area

    return original_area(size, sides)


def load_masked(settings, init) -> MaskedStart:
    """Read the mask (or make the outpaint one), check it, and build the start; no model is loaded."""
    from ldm_cli.files.masks import load_mask
    from ldm_cli.pipeline.starts import outpaint

    options = inpaint_options(settings)
    picture = init.image.pixels
    mask, notes, mask_record = None, [], {"mask": None, "mask_sha256": None}
    if settings.mask is not None:
        loaded = load_mask(settings.mask, init.size)
        notes += loaded.notes
        mask = np.where(loaded.binary, 255, 0).astype(np.uint8)
        mask_record = {"mask": str(Path(settings.mask).resolve()), "mask_sha256": loaded.sha256}
        if options.invert:
            mask = 255 - mask
    if options.outpaint is not None:
        _check_grown_size(init.size, options.outpaint)
        picture, mask = outpaint.grow(picture, mask, options.outpaint, options.outpaint_fill)
    _check_mask_does_something(settings.mask, mask, options.invert)
    return MaskedStart(picture, mask, init.strength, options, init.record(), mask_record, notes=notes)


def inpaint_options(settings) -> InpaintOptions:
    from ldm_cli.pipeline.starts.outpaint import parse_outpaint

    return InpaintOptions(
        mask_blur=settings.mask_blur if settings.mask_blur is not None else 4,
        keep_unmasked=settings.keep_unmasked if settings.keep_unmasked is not None else True,
        area=settings.inpaint_area or "whole",
        padding=settings.inpaint_padding if settings.inpaint_padding is not None else 32,
        invert=bool(settings.invert_mask),
        masked_content=settings.masked_content or "original",
        outpaint=parse_outpaint(settings.outpaint) if settings.outpaint else None,
        outpaint_fill=settings.outpaint_fill or "mean",
    )


def _check_grown_size(size, sides) -> None:
    from ldm_cli.pipeline.config import MAX_SIZE
    from ldm_cli.pipeline.starts.outpaint import grown_size

    width, height = grown_size(size, sides)
    if max(width, height) > MAX_SIZE:
        raise UsageError(f"--outpaint {','.join(map(str, sides))}: the {size[0]}x{size[1]} picture would grow to "
                         f"{width}x{height}, over {MAX_SIZE} pixels a side; grow it less or shrink it with --dim")


def _check_mask_does_something(path, mask: np.ndarray, inverted: bool) -> None:
    name = f"--mask {path}" + (" (inverted)" if inverted else "")
    if not mask.any():
        raise UsageError(f"{name} is all black: nothing would be repainted; paint white where the picture should change")
    if mask.all():
        raise UsageError(f"{name} is all white: everything would be repainted, which is plain img2img; "
                         "drop --mask (and use --strength), or paint black where the picture must stay")
