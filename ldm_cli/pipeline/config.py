"""Settings for each command as frozen dataclasses, validated before any model loads."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ldm_cli.errors import UsageError
from ldm_cli.models.performance import PerformanceSettings

MAX_SEED = 2**64 - 1
MIN_SIZE, MAX_SIZE = 64, 2048
DEFAULT_STRENGTH = 0.75  # img2img
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
    variant: str | None = None  # --variant fp16: which weight files of a folder/Hub model
    vae: str | None = None  # --vae PATH|HUB_ID replacing the model's VAE
    ema: bool = False  # --ema: a single file's model_ema.* UNet weights


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
    init_image: Path | None = None  # img2img: start from this picture ...
    init_latents: Path | None = None  # ... or from these latents (ldm encode)
    strength: float | None = None  # img2img: None -> 0.75
    resize: str | None = None  # how --init-image reaches --height/--width; None -> crop
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)  # --compile, --offload, ...
    dry_run: bool = False  # print the resolved plan and a memory estimate; load nothing
    mask: Path | None = None  # inpainting (pipeline/starts/inpaint.py): white = repaint; None below -> the defaults
    mask_blur: int | None = None  # None -> 4
    keep_unmasked: bool | None = None  # None -> True
    inpaint_area: str | None = None  # whole | masked; None -> whole
    inpaint_padding: int | None = None  # None -> 32
    invert_mask: bool | None = None
    masked_content: str | None = None  # original | fill; None -> original
    outpaint: str | None = None  # "LEFT,TOP,RIGHT,BOTTOM" pixels
    outpaint_fill: str | None = None  # mean | edge; None -> mean
    recipe: object | None = None  # recipe.RecipeSettings: prompt syntax, clip skip, variation, hires...; None -> defaults
    lora_dirs: tuple[Path, ...] = ()  # where <lora:NAME:W> tags are looked up; () -> $LDM_LORA_DIR
    embeddings: tuple[str, ...] = ()  # --embedding FILE[:TOKEN], installed after loading
    embeddings_dirs: tuple[Path, ...] = ()  # embeddings named in a prompt; () -> $LDM_EMBEDDINGS_DIR
    recorded_model_hash: str | None = None  # --from: the model hash the image records (warned about if it differs)
    recorded_tag_loras: tuple[tuple[str, str], ...] = ()  # --from: (tag name, file) its <lora:> tags resolved to
    attention_maps: bool = False  # also write <name>-attention.png/.safetensors (ldm_cli.explain)
    prompts_from_file: bool = False  # --prompts-file: a batch (pipeline/batch.py: manifest, deterministic names)
    resume: bool = False  # --resume: skip the jobs the folder's manifest already lists
    guidance_default: bool = False  # no --g given: lcm and tcd pick their own (guidance.resolved_guidance)
    cache_interval: int = 1  # --cache-interval N: DeepCache, a full UNet pass every Nth step (pipeline/loop/deepcache.py)
    token_merging: float = 0.0  # --token-merging R: ToMe, merge R of the full-resolution tokens (models/token_merging.py)

    def to_record(self) -> dict:
        record = asdict(self)
        record["out"] = str(self.out) if self.out else None
        for key in ("init_image", "init_latents", "mask"):
            record[key] = str(record[key]) if record[key] else None
        record["model"]["config"] = str(self.model.config) if self.model.config else None
        for key in ("lora_dirs", "embeddings_dirs"):
            record[key] = [str(p) for p in record[key]]
        return record


def validate_generate(s: GenerateSettings) -> None:
    """Every check that needs no model. Raises UsageError naming the flag, the value and the fix."""
    from ldm_cli.pipeline.loop.schedulers import spec_for

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
    _check_range("--cache-interval", s.cache_interval, 1, 1000)
    _check_token_merging(s.token_merging)
    if s.intermediates_mode not in PREVIEW_MODES:
        raise UsageError(f"--intermediates {s.intermediates_mode!r}: choose preview or exact")
    from ldm_cli.pipeline.starts.inpaint_settings import validate_inpaint

    validate_inpaint(s)
    _validate_img2img(s)
    if s.recipe is not None:
        from ldm_cli.pipeline.records.recipe import validate_recipe

        validate_recipe(s.recipe, s)
    check_writable_output(s.out)
    from ldm_cli.pipeline.records.networks import check_prompt_tags

    check_prompt_tags(s.prompts, s.negative_prompt)


def kept_steps(steps: int, strength: float) -> tuple[int, int]:
    """img2img (t_start, steps run), as diffusers' get_timesteps, before t_start * scheduler.order."""
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    return t_start, steps - t_start


def check_strength(strength: float, steps: int) -> None:
    """--strength must be in (0, 1] and leave at least one denoising step."""
    if not (0 < strength <= 1):  # also false for NaN
        raise UsageError(f"--strength {strength}: must be above 0 and at most 1 (0.75 is typical; 1 keeps little of the image)")
    if kept_steps(steps, strength)[1] < 1:
        raise UsageError(
            f"--strength {strength} with --steps {steps} runs no denoising step (int(steps x strength) = 0); "
            "raise --strength or --steps"
        )


def _validate_img2img(s: GenerateSettings) -> None:
    from ldm_cli.files.image_io import SizePolicy

    if s.init_image is not None and s.init_latents is not None:
        raise UsageError("pass either --init-image or --init-latents, not both")
    init = s.init_image if s.init_image is not None else s.init_latents
    if init is None:
        if s.strength is not None:
            raise UsageError(f"--strength {s.strength}: only used with --init-image or --init-latents")
        if s.resize is not None:
            raise UsageError(f"--resize {s.resize}: only used with --init-image")
        return
    flag = "--init-image" if s.init_image is not None else "--init-latents"
    if not init.exists():
        raise UsageError(f"{flag} {init}: no such file")
    if init.is_dir():
        raise UsageError(f"{flag} {init}: is a folder; pass one file")
    if s.resize is not None and s.init_latents is not None:
        raise UsageError(f"--resize {s.resize}: only used with --init-image (latents cannot be resized)")
    SizePolicy(resize=s.resize or "crop").validate()
    masked = s.mask is not None or s.outpaint is not None
    check_strength((1.0 if masked else DEFAULT_STRENGTH) if s.strength is None else s.strength, s.steps)


def _check_token_merging(ratio: float) -> None:
    from ldm_cli.models.token_merging import MAX_RATIO

    if not (math.isfinite(ratio) and 0 <= ratio <= MAX_RATIO):
        raise UsageError(f"--token-merging {ratio}: must be between 0 (off) and {MAX_RATIO} (0.5 is typical)")


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
