"""Fetching a Hub model (or finding it in the HF cache): only the files that will be read.

The default weights of each component, or the --variant's where the repo has them (a component
without that variant falls back to its default weights, as diffusers does). A repo holding only fp16
weights for a component gets those, as a folder would.
"""

from __future__ import annotations

from pathlib import Path

from ldm_cli.errors import ModelError
from ldm_cli.models.variants import choose_weights, has_variant

COMPONENTS = ("tokenizer", "text_encoder", "vae", "unet", "scheduler")
WEIGHT_COMPONENTS = ("text_encoder", "vae", "unet")
CONFIGS = ["model_index.json", "tokenizer/*", *(f"{c}/*.json" for c in COMPONENTS)]


def default_patterns(components, allow_pickle: bool) -> tuple[list[str], list[str]]:
    """(allow, ignore) for the default weights of `components`, and every config."""
    ignore = ["*.fp16.*", "*.fp16-*", "*non_ema*", "*.msgpack", "*.onnx", "*.onnx_data", "*.h5", "*.ckpt"]
    if not allow_pickle:
        ignore += ["*.bin", "*.pt", "*.pth"]
    return CONFIGS + [f"{c}/*" for c in components], ignore


def variant_patterns(components, variant: str, allow_pickle: bool) -> tuple[list[str], list[str]]:
    """(allow, ignore) for the `variant` weights of `components` (single files, shards, shard index)."""
    suffixes = ["safetensors", *(["bin"] if allow_pickle else [])]
    allow = list(CONFIGS)
    for c in components:
        for suffix in suffixes:
            allow += [f"{c}/*.{variant}.{suffix}", f"{c}/*.{variant}-*.{suffix}"]
        allow.append(f"{c}/*.index.{variant}.json")
    return allow, []


def model_snapshot(spec: str, revision: str | None, offline: bool, allow_pickle: bool, variant: str | None) -> Path:
    weights = list(WEIGHT_COMPONENTS)
    if variant:
        folder = download(spec, revision, *variant_patterns(weights, variant, allow_pickle), offline)
        weights = [c for c in weights if not has_variant(folder / c, variant)]
    folder = download(spec, revision, *default_patterns(weights, allow_pickle), offline)
    if not variant:
        bare = [c for c in weights if not _has_default_weights(folder / c, allow_pickle)]
        if bare:
            folder = download(spec, revision, *variant_patterns(bare, "fp16", allow_pickle), offline)
    return folder


def _has_default_weights(component_dir: Path, allow_pickle: bool) -> bool:
    try:
        return choose_weights(component_dir, None, allow_pickle).variant is None
    except ModelError:
        return False


def download(spec: str, revision: str | None, allow: list[str], ignore: list[str], offline: bool,
             flag: str = "--model") -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(snapshot_download(spec, revision=revision, allow_patterns=allow, ignore_patterns=ignore or None,
                                      local_files_only=offline))
    except LocalEntryNotFoundError:
        if offline:
            raise ModelError(
                f"{flag} {spec}: not in the Hugging Face cache and offline mode is on; "
                "run once without --offline/HF_HUB_OFFLINE, or pass a local folder or .safetensors file"
            ) from None
        raise ModelError(
            f"{flag} {spec}: the Hugging Face Hub could not be reached and it is not in the cache; "
            "check your connection, or pass a local folder or .safetensors file"
        ) from None
    except RevisionNotFoundError:
        raise ModelError(f"--revision {revision}: no such revision of {spec}") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{flag} {spec}: no such Hub repository (or it is private; run `hf auth login`)") from None
    except OSError as exc:  # network failures surface as OSError subclasses
        raise ModelError(f"{flag} {spec}: could not reach the Hub ({exc}); retry or use --offline") from None
