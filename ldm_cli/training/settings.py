"""`ldm finetune` settings: one frozen dataclass, validated before any model loads."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ldm_cli.pipeline.config import ModelSettings
from ldm_cli.errors import UsageError

METHODS = ("lora", "full")
MIXED_PRECISION = ("no", "fp16", "bf16")
CROPS = ("center", "random")
LR_SCHEDULES = ("constant", "cosine")
LORA_FORMATS = ("diffusers", "kohya")
DEFAULT_LR = {"lora": 1e-4, "full": 1e-5}
DEFAULT_CAPTION_DROPOUT = {"lora": 0.0, "full": 0.1}
DEFAULT_MAX_STEPS = 1000
VALIDATION_FILE = Path("prompts") / "validation.txt"  # in the working folder, else beside the package


def default_validation_file() -> Path | None:
    for candidate in (VALIDATION_FILE, Path(__file__).resolve().parents[2] / VALIDATION_FILE):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class FinetuneSettings:
    data: Path
    output: Path
    method: str = "lora"
    rank: int = 16
    alpha: float | None = None  # None -> rank (scale 1)
    lora_format: str = "diffusers"
    train_text_encoder: bool = False
    max_steps: int | None = None  # None with epochs None -> DEFAULT_MAX_STEPS
    epochs: int | None = None
    batch_size: int = 1
    grad_accum: int = 1
    lr: float | None = None  # None -> DEFAULT_LR[method]
    lr_schedule: str = "constant"
    lr_warmup: int = 0
    max_grad_norm: float = 1.0
    resolution: int | None = None  # None -> the model's native size
    crop: str = "center"
    flip: bool = False
    buckets: bool = True
    seed: int = 0
    snr_gamma: float | None = None
    noise_offset: float = 0.0
    caption_dropout: float | None = None  # None -> DEFAULT_CAPTION_DROPOUT[method]
    ema: bool = True  # full fine-tuning only
    ema_decay: float = 0.9999
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    keep: int = 3
    resume: str | None = None  # "latest" or a checkpoint folder
    validate_every: int = 0  # 0 -> only at the end when prompts are given
    validation_prompts: tuple[str, ...] = ()
    validation_steps: int = 25
    check_only: bool = False
    strict: bool = False
    model: ModelSettings = field(default_factory=ModelSettings)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def dropout(self) -> float:
        return self.caption_dropout if self.caption_dropout is not None else DEFAULT_CAPTION_DROPOUT[self.method]

    @property
    def lora_alpha(self) -> float:
        return self.alpha if self.alpha is not None else float(self.rank)

    def to_record(self) -> dict:
        record = asdict(self)
        record.update(data=str(self.data), output=str(self.output), learning_rate=self.learning_rate,
                      caption_dropout=self.dropout, lora_alpha=self.lora_alpha)
        record["model"]["config"] = str(self.model.config) if self.model.config else None
        return record


METHOD_OF_OPTION = {"rank": "lora", "alpha": "lora", "lora_format": "lora", "ema": "full", "ema_decay": "full"}


def method_options(method: str, **options) -> dict:
    """The --method-specific options that were given (None: not given), as settings fields. One that
    only the other method uses is refused (exit 2) rather than silently unused: --rank with full..."""
    given = {name: value for name, value in options.items() if value is not None}
    for name, value in given.items():
        owner = METHOD_OF_OPTION[name]
        if method in METHODS and method != owner:
            flag = "--no-ema" if name == "ema" else "--" + name.replace("_", "-")
            shown = flag if isinstance(value, bool) else f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"
            raise UsageError(f"{shown}: only --method {owner} uses it; drop it, or pass --method {owner}")
    return given


def validate_finetune(s: FinetuneSettings) -> None:
    """Every check that needs no model; raises UsageError naming the flag, the value and the fix."""
    if not s.data.is_dir():
        raise UsageError(f"DATA {s.data}: no such folder; pass a folder of images with captions")
    _choice("--method", s.method, METHODS)
    _choice("--mixed-precision", s.mixed_precision, MIXED_PRECISION)
    _choice("--crop", s.crop, CROPS)
    _choice("--lr-schedule", s.lr_schedule, LR_SCHEDULES)
    _choice("--lora-format", s.lora_format, LORA_FORMATS)
    _range("--rank", s.rank, 1, 1024)
    _range("--batch-size", s.batch_size, 1, 4096)
    _range("--grad-accum", s.grad_accum, 1, 4096)
    _range("--lr-warmup", s.lr_warmup, 0, 10**9)
    _range("--checkpoint-every", s.checkpoint_every, 1, 10**9)
    _range("--keep", s.keep, 1, 10**6)
    _range("--validate-every", s.validate_every, 0, 10**9)
    _range("--validation-steps", s.validation_steps, 1, 1000)
    _range("--seed", s.seed, 0, 2**32 - 1)
    if s.max_steps is not None:
        _range("--max-steps", s.max_steps, 1, 10**9)
    if s.epochs is not None:
        _range("--epochs", s.epochs, 1, 10**6)
    if s.resolution is not None and (s.resolution % 64 or not 64 <= s.resolution <= 2048):
        raise UsageError(f"--resolution {s.resolution}: must be a multiple of 64 between 64 and 2048 (e.g. 512)")
    _positive("--lr", s.lr)
    _positive("--alpha", s.alpha)
    _positive("--max-grad-norm", s.max_grad_norm)
    if s.snr_gamma is not None:
        _positive("--snr-gamma", s.snr_gamma)
    if not (math.isfinite(s.noise_offset) and 0 <= s.noise_offset <= 1):
        raise UsageError(f"--noise-offset {s.noise_offset}: must be between 0 and 1 (0.05-0.1 is typical)")
    if s.caption_dropout is not None and not 0 <= s.caption_dropout < 1:
        raise UsageError(f"--caption-dropout {s.caption_dropout}: must be in [0, 1) (0.1 is typical)")
    if not 0 < s.ema_decay < 1:
        raise UsageError(f"--ema-decay {s.ema_decay}: must be between 0 and 1 (0.9999 is typical)")
    for prompt in s.validation_prompts:
        if not prompt.strip():
            raise UsageError("--validation-prompt is empty; describe an image to render during training")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in prompt):
            raise UsageError("--validation-prompt: not valid UTF-8 text (an undecodable byte in it); fix its encoding")
    if s.resume not in (None, "latest"):
        path = Path(s.resume)
        if not (path / "state.json").is_file():
            raise UsageError(f"--resume {s.resume}: not a complete checkpoint folder (no state.json); "
                             "pass 'latest' or a checkpoints/checkpoint-NNNNNN folder")
    _check_output(s)


def _check_output(s: FinetuneSettings) -> None:
    out = s.output
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out}: is a file; choose a folder name")
    if not s.check_only and s.resume is None and (out / "run.json").exists():
        why = _work_in(out)
        if why:
            raise UsageError(f"--output {out}: already holds a run ({why}); pass --resume latest to continue it, "
                             "or choose another --output")
    data, target = s.data.resolve(), out.resolve()
    if target == data:
        raise UsageError(f"--output {out}: is the data folder; choose another folder")


def _work_in(out: Path) -> str | None:
    """What a run folder holds that a fresh start would lose, or None: a run that failed before its
    first checkpoint holds nothing, so a plain re-run may start it over."""
    import json

    from ldm_cli.files.images import process_alive
    from ldm_cli.training.checkpoints import list_checkpoints

    try:
        record = json.loads((out / "run.json").read_text())
        status, pid = record.get("status"), record.get("pid")
    except (OSError, ValueError, AttributeError):
        return "its run.json is unreadable"
    if status == "finished":
        return "a finished run"
    if list_checkpoints(out):
        return "checkpoints"
    if status == "running" and (not isinstance(pid, int) or process_alive(pid)):
        return "a run that is still going" if isinstance(pid, int) else "a run with status running"
    return None


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{flag} {value!r}: choose one of {', '.join(choices)}")


def _range(flag: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise UsageError(f"{flag} {value}: must be between {low} and {high}")


def _positive(flag: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} {value}: must be a finite number > 0")
