"""Resolve `--model` to a source, reading no weights.

Sources, in the order they are tried:
  bundled name ("demo")          -> a diffusers folder inside the package
  existing folder                -> diffusers format (model_index.json + component subfolders)
  existing file (.safetensors)   -> single-file SD1.x checkpoint, converted with bundled SD1 configs
  "org/name"                     -> Hugging Face Hub repo, through the normal HF cache
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ldm_cli.errors import ModelError

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
ASSETS = Path(__file__).parent.parent / "assets"
SD15_CONFIG_DIR = ASSETS / "sd15"
BUNDLED_MODELS = {"demo": ASSETS / "demo"}

_HUB_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from; resolving it reads no weights."""

    spec: str  # what the user asked for
    kind: str  # "folder" | "single-file" | "hub" | "bundled"
    path: Path | None  # folder or file on disk; None for a Hub id not yet resolved
    revision: str | None = None

    @property
    def display_name(self) -> str:
        if self.kind == "single-file":
            return self.path.stem
        return self.spec


def default_model_spec() -> str:
    return os.environ.get("LDM_MODEL") or DEFAULT_MODEL


def resolve_source(spec: str | None, revision: str | None = None) -> ModelSource:
    """Turn the --model value into a ModelSource, checking only what can be checked cheaply."""
    spec = spec or default_model_spec()
    if spec in BUNDLED_MODELS:
        path = BUNDLED_MODELS[spec]
        if not (path / "model_index.json").exists():
            raise ModelError(f"the bundled model {spec!r} is not built in this checkout; run `make demo-model`")
        return ModelSource(spec, "bundled", path)
    path = Path(spec).expanduser()
    if path.is_dir():
        return ModelSource(spec, "folder", path)
    if path.is_file():
        return ModelSource(spec, "single-file", path)
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return ModelSource(spec, "hub", None, revision)
    raise ModelError(
        f"--model {spec!r}: no such folder or file, and not a Hub id like 'org/name'; "
        "pass a diffusers folder, a .safetensors checkpoint or a Hub repo id"
    )


def locate_hub_snapshot(
    source: ModelSource, offline: bool, allow_pickle: bool, variant: str | None = None
) -> ModelSource:
    """Download (or find in the HF cache) the files a Hub model needs; return it as a folder source."""
    from ldm_cli.models.hub import model_snapshot

    folder = model_snapshot(source.spec, source.revision, offline or _env_flag("HF_HUB_OFFLINE"), allow_pickle, variant)
    return ModelSource(source.spec, "hub", folder, source.revision)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
