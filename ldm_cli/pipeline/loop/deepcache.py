"""Training-free feature caching (DeepCache, Ma et al. 2023) on diffusers' UNet2DConditionModel.

Adjacent denoising steps change the UNet's deep features very little; its shallowest skip branch
carries what changes. `--cache-interval N` makes every Nth step a full UNet pass and remembers the
feature map that enters the LAST layer (resnet [+ transformer]) of the final up block; on the steps
in between only the shallow path runs:

    full step    conv_in -> down blocks -> mid -> up blocks ... -> [h, skip0] -> last layer -> conv_out
    cached step  conv_in ------------------------------------------> [h*, skip0] -> last layer -> conv_out
                 (h* = h from the last full step; skip0 = conv_in of this step's input)

That is DeepCache's default branch for Stable Diffusion (cache_branch_id 0, its "uniform" schedule),
read from its DeepCacheSDHelper: everything but conv_in, that last layer and the output head is reused.
Deeper branches (more of the UNet re-run) are not offered. N = 1 never caches: the plain UNet runs.
"""

from __future__ import annotations

import torch


def supports_caching(unet) -> str | None:
    """None when the UNet has the SD layout the shallow path rebuilds; else why not (caching is then off)."""
    config = unet.config
    if getattr(unet, "class_embedding", None) is not None or config.get("addition_embed_type"):
        return "its time embedding takes class or added conditions"
    last = unet.up_blocks[-1]
    if getattr(last, "upsamplers", None) or not getattr(last, "resnets", None):
        return "its last up block is not resnets without an upsampler"
    if config.get("center_input_sample"):
        return "it centres its input sample"
    return None


class CachedUNet:
    """Called like the UNet in sampling.predict_noise; one instance per denoising loop (state = one image)."""

    def __init__(self, unet, interval: int):
        self.unet = unet
        self.interval = interval
        self.config = unet.config
        self.step = 0
        self.call = 0  # UNet calls within this step (two when cond and uncond run separately)
        self.cached: dict[int, torch.Tensor] = {}
        self.full_steps = 0

    def begin_step(self, index: int) -> None:
        self.step, self.call = index, 0

    def __call__(self, sample, timestep, encoder_hidden_states=None, return_dict=False, timestep_cond=None):
        call, self.call = self.call, self.call + 1
        if self.step % self.interval == 0 or call not in self.cached:
            return (self._full(sample, timestep, encoder_hidden_states, timestep_cond, call),)
        return (self.shallow(sample, timestep, encoder_hidden_states, timestep_cond, self.cached[call]),)

    def _full(self, sample, timestep, encoder_hidden_states, timestep_cond, call):
        last = self.unet.up_blocks[-1].resnets[-1]
        skip_channels = self.unet.conv_in.out_channels

        def remember(module, args):
            self.cached[call] = args[0][:, :-skip_channels]  # h, without this step's conv_in skip

        handle = last.register_forward_pre_hook(remember)
        try:
            extra = {} if timestep_cond is None else {"timestep_cond": timestep_cond}
            out = self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False, **extra)[0]
        finally:
            handle.remove()
        self.full_steps += 1
        return out

    def shallow(self, sample, timestep, encoder_hidden_states, timestep_cond, deep):
        """conv_in, the final up block's last layer on [deep, skip0], and the output head."""
        u = self.unet
        emb = u.time_embedding(u.get_time_embed(sample=sample, timestep=timestep), timestep_cond)
        if u.time_embed_act is not None:
            emb = u.time_embed_act(emb)
        skip = u.conv_in(sample)
        block = u.up_blocks[-1]
        h = block.resnets[-1](torch.cat([deep, skip], dim=1), emb)
        attentions = getattr(block, "attentions", None)
        if attentions:
            h = attentions[-1](h, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
        if u.conv_norm_out is not None:
            h = u.conv_act(u.conv_norm_out(h))
        return u.conv_out(h)


def cached_unet(unet, interval: int):
    """The UNet itself for interval 1 (or a layout the shallow path does not know), else a CachedUNet."""
    if interval <= 1 or supports_caching(unet) is not None:
        return unet
    return CachedUNet(unet, interval)
