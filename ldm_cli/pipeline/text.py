"""Prompts -> CLIP text embeddings [B, 77, hidden], and a report of what truncation dropped."""

from __future__ import annotations


def dropped_words(tokenizer, prompt: str) -> str:
    """The part of a prompt beyond the tokenizer's window (77 positions incl. start/end tokens)."""
    ids = tokenizer(prompt, truncation=False, add_special_tokens=False).input_ids
    room = tokenizer.model_max_length - 2  # start and end tokens take two positions
    if len(ids) <= room:
        return ""
    return tokenizer.decode(ids[room:]).strip()


def encode_prompts(tokenizer, text_encoder, prompts: list[str]):
    """Tokenize to the model's window (padding to max length, as SD1 was trained) and encode."""
    import torch

    tokens = tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        hidden = text_encoder(tokens.input_ids.to(text_encoder.device))[0]  # [B, 77, hidden]
    return hidden.to(text_encoder.dtype)
