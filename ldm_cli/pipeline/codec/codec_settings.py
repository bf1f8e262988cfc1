"""The settings of `ldm encode` and `ldm decode`, and the checks that need no model (exit 2, one line each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.pipeline.config import MAX_SEED, ModelSettings
from ldm_cli.errors import UsageError
from ldm_cli.files.image_io import SizePolicy, expand_inputs
from ldm_cli.files.latent_files import SUFFIX


@dataclass(frozen=True)
class EncodeSettings:
    inputs: tuple[Path, ...]
    out: Path | None = None  # folder, or a .latent.safetensors file for one input; None -> ./
    sample: bool = False
    seed: int | None = None
    size: SizePolicy = SizePolicy()
    tile: bool | None = None  # None -> automatic above the size threshold
    report: bool = False
    visualize: bool = False
    json_output: bool = False
    model: ModelSettings = field(default_factory=ModelSettings)


@dataclass(frozen=True)
class DecodeSettings:
    inputs: tuple[Path, ...]
    out: Path | None = None  # folder, or a .png file for one input; None -> ./
    tile: bool | None = None
    json_output: bool = False
    model: ModelSettings = field(default_factory=ModelSettings)
    model_given: bool = False  # --model passed explicitly (else the model recorded in the file)


def validate_encode(s: EncodeSettings) -> list[Path]:
    """Checks that need no model; returns the image files (folders expanded)."""
    if s.seed is not None and not s.sample:
        raise UsageError(f"--seed {s.seed}: the posterior mean is deterministic; add --sample to draw a seeded sample")
    if s.seed is not None and not 0 <= s.seed <= MAX_SEED:
        raise UsageError(f"--seed {s.seed}: must be between 0 and {MAX_SEED}")
    s.size.validate()
    files = _existing(s.inputs, "IMAGE", expand=True)
    _check_out(s.out, SUFFIX, len(files))
    return files


def validate_decode(s: DecodeSettings) -> list[Path]:
    files = _existing(s.inputs, "LATENTS", expand=False)
    _check_out(s.out, ".png", len(files))
    return files


def output_path(out: Path | None, file_suffix: str, name: str) -> Path:
    """-o FILE for one input, else `name` inside the -o folder (or ./)."""
    if out is not None and out.name.endswith(file_suffix):
        return out
    return (out or Path(".")) / name


def _existing(inputs, what: str, expand: bool) -> list[Path]:
    if not inputs:
        raise UsageError(f"no {what} given; see the examples in --help")
    missing = [p for p in inputs if not Path(p).exists()]
    if missing:
        raise UsageError(f"{missing[0]}: no such file or folder")
    if expand:
        return expand_inputs(list(inputs))
    folders = [p for p in inputs if Path(p).is_dir()]
    if folders:
        raise UsageError(f"{folders[0]}: is a folder; pass the latent files themselves (e.g. {folders[0]}/*{SUFFIX})")
    return [Path(p) for p in inputs]


def _check_out(out: Path | None, file_suffix: str, count: int) -> None:
    if out is None:
        return
    if out.name.endswith(file_suffix):
        if count > 1:
            raise UsageError(f"-o {out}: one file name for {count} inputs; pass a folder instead")
        folder = out.parent
    elif out.suffix and not out.is_dir():
        raise UsageError(f"-o {out}: use a folder, or a file name ending in {file_suffix}")
    else:
        folder = out
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"-o {out}: {existing} is a file, not a folder; choose another -o")
