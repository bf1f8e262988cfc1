"""Settings for each command as frozen dataclasses, validated before any model loads."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ldm_cli.errors import UsageError

MAX_SEED = 2**64 - 1
MIN_SIZE, MAX_SIZE = 64, 2048
PREVIEW_MODES = ("preview", "exact")


@dataclass(frozen=True)
class ModelSettings:
    model: str | None = None  # None -> $LDM_MODEL -> the SD1.5 Hub id
    revision: str | None = None
    offline: bool = False
    allow_pickle: bool = False
    config: Path | None = None  # component configs for a single-file checkpoint
    device: str = "auto"
    dtype: str = "auto"


@dataclass(frozen=True)
class GenerateSettings:
    prompts: tuple[str, ...]
    negative_prompt: str = ""
    steps: int = 50
    guidance: float = 7.5
    seed: int | None = None  # None -> random, printed and recorded
    height: int | None = None  # None -> the model's native size
    width: int | None = None
    scheduler: str | None = None  # None -> the model's own scheduler
    num_images: int = 1
    out: Path | None = None  # file or folder; None -> ./outputs/
    save_intermediates: bool = False
    every: int = 1
    intermediates_mode: str = "preview"
    loras: tuple[str, ...] = ()  # "FILE:SCALE" each, applied in order after loading
    json_output: bool = False
    model: ModelSettings = field(default_factory=ModelSettings)

    def to_record(self) -> dict:
        record = asdict(self)
        record["out"] = str(self.out) if self.out else None
        record["model"]["config"] = str(self.model.config) if self.model.config else None
        return record


def validate_generate(s: GenerateSettings) -> None:
    """Every check that needs no model. Raises UsageError naming the flag, the value and the fix."""
    from ldm_cli.schedulers import spec_for

    if not s.prompts:
        raise UsageError("no prompt given; pass a prompt or --prompts-file FILE")
    for prompt in s.prompts:
        if not prompt.strip():
            raise UsageError("the prompt is empty; describe the image, e.g. ldm generate \"a scarlet macaw\"")
    _check_range("--steps", s.steps, 1, 1000)
    if not math.isfinite(s.guidance) or s.guidance < 0:
        raise UsageError(f"--guidance {s.guidance}: must be a finite number >= 0 (7.5 is typical, 1 disables guidance)")
    for flag, value in (("--height", s.height), ("--width", s.width)):
        if value is not None:
            _check_size(flag, value)
    _check_range("--num-images", s.num_images, 1, 10_000)
    if s.seed is not None:
        _check_range("--seed", s.seed, 0, MAX_SEED)
        if s.seed + s.num_images - 1 > MAX_SEED:
            raise UsageError(f"--seed {s.seed} with -n {s.num_images}: image seeds would pass 2^64-1; use a smaller seed")
    if s.scheduler is not None:
        spec_for(s.scheduler)
    _check_range("--every", s.every, 1, 1000)
    if s.intermediates_mode not in PREVIEW_MODES:
        raise UsageError(f"--intermediates {s.intermediates_mode!r}: choose preview or exact")
    check_writable_output(s.out)


def _check_range(flag: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise UsageError(f"{flag} {value}: must be between {low} and {high}")


def _check_size(flag: str, value: int) -> None:
    if not MIN_SIZE <= value <= MAX_SIZE or value % 8:
        raise UsageError(f"{flag} {value}: must be a multiple of 8 between {MIN_SIZE} and {MAX_SIZE} (e.g. 512)")


def check_writable_output(out: Path | None) -> None:
    """The output folder (or the folder of an output file) must exist or be creatable, and writable."""
    target = Path(out) if out else Path("outputs")
    if target.suffix.lower() in {".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}:
        raise UsageError(f"--out {target}: ldm writes PNG (its metadata lives in PNG text chunks); use a .png name or a folder")
    folder = target if output_is_folder(target) else target.parent
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {target}: {existing} is a file, not a folder; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {target}: {existing} is not writable; choose another --out")


def output_is_folder(out: Path) -> bool:
    """An --out with an image suffix is a file name; anything else is a folder."""
    return out.suffix.lower() != ".png"
