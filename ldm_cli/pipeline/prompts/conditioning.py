"""Prompts -> CLIP conditioning as A1111 builds it for SD1: [1, 77*k, D], weighted and chunked.

    1. parse the prompt (prompt_weights) into chunks of [BOS] + 75 tokens + [EOS], EOS-padded
    2. encode each chunk separately; with --clip-skip N take hidden_states[-N] and apply the final
       layer norm (A1111 numbering: 1 = the last layer, the same as diffusers' clip_skip=N-1)
    3. emphasis "Original": z *= weight per token, then z *= mean(z before) / mean(z after)
    4. concatenate the chunks along the token axis

A prompt of <= 75 tokens without syntax gives exactly what SD1 pipelines have always given.
"""

from __future__ import annotations

import torch

from ldm_cli.pipeline.prompts.prompt_weights import tokenize_prompt

SYNTAXES = ("a1111", "plain")


def final_layer_norm(text_encoder):
    """transformers 5 keeps it on the model itself, transformers 4 under .text_model."""
    inner = getattr(text_encoder, "text_model", text_encoder)
    return inner.final_layer_norm


def encode_chunk_ids(text_encoder, ids: torch.Tensor, clip_skip: int = 1) -> torch.Tensor:
    """[B, 77] token ids -> [B, 77, D] hidden states at the chosen layer."""
    with torch.no_grad():
        if clip_skip <= 1:
            return text_encoder(ids.to(text_encoder.device))[0]
        out = text_encoder(ids.to(text_encoder.device), output_hidden_states=True)
        return final_layer_norm(text_encoder)(out.hidden_states[-clip_skip])


def apply_emphasis(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis on one chunk: weight each token, then restore the mean."""
    original_mean = z.mean()
    z = z * weights.reshape(weights.shape + (1,)).expand(z.shape)
    new_mean = z.mean()
    return z * (original_mean / new_mean)


class PromptEncoder:
    """Encodes prompts with one tokenizer/text encoder, syntax and clip skip."""

    def __init__(self, tokenizer, text_encoder, syntax: str = "a1111", clip_skip: int = 1):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.syntax = syntax
        self.clip_skip = clip_skip

    def encode(self, prompt: str) -> torch.Tensor:
        """[1, 77*k, D] in the text encoder's dtype."""
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        parts = []
        for chunk in tokenize_prompt(self.tokenizer, prompt, self.syntax):
            ids = list(chunk.tokens)
            if pad is not None and pad != eos:  # SD2-style tokenizers pad after the first EOS (as A1111 does)
                first_eos = ids.index(eos)
                ids = ids[: first_eos + 1] + [pad] * (len(ids) - first_eos - 1)
            z = encode_chunk_ids(self.text_encoder, torch.tensor([ids]), self.clip_skip)
            if any(w != 1.0 for w in chunk.weights):  # all-ones weights leave z exactly as it is
                weights = torch.tensor([chunk.weights], dtype=z.dtype, device=z.device)
                z = apply_emphasis(z, weights)
            parts.append(z)
        return torch.cat(parts, dim=1).to(self.text_encoder.dtype)

    def chunk_count(self, prompt: str) -> int:
        return len(tokenize_prompt(self.tokenizer, prompt, self.syntax))


def pad_with_empty(cond: torch.Tensor, uncond: torch.Tensor, empty: torch.Tensor):
    """A1111's "Pad conds": the shorter of the two gets copies of the empty prompt's chunk."""
    repeats = (cond.shape[1] - uncond.shape[1]) // empty.shape[1]
    if repeats > 0:
        uncond = torch.cat([uncond, empty.repeat(uncond.shape[0], repeats, 1)], dim=1)
    elif repeats < 0:
        cond = torch.cat([cond, empty.repeat(cond.shape[0], -repeats, 1)], dim=1)
    return cond, uncond
