"""Which weight files of a diffusers component folder get loaded, chosen as diffusers chooses them.

A component folder of a real release can hold several copies of the same weights:

    unet/diffusion_pytorch_model.safetensors            the default (full precision)
    unet/diffusion_pytorch_model.fp16.safetensors       variant "fp16"
    unet/diffusion_pytorch_model.non_ema.safetensors    variant "non_ema" (for training; not the default)
    unet/diffusion_pytorch_model.bin                    pickle copy of the default
    unet/diffusion_pytorch_model.safetensors.index.json + diffusion_pytorch_model-0000N-of-0000M.safetensors
                                                        the default, sharded (.index.fp16.json for a variant)

Exactly one of them is used, and only its files are hashed for provenance. The order: the asked
variant (else the default), safetensors before pickle; a folder holding only variant weights (an
fp16-only download) loads that variant, as `from_pretrained(..., variant="fp16")` would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ldm_cli.errors import ModelError, UsageError

STEMS = ("diffusion_pytorch_model", "model", "pytorch_model")  # diffusers models, transformers models (new, old)
SAFE_SUFFIX = "safetensors"
PICKLE_WEIGHT_SUFFIXES = ("bin", "ckpt", "pt", "pth")
PREFERRED_FALLBACK_VARIANTS = ("fp16", "bf16")  # when only variants exist: the ones made for inference first
_VARIANT = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class WeightChoice:
    """The files one component loads: all of them together are the component's weights."""

    files: tuple[Path, ...]
    variant: str | None  # the variant these files are (None: the default weights)
    safetensors: bool

    @property
    def loader_kwargs(self) -> dict:
        """What from_pretrained needs to pick these same files."""
        return {"variant": self.variant, "use_safetensors": self.safetensors}


def validate_variant(variant: str | None) -> None:
    if variant is not None and not _VARIANT.match(variant):
        raise UsageError(f"--variant {variant!r}: a variant is a short name like fp16 (the part in diffusion_pytorch_model.fp16.safetensors)")


def choose_weights(component_dir: Path, variant: str | None, allow_pickle: bool) -> WeightChoice:
    """The weight files `component_dir` loads for `variant` (None: the default weights)."""
    found = _all_choices(component_dir)
    order = [variant, None] if variant else [None, *PREFERRED_FALLBACK_VARIANTS, *sorted(_variants(found))]
    for safetensors in (True, False):
        for candidate in order:
            choice = found.get((candidate, safetensors))
            if choice is None:
                continue
            if not safetensors and not allow_pickle:
                raise ModelError(
                    f"{component_dir}: only pickle weights ({choice.files[0].name}); pickle files can run code when "
                    "loaded, so convert them to .safetensors or pass --allow-pickle if you trust the source"
                )
            return choice
    raise ModelError(
        f"{component_dir}: no weight file (diffusion_pytorch_model.safetensors or model.safetensors, a variant such as "
        "*.fp16.safetensors, or a sharded *.safetensors.index.json); re-download or re-export the model"
    )


def has_variant(component_dir: Path, variant: str) -> bool:
    return any(v == variant for v, _ in _all_choices(component_dir))


def _variants(found: dict) -> set[str]:
    return {v for v, _ in found if v is not None}


def _all_choices(component_dir: Path) -> dict[tuple[str | None, bool], WeightChoice]:
    """Every complete set of weights in the folder, keyed by (variant, is_safetensors)."""
    if not component_dir.is_dir():
        return {}
    names = {p.name for p in component_dir.iterdir() if p.is_file()}
    found: dict[tuple[str | None, bool], WeightChoice] = {}
    for suffix in (SAFE_SUFFIX, *PICKLE_WEIGHT_SUFFIXES):
        safe = suffix == SAFE_SUFFIX
        for stem in STEMS:
            for name in sorted(names):
                variant = _single_file_variant(name, stem, suffix)
                if variant is not False and (variant, safe) not in found:
                    found[(variant, safe)] = WeightChoice((component_dir / name,), variant, safe)
                variant = _index_variant(name, stem, suffix)
                if variant is not False and (variant, safe) not in found:
                    shards = _shards(component_dir / name)
                    if shards:
                        found[(variant, safe)] = WeightChoice(shards, variant, safe)
    return found


def _single_file_variant(name: str, stem: str, suffix: str):
    """'diffusion_pytorch_model.safetensors' -> None, '….fp16.safetensors' -> 'fp16', anything else -> False."""
    if name == f"{stem}.{suffix}":
        return None
    m = re.fullmatch(rf"{re.escape(stem)}\.([A-Za-z0-9_]+)\.{suffix}", name)
    return m[1] if m else False


def _index_variant(name: str, stem: str, suffix: str):
    """'….safetensors.index.json' -> None, '….safetensors.index.fp16.json' (or legacy '….fp16.index.json') -> 'fp16'."""
    if name == f"{stem}.{suffix}.index.json":
        return None
    m = re.fullmatch(rf"{re.escape(stem)}\.{suffix}\.index\.([A-Za-z0-9_]+)\.json", name) or re.fullmatch(
        rf"{re.escape(stem)}\.{suffix}\.([A-Za-z0-9_]+)\.index\.json", name
    )
    return m[1] if m else False


def _shards(index: Path) -> tuple[Path, ...]:
    """The shard files an index names; empty when the index is unreadable or a shard is missing."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    shards = tuple(index.parent / name for name in sorted(set(weight_map.values())))
    return shards if shards and all(p.is_file() for p in shards) else ()
