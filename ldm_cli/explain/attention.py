"""Cross-attention maps per prompt token, DAAM-style (Tang et al. 2022, "What the DAAM").

While recording, every cross-attention module of the UNet (diffusers names them `attn2`) gets a
processor that first computes softmax(Q K^T / sqrt(d)) itself and keeps it, then calls the module's
own processor unchanged, so the picture is exactly the one made without recording. Nothing is
installed when recording is off.

Aggregation, for the conditional half of the guidance batch only:
    heads    mean over heads
    layers   each layer's map [h', w'] upsampled bilinearly to the latent size [h, w], then the mean
    steps    mean over the sampling steps

Normalisation: at every latent pixel, the 77 positions' values are a probability distribution (they
sum to 1), because each softmax row is one and means and bilinear upsampling keep sums. A word's
map is the sum of its tokens' maps: the share of that pixel's attention its word received.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


class RecordingProcessor:
    """Wraps one attn2 module's processor: keeps the attention probabilities, returns its output unchanged."""

    def __init__(self, original, recorder: "AttentionRecorder"):
        self.original = original
        self.recorder = recorder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is not None and hidden_states.ndim == 3:
            self.recorder.add(_probabilities(attn, hidden_states, encoder_hidden_states))
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


def _probabilities(attn, hidden_states, encoder_hidden_states) -> torch.Tensor:
    """softmax(Q K^T * scale) of the batch's last element (the conditional half): [heads, h'w', 77]."""
    context = encoder_hidden_states[-1:]
    if attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    query = attn.head_to_batch_dim(attn.to_q(hidden_states[-1:]))  # [heads, h'w', d]
    key = attn.head_to_batch_dim(attn.to_k(context))  # [heads, 77, d]
    return attn.get_attention_scores(query, key, None).float()


class AttentionRecorder:
    """Sums upsampled per-layer maps over layers and steps; `token_maps` is their mean [77, h, w]."""

    def __init__(self, latent_size: tuple[int, int]):
        self.latent_size = latent_size
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, probs: torch.Tensor) -> None:
        h, w = self.latent_size
        pixels = probs.shape[1]
        factor = round((h * w / pixels) ** 0.5)  # the layer works at (h/factor, w/factor)
        maps = probs.mean(0).T.reshape(1, -1, h // factor, w // factor)  # [1, 77, h', w']
        maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)[0].cpu()
        self.total = maps if self.total is None else self.total + maps
        self.count += 1

    @property
    def token_maps(self) -> torch.Tensor:
        if self.total is None:
            raise RuntimeError("no cross-attention was recorded (the UNet has no attn2 modules)")
        return self.total / self.count


def cross_attention_modules(unet):
    from diffusers.models.attention_processor import Attention

    return [(name, m) for name, m in unet.named_modules() if name.endswith("attn2") and isinstance(m, Attention)]


@contextmanager
def recording(unet, latent_size: tuple[int, int]):
    """Install recording processors on the UNet's attn2 modules for the block; restore the originals after."""
    recorder = AttentionRecorder(latent_size)
    modules = cross_attention_modules(unet)
    originals = [m.processor for _, m in modules]
    for (_, module), original in zip(modules, originals):
        module.processor = RecordingProcessor(original, recorder)
    try:
        yield recorder
    finally:
        for (_, module), original in zip(modules, originals):
            module.processor = original


@dataclass
class WordMaps:
    words: list[str]
    token_positions: list[list[int]]  # the prompt positions (1 = the first token after <start>) of each word
    tokens: list[str]  # all 77 positions' tokens
    token_maps: torch.Tensor  # [77, h, w], each pixel a distribution over positions
    word_maps: torch.Tensor  # [words, h, w], sums of their tokens' maps


def words_of(tokenizer, prompt: str) -> tuple[list[str], list[list[int]], list[str]]:
    """Group the prompt's BPE tokens into words (CLIP marks a word's last token with '</w>')."""
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    words, positions, current, pieces = [], [], [], []
    for position, token in enumerate(tokens):
        if ids[position] in (tokenizer.bos_token_id, tokenizer.eos_token_id):
            if ids[position] == tokenizer.eos_token_id:
                break
            continue
        current.append(position)
        pieces.append(token.removesuffix("</w>"))
        if token.endswith("</w>"):
            words.append("".join(pieces))
            positions.append(current)
            current, pieces = [], []
    if current:
        words.append("".join(pieces))
        positions.append(current)
    return words, positions, tokens


def word_maps(tokenizer, prompt: str, token_maps: torch.Tensor) -> WordMaps:
    words, positions, tokens = words_of(tokenizer, prompt)
    maps = torch.stack([token_maps[p].sum(0) for p in positions]) if positions else token_maps[:0]
    return WordMaps(words, positions, tokens, token_maps, maps)


def upsample(word_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A [h, w] map at image size [H, W] (bilinear), for overlays and comparisons with pixel masks."""
    return F.interpolate(word_map[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
