"""Prompts -> CLIP text embeddings [B, 77, hidden], and a report of what truncation dropped."""

from __future__ import annotations


def dropped_words(tokenizer, prompt: str) -> str:
    """The part of a prompt beyond the tokenizer's window (77 positions incl. start/end tokens), in the
    user's own words: cut from the original text (from the start of a word cut in two), not decoded
    from tokens (which would be lower-cased and re-spaced)."""
    room = tokenizer.model_max_length - 2  # start and end tokens take two positions
    try:
        encoding = tokenizer(prompt, truncation=False, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoding.input_ids, encoding.offset_mapping
    except (NotImplementedError, TypeError, ValueError):  # a slow tokenizer has no offsets
        ids, offsets = tokenizer(prompt, truncation=False, add_special_tokens=False).input_ids, None
    if len(ids) <= room:
        return ""
    cut = offsets[room][0] if offsets is not None else _cut_by_words(tokenizer, prompt, room)
    while cut > 0 and not prompt[cut - 1].isspace():
        cut -= 1  # the word the window ends in is (partly) dropped: show it whole
    return prompt[cut:].strip()


def _cut_by_words(tokenizer, prompt: str, room: int) -> int:
    """Where the first word that does not fit starts, by tokenising longer and longer prefixes."""
    import re

    for match in re.finditer(r"\S+", prompt):
        if len(tokenizer(prompt[: match.end()], add_special_tokens=False).input_ids) > room:
            return match.start()
    return len(prompt)


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
