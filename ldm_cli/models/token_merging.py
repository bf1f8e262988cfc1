"""Token merging for Stable Diffusion (ToMe for SD, Bolya & Hoffman 2023) on diffusers' UNet.

Self-attention at the UNet's full latent resolution costs O(N^2) in its N = h*w tokens, and
neighbouring tokens there are often near copies. Before each such self-attention, r = ratio * N
tokens are merged away by bipartite soft matching:

    destinations  one token per 2x2 cell of the h x w grid (its top-left); sources: all the others
    similarity    cosine of the transformer block's input features, source x destination
    merge         each source's best destination; the r sources with the highest best similarity
                  are averaged into their destinations, the other sources stay as they are
    attention     runs on the N - r tokens left (attn1 only; cross-attention and the MLP see all N)
    unmerge       its output is copied back to every merged source, so the block returns N tokens

These are the settings A1111 uses by default (tomesd with max downsample 1, stride 2x2, no random
destination), so a picture is reproducible from its recorded ratio ("Token merging ratio").
It changes the picture a little, so it is off unless asked; it pays more the larger the image
(README: 1.33x per step at 512 px and 1.68x at 768 px at ratio 0.5 on a 2-core CPU).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

MAX_RATIO = 0.9  # A1111's slider limit; more leaves too few tokens to attend to


def cells(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(destination, source) token positions of an h x w grid, row-major: a destination per whole 2x2 cell."""
    rows = torch.arange(h, device=device).view(h, 1)
    cols = torch.arange(w, device=device).view(1, w)
    is_destination = ((rows % 2 == 0) & (cols % 2 == 0) & (rows < h - h % 2) & (cols < w - w % 2)).flatten()
    return is_destination.nonzero().squeeze(1), (~is_destination).nonzero().squeeze(1)


class Matching:
    """Which sources merge into which destinations, for one block's tokens [B, N, C] on an h x w grid."""

    def __init__(self, metric: torch.Tensor, h: int, w: int, ratio: float):
        self.destinations, self.sources = cells(h, w, metric.device)
        self.count = min(int(metric.shape[1] * ratio), self.sources.numel())  # r
        unit = metric / metric.norm(dim=-1, keepdim=True)
        scores = unit[:, self.sources] @ unit[:, self.destinations].transpose(1, 2)  # [B, sources, destinations]
        best, partner = scores.max(dim=-1)
        order = best.argsort(dim=-1, descending=True)  # most similar first
        self.merged, self.kept = order[:, :self.count], order[:, self.count:]  # indices into the sources
        self.partner = partner.gather(1, self.merged)  # [B, r]: index into the destinations

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> [B, N - r, C]: kept sources, then destinations averaged with their merged sources."""
        channels = x.shape[-1]
        sources, destinations = x[:, self.sources], x[:, self.destinations]
        kept = sources.gather(1, _expand(self.kept, channels))
        moving = sources.gather(1, _expand(self.merged, channels))
        destinations = destinations.scatter_reduce(1, _expand(self.partner, channels), moving, reduce="mean")
        return torch.cat([kept, destinations], dim=1)

    def unmerge(self, y: torch.Tensor) -> torch.Tensor:
        """[B, N - r, C] -> [B, N, C]: each merged source gets its destination's output."""
        batch, channels = y.shape[0], y.shape[-1]
        kept_count = self.kept.shape[1]
        kept, destinations = y[:, :kept_count], y[:, kept_count:]
        out = y.new_empty(batch, self.sources.numel() + self.destinations.numel(), channels)
        out[:, self.destinations] = destinations
        positions = self.sources.expand(batch, -1)
        out.scatter_(1, _expand(positions.gather(1, self.kept), channels), kept)
        out.scatter_(1, _expand(positions.gather(1, self.merged), channels),
                     destinations.gather(1, _expand(self.partner, channels)))
        return out


def _expand(index: torch.Tensor, channels: int) -> torch.Tensor:
    return index.unsqueeze(-1).expand(-1, -1, channels)


class _Hooks:
    """Forward hooks that merge before each full-resolution self-attention and unmerge after it."""

    def __init__(self, ratio: float):
        self.ratio = ratio
        self.grid: tuple[int, int] | None = None  # the latent's h, w, from the UNet call (or DeepCache's full step)
        self.matching: Matching | None = None
        self.handles = []

    def record_grid(self, _unet, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.grid = tuple(sample.shape[-2:])

    def plan_block(self, _block, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        h, w = self.grid or (0, 0)
        full_resolution = hidden.dim() == 3 and hidden.shape[1] == h * w
        self.matching = Matching(hidden, h, w, self.ratio) if full_resolution and self.ratio > 0 else None

    def merge_input(self, _attention, args, kwargs):
        if self.matching is None:
            return None
        if args:
            return (self.matching.merge(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": self.matching.merge(kwargs["hidden_states"])}

    def unmerge_output(self, _attention, _args, _kwargs, output):
        return output if self.matching is None else self.matching.unmerge(output)


def why_nothing_merges(unet) -> str | None:
    """None when ToMe can merge in this UNet; else why not (it is then off, and the record says 0)."""
    from diffusers.models.attention import BasicTransformerBlock

    if not isinstance(unet, torch.nn.Module):  # OpenVINO's stand-in: hooks would end up in its export
        return "the UNet runs in OpenVINO (--backend openvino), not in torch"
    outer = [unet.down_blocks[0], unet.up_blocks[-1]]
    if not any(isinstance(m, BasicTransformerBlock) for block in outer for m in block.modules()):
        return "this UNet has no self-attention at full latent resolution, where ToMe merges tokens"
    return None


@contextmanager
def merging_tokens(unet, ratio: float):
    """Token merging on `unet` for the duration of the block (nothing when ratio is 0); hooks are removed after."""
    if not ratio or why_nothing_merges(unet):
        yield
        return
    from diffusers.models.attention import BasicTransformerBlock

    hooks = _Hooks(ratio)
    hooks.handles.append(unet.register_forward_pre_hook(hooks.record_grid, with_kwargs=True))
    for block in unet.modules():
        if isinstance(block, BasicTransformerBlock):
            hooks.handles += [
                block.register_forward_pre_hook(hooks.plan_block, with_kwargs=True),
                block.attn1.register_forward_pre_hook(hooks.merge_input, with_kwargs=True),
                block.attn1.register_forward_hook(hooks.unmerge_output, with_kwargs=True),
            ]
    try:
        yield
    finally:
        for handle in hooks.handles:
            handle.remove()
