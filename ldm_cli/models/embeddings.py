"""Textual-inversion embeddings: read the files people share, install them into tokenizer + text encoder.

Formats read (A1111 textual_inversion.py create_embedding_from_data, diffusers load_textual_inversion):
  A1111 .safetensors     {"emb_params": [n, D]}, or the flattened {"string_to_param.*": [n, D]}
  A1111 .pt / .bin       {"string_to_param": {"*": [n, D]}, "name": ...}      (pickle: --allow-pickle)
  diffusers              learned_embeds.safetensors / .bin: {token: [D] or [n, D]}
  SDXL                   {"clip_g": ..., "clip_l": ...}                       refused: SDXL is not supported

Installed the way diffusers' load_textual_inversion does, so the pixels match its pipeline: an
n-vector embedding adds the tokens TOKEN, TOKEN_1, ..., TOKEN_{n-1} to the tokenizer, grows the
text encoder's token embedding (text_encoder.get_input_embeddings(), also in transformers 5) and
writes one vector per new row; each TOKEN in a prompt is expanded to "TOKEN TOKEN_1 ... TOKEN_{n-1}"
before tokenizing. Tokens match as whole words, case-insensitively (CLIP lowercases), as A1111
matches an embedding's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ldm_cli.errors import ModelError, UsageError

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".bin")
FAMILY_BY_WIDTH = {768: "SD1.x", 1024: "SD2.x", 1280: "SDXL (clip_g)"}


@dataclass(eq=False)  # holds a tensor: compared by identity
class Embedding:
    path: Path
    token: str  # the word prompts use
    vectors: object  # torch.Tensor [n, D]
    source: str = "flag"  # "flag" (--embedding) or "dir" (named in a prompt, found in --embeddings-dir)
    installed: str | None = None  # the tokenizer entry, when `token` itself is a CLIP word piece ("style")

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def tokens(self) -> list[str]:
        """The tokenizer entries: BASE, BASE_1, ..., BASE_{n-1} (BASE = the token unless it is a word piece)."""
        base = self.installed or self.token
        return [base] + [f"{base}_{i}" for i in range(1, self.count)]


def parse_embedding_arg(value: str, allow_pickle: bool) -> tuple[Path, str | None]:
    """'FILE' or 'FILE:TOKEN' -> (path, token or None); checked before any model loads."""
    path, token = Path(value).expanduser(), None
    if not path.is_file():
        head, sep, tail = value.rpartition(":")
        if sep and head and Path(head).expanduser().is_file():
            path, token = Path(head).expanduser(), tail
    if not path.is_file():
        raise UsageError(f"--embedding {value}: no such file; pass an embedding file, optionally FILE:TOKEN")
    check_embedding_file(path, allow_pickle, f"--embedding {value}")
    if token is not None and not token.strip():
        raise UsageError(f"--embedding {value}: the token after ':' is empty; write FILE:TOKEN or just FILE")
    return path, token


def check_embedding_file(path: Path, allow_pickle: bool, what: str) -> None:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise UsageError(f"{what}: {path.name} is a pickle file, which can run code when loaded; "
                         "use a .safetensors embedding or pass --allow-pickle if you trust the source")
    if suffix not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
        raise UsageError(f"{what}: expected a .safetensors (or, with --allow-pickle, .pt/.bin) embedding file")


def read_embedding(path: Path, allow_pickle: bool = False):
    """The vectors of an embedding file as a float32 tensor [n, D], and the name the file carries (or None)."""
    data = _load(path, allow_pickle)
    return vectors_of(data, path)


def vectors_of(data: dict, path: Path):
    import torch

    if "clip_g" in data or "clip_l" in data:
        raise ModelError(f"{path}: an SDXL embedding (clip_g + clip_l vectors); SDXL is not supported — use an SD1.x embedding")
    name = data.get("name") if isinstance(data.get("name"), str) else None
    if "string_to_param" in data:  # A1111 pickle: a (Parameter)dict with one entry, '*'
        params = getattr(data["string_to_param"], "_parameters", data["string_to_param"])
        tensors = [v for v in params.values()]
    else:
        tensors = [v for k, v in data.items() if isinstance(v, torch.Tensor) and (k == "emb_params" or k.startswith("string_to_param"))]
        if not tensors:
            tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
            if len(tensors) == 1 and name is None:  # diffusers: {token: vector}
                name = next(k for k, v in data.items() if isinstance(v, torch.Tensor))
    if len(tensors) != 1:
        keys = ", ".join(list(data)[:4])
        raise ModelError(f"{path}: not a textual-inversion embedding (expected one vector set; keys: {keys}); "
                         "use `ldm inspect` to see what it is")
    vectors = tensors[0].detach().float().cpu()
    if vectors.dim() == 1:
        vectors = vectors[None]
    if vectors.dim() != 2 or vectors.shape[0] == 0:
        raise ModelError(f"{path}: embedding vectors of shape {tuple(vectors.shape)}; expected [vectors, width]")
    return vectors, name


def _load(path: Path, allow_pickle: bool) -> dict:
    try:
        if path.suffix.lower() in PICKLE_SUFFIXES:
            if not allow_pickle:
                raise UsageError(f"{path.name} is a pickle file; pass --allow-pickle if you trust the source")
            import torch

            data = torch.load(str(path), map_location="cpu", weights_only=False)
        else:
            from safetensors.torch import load_file

            data = load_file(str(path))
    except (UsageError, ModelError):
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors and torch raise many types for bad files
        raise ModelError(f"{path}: not a readable embedding file ({' '.join(str(exc).split())[:160]})") from None
    if not isinstance(data, dict):
        if hasattr(data, "dim"):  # a bare tensor saved with torch.save
            return {"emb_params": data}
        raise ModelError(f"{path}: not a textual-inversion embedding (a pickled {type(data).__name__})")
    return data


def load_embedding(path: Path, token: str | None, allow_pickle: bool, source: str = "flag") -> Embedding:
    vectors, _name = read_embedding(path, allow_pickle)
    return Embedding(path, token or path.stem, vectors, source)


def check_width(embedding: Embedding, width: int) -> None:
    """Refuse vectors made for another model family, naming it."""
    got = int(embedding.vectors.shape[1])
    if got != width:
        theirs = FAMILY_BY_WIDTH.get(got, f"a model with {got}-wide token embeddings")
        ours = FAMILY_BY_WIDTH.get(width, "this model")
        raise ModelError(f"{embedding.path}: an embedding for {theirs} ({got}-wide vectors); this model's text encoder "
                         f"takes {width}-wide vectors ({ours}) — use an embedding trained for this model family")


def install(tokenizer, text_encoder, embeddings: list[Embedding]) -> None:
    """Add each embedding's tokens and vectors (diffusers' load_textual_inversion, steps 4-7)."""
    import torch
    from transformers import AddedToken

    if not embeddings:
        return
    table = text_encoder.get_input_embeddings()
    width = table.weight.shape[1]
    vocab = tokenizer.get_vocab()
    seen: set[str] = set()
    for number, embedding in enumerate(embeddings):
        check_width(embedding, width)
        if embedding.token.lower() in seen:
            raise ModelError(f"{embedding.path}: its token {embedding.token!r} is also another embedding's; "
                             "pick another with --embedding FILE:TOKEN")
        seen.add(embedding.token.lower())
        # A token that is already a CLIP word piece cannot be added (it would overwrite that word's row):
        # it is entered under a private name, and prompts are rewritten to it (A1111 matches such names too).
        taken = any(t.lower() in vocab or t in vocab for t in [embedding.token] + [f"{embedding.token}_{i}" for i in range(1, embedding.count)])
        embedding.installed = f"<ldm-ti-{number}>" if taken else None
    tokens = [t for e in embeddings for t in e.tokens]
    tokenizer.add_tokens([AddedToken(t, single_word=True) for t in tokens])
    text_encoder.resize_token_embeddings(len(tokenizer))
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for embedding in embeddings:
            for token, vector in zip(embedding.tokens, embedding.vectors):
                weight[tokenizer.convert_tokens_to_ids(token)] = vector.to(weight.device, weight.dtype)


def word_pattern(word: str) -> re.Pattern:
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)


def expand_prompt(prompt: str, embeddings: list[Embedding]) -> str:
    """Each multi-vector TOKEN becomes 'TOKEN TOKEN_1 ... TOKEN_{n-1}' (diffusers' maybe_convert_prompt);
    a token entered under a private name is replaced by it."""
    for embedding in embeddings:
        if embedding.count > 1 or embedding.installed:
            first = (lambda m: m.group(0)) if not embedding.installed else (lambda m: embedding.installed)
            prompt = word_pattern(embedding.token).sub(lambda m: " ".join([first(m), *embedding.tokens[1:]]), prompt)
    return prompt


def used_in(embeddings: list[Embedding], *texts: str) -> list[Embedding]:
    """The embeddings whose token appears as a word in any of the texts."""
    return [e for e in embeddings if any(word_pattern(e.token).search(t or "") for t in texts)]
