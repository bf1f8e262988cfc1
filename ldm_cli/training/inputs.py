"""Training inputs: latents of the images (cached on disk) and caption embeddings (cached when frozen).

    image --resize/crop/flip--> [3, H, W] in [-1, 1] --VAE (float32)--> mean * scaling_factor [4, H/8, W/8]
    caption --CLIP--> [77, D]   (only when the text encoder is frozen; otherwise per batch, with grad)
"""

from __future__ import annotations

import torch

from ldm_cli.training.buckets import prepare_pixels
from ldm_cli.training.cache import TensorCache, cache_key
from ldm_cli.training.data import Item, load_rgb


class Latents:
    """Latents for (item, flipped); center crops are computed once and kept on disk and in memory."""

    def __init__(self, items: list[Item], vae, vae_hash: str, crop: str, flip: bool, cache: TensorCache):
        self.items, self.vae, self.vae_hash, self.crop, self.flip, self.cache = items, vae, vae_hash, crop, flip, cache
        self.memory: dict[tuple[int, bool], torch.Tensor] = {}

    def precompute(self, progress=None) -> None:
        if self.crop != "center":
            return  # random crops differ every time: encoded per batch
        for index in range(len(self.items)):
            for flipped in ((False, True) if self.flip else (False,)):
                self.memory[(index, flipped)] = self._cached(index, flipped)
            if progress is not None:
                progress()

    def batch(self, indices, generator: torch.Generator, device) -> torch.Tensor:
        """[B, 4, h, w] for one batch (all items share a bucket); flips and crops drawn from generator."""
        flips = torch.rand(len(indices), generator=generator) < 0.5
        out = []
        for index, flip in zip(indices, flips.tolist()):
            flip = flip and self.flip
            if self.crop == "center":
                out.append(self.memory[(index, flip)])
            else:
                offset = tuple(torch.rand(2, generator=generator).tolist())
                out.append(self._encode(index, offset, flip))
        return torch.stack(out).to(device)

    def _cached(self, index: int, flip: bool) -> torch.Tensor:
        item = self.items[index]
        key = cache_key("latents-v1", item.sha256, item.bucket, "center", flip, self.vae_hash)
        return self.cache.get_or_compute(key, lambda: self._encode(index, (0.5, 0.5), flip))

    @torch.no_grad()
    def _encode(self, index: int, offset, flip: bool) -> torch.Tensor:
        item = self.items[index]
        pixels = torch.from_numpy(prepare_pixels(load_rgb(item.path), item.bucket, offset, flip))[None]
        vae = self.vae
        mean = vae.encode(pixels.to(vae.device, torch.float32)).latent_dist.mean
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return ((mean - shift) * vae.config.scaling_factor)[0].float().cpu()  # [4, h, w]


class Captions:
    """Caption -> embedding [77, D]; cached once when the text encoder is frozen."""

    def __init__(self, tokenizer, text_encoder, te_hash: str, trainable: bool, cache: TensorCache):
        self.tokenizer, self.text_encoder, self.te_hash, self.trainable, self.cache = tokenizer, text_encoder, te_hash, trainable, cache
        self.memory: dict[str, torch.Tensor] = {}

    def precompute(self, captions) -> None:
        if self.trainable:
            return
        for caption in sorted({*captions, ""}):
            key = cache_key("text-v1", caption, self.te_hash)
            self.memory[caption] = self.cache.get_or_compute(key, lambda c=caption: self._encode([c])[0].detach().float().cpu())

    def batch(self, captions: list[str], device) -> torch.Tensor:
        if self.trainable:
            return self._encode(captions)  # with grad
        return torch.stack([self.memory[c] for c in captions]).to(device)

    def _encode(self, captions: list[str]) -> torch.Tensor:
        ids = self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        with torch.set_grad_enabled(self.trainable):
            return self.text_encoder(ids.to(_device_of(self.text_encoder)))[0]  # [B, 77, D]


def _device_of(model) -> torch.device:
    return next(model.parameters()).device
