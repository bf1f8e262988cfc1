"""Turn `ldm generate` flags (plus --prompts-file and --from) into validated GenerateSettings."""

from __future__ import annotations

from pathlib import Path

from ldm_cli.commands.generate_flags import GenerateFlags
from ldm_cli.pipeline.config import GenerateSettings, ModelSettings, validate_generate
from ldm_cli.models.backends import check_backend
from ldm_cli.models.devices import check_device_and_dtype
from ldm_cli.errors import InputFileError, UsageError
from ldm_cli.models.lora import parse_lora_arg
from ldm_cli.models.variants import validate_variant
from ldm_cli.models.performance import PerformanceSettings
from ldm_cli.pipeline.starts.inpaint_settings import check_recorded_files, inpaint_from_record
from ldm_cli.commands.recipe_settings import RECIPE_FLAGS, from_a1111_recipe, from_record_recipe, recipe_settings
from ldm_cli.pipeline.loop.schedule_types import resolve_sampler
from ldm_cli.pipeline.batch import check_batch

DEFAULTS = {"steps": 50, "guidance": 7.5, "num_images": 1, "negative_prompt": ""}


def build_settings(flags: GenerateFlags) -> GenerateSettings:
    """Precedence: explicit flag > value recorded in --from image > default."""
    values = dict(DEFAULTS)
    recorded = {}
    if flags.from_image is not None:
        recorded = settings_from_image(flags.from_image, flags.lora_dir, flags.embeddings_dir)
    values.update(recorded)
    explicit = _explicit_settings(flags)
    unknown_sampler = values.pop("unknown_sampler", None)
    if unknown_sampler is not None and explicit.get("scheduler") is None:
        raise UsageError(f"--from {flags.from_image}: {_unknown_sampler_text(unknown_sampler)}")
    if flags.dim is not None:
        check_dim(flags.dim)
        explicit.setdefault("height", flags.dim)
        explicit.setdefault("width", flags.dim)
    if "scheduler" in explicit and "schedule_type" not in explicit:
        values.pop("schedule_type", None)  # a recorded schedule type belongs to the recorded sampler
    values.update(explicit)
    if flags.from_image is not None:
        check_recorded_files(flags.from_image, values, explicit)
    prompts = _prompts(flags, values.pop("prompt", None))
    if values.get("scheduler") is not None:  # A1111 names ("DPM++ 2M Karras") -> ours and a schedule type
        values["scheduler"], values["schedule_type"] = resolve_sampler(values["scheduler"], values.get("schedule_type"))
    if "tcd_gamma" not in explicit and values.get("scheduler") != "tcd":
        values.pop("tcd_gamma", None)  # a recorded gamma belongs to the recorded tcd sampler
    for flag, text in [("PROMPT", p) for p in prompts] + [("--negative-prompt", values["negative_prompt"])]:
        check_text(flag, text)
    check_device_and_dtype(flags.device, flags.dtype)
    if flags.backend == "openvino":
        _drop_recorded_torch_only(values, explicit)
    check_backend(flags.backend, device=flags.device, dtype=flags.dtype, compile=flags.compile_unet,
                  channels_last=flags.channels_last, cache_interval=values.get("cache_interval", 1) or 1,
                  attention_maps=flags.attention_maps, token_merging=float(values.get("token_merging") or 0))
    settings = GenerateSettings(
        prompts=prompts,
        negative_prompt=values["negative_prompt"],
        steps=values["steps"],
        guidance=float(values["guidance"]),
        seed=values.get("seed"),
        height=values.get("height"),
        width=values.get("width"),
        scheduler=values.get("scheduler"),
        num_images=values["num_images"],
        out=flags.out,
        loras=tuple(str(parse_lora_arg(v)) for v in flags.lora or values.get("loras") or ()),
        save_intermediates=flags.save_intermediates,
        every=flags.every,
        intermediates_mode=flags.intermediates,
        json_output=flags.json_output,
        init_image=values.get("init_image"),
        init_latents=values.get("init_latents"),
        strength=values.get("strength"),
        resize=flags.resize,
        performance=PerformanceSettings(
            channels_last=flags.channels_last, compile=flags.compile_unet,
            offload=flags.offload, vae_tiling=flags.vae_tiling, backend=flags.backend,
        ),
        dry_run=flags.dry_run,
        **{key: values.get(key) for key in INPAINT_FLAGS},
        recipe=recipe_settings(values),
        lora_dirs=tuple(flags.lora_dir or ()),
        embeddings=tuple(flags.embedding or values.get("embeddings") or ()),
        embeddings_dirs=tuple(flags.embeddings_dir or ()),
        recorded_model_hash=values.get("recorded_model_hash"),
        recorded_tag_loras=tuple(values.get("recorded_tag_loras", {}).items()),
        attention_maps=flags.attention_maps,
        prompts_from_file=flags.prompts_file is not None,
        resume=flags.resume,
        cache_interval=values.get("cache_interval", 1),
        token_merging=float(values.get("token_merging", 0.0)),
        guidance_default=flags.guidance is None and "guidance" not in recorded,
        model=ModelSettings(
            model=flags.model or values.get("model"),
            revision=flags.revision or values.get("revision"),
            offline=flags.offline,
            allow_pickle=flags.allow_pickle,
            config=flags.config,
            device=flags.device,
            dtype=flags.dtype,
            variant=flags.variant or values.get("variant"),
            vae=flags.vae or values.get("vae"),
            ema=flags.ema or values.get("ema", False),
        ),
    )
    validate_generate(settings)
    check_batch(settings)
    validate_variant(settings.model.variant)
    check_network_flags(settings)
    if settings.model.config is not None and not settings.model.config.is_dir():
        raise UsageError(f"--config {settings.model.config}: not a folder of component configs")
    return settings


def _explicit_settings(flags: GenerateFlags) -> dict:
    """The settings flags the user gave (not None), which override what --from recorded."""
    return {name: getattr(flags, name) for name in _SETTING_FLAGS if getattr(flags, name) is not None}


def check_dim(dim: int) -> None:
    """--dim is checked under its own name (it sets --height and --width)."""
    from ldm_cli.pipeline.config import MAX_SIZE, MIN_SIZE

    if not MIN_SIZE <= dim <= MAX_SIZE or dim % 8:
        raise UsageError(f"--dim {dim}: must be a multiple of 8 between {MIN_SIZE} and {MAX_SIZE} (e.g. 512)")


def check_text(flag: str, text: str) -> None:
    """Arguments arrive with undecodable bytes as surrogates; the tokenizer cannot take them."""
    from ldm_cli.errors import printable

    bad = next((i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        raise UsageError(f"{flag} {printable(text)!s}: not valid UTF-8 text (an undecodable byte at character {bad + 1}); "
                         "fix the text's encoding (your terminal or file should use UTF-8)")


def _unknown_sampler_text(sampler: str) -> str:
    return (f"its A1111 Sampler {sampler!r} is not one ldm knows, so this would not replay the image; "
            "pass --scheduler NAME to choose one (see `ldm schedulers`)")


INPAINT_FLAGS = ("mask", "mask_blur", "keep_unmasked", "inpaint_area", "inpaint_padding", "invert_mask",
                 "masked_content", "outpaint", "outpaint_fill")
_SETTING_FLAGS = {"cache_interval", "token_merging", "steps", "guidance", "seed", "height", "width", "negative_prompt", "scheduler", "num_images",
                  "init_image", "init_latents", "strength", *INPAINT_FLAGS, *RECIPE_FLAGS}


def _prompts(flags: GenerateFlags, recorded_prompt: str | None) -> tuple[str, ...]:
    if flags.prompt is not None and flags.prompts_file is not None:
        raise UsageError("pass either a PROMPT or --prompts-file, not both")
    if flags.prompts_file is not None:
        return read_prompts_file(flags.prompts_file)
    if flags.prompt is not None:
        return (flags.prompt,)
    if recorded_prompt is not None:
        return (recorded_prompt,)
    raise UsageError("no prompt given; pass a prompt, --prompts-file FILE or --from IMAGE.png")


def read_prompts_file(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"--prompts-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--prompts-file {path}: cannot read it as UTF-8 text ({exc})") from None
    prompts = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not prompts:
        raise UsageError(f"--prompts-file {path}: no prompts in it (one per line; '#' lines are skipped)")
    return prompts


def check_network_flags(settings: GenerateSettings) -> None:
    """--embedding files and the LoRA/embedding folders exist (before any model loads)."""
    from ldm_cli.models import network_files
    from ldm_cli.models.embeddings import parse_embedding_arg

    for value in settings.embeddings:
        parse_embedding_arg(value, settings.model.allow_pickle)
    network_files.folders("--lora-dir", settings.lora_dirs, network_files.LORA_DIR_ENV)
    network_files.folders("--embeddings-dir", settings.embeddings_dirs, network_files.EMBEDDINGS_DIR_ENV)


def _drop_recorded_torch_only(values: dict, explicit: dict) -> None:
    """What a --from image recorded that only the torch UNet can run is dropped for --backend openvino,
    with one warning; the same flags typed by the user are refused (check_backend)."""
    dropped = []
    if "cache_interval" not in explicit and (values.get("cache_interval") or 1) > 1:
        dropped.append(f"--cache-interval {values.pop('cache_interval')}")
    if "token_merging" not in explicit and values.get("token_merging"):
        dropped.append(f"--token-merging {values.pop('token_merging'):g}")
    if dropped:
        _warn(f"warning: --backend openvino runs the recorded {' and '.join(dropped)} without it "
              "(both need the torch UNet); the picture may differ")


def _warn(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def settings_from_image(path: Path, lora_dirs=None, embedding_dirs=None) -> dict:
    """The settings an ldm PNG recorded; an A1111 infotext (PNG chunk, JPEG/WebP EXIF) or a Fooocus record works too."""
    from ldm_cli.files.metadata import parse_a1111, read_png_metadata
    from ldm_cli.pipeline.records.replay import networks_from_record, warn_missing_a1111_embeddings

    try:
        chunks = read_png_metadata(path)
    except InputFileError as exc:
        raise UsageError(f"--from: {exc}") from None
    record = chunks["ldm"]
    if record is not None and "prompt" not in record:
        raise UsageError(f"--from {path}: made by `ldm {record.get('command', '?')}`, not `ldm generate`; it records no prompt")
    if record is not None:
        from ldm_cli.files.recorded_settings import settings_from_record

        values = settings_from_record(record, path)  # the fields every record has, type-checked
        s = record["settings"]
        model = record.get("model") if isinstance(record.get("model"), dict) else {}
        vae = model.get("vae") if isinstance(model.get("vae"), dict) else {}
        return {
            **values,
            "vae": vae.get("spec"), "variant": model.get("variant"), "ema": model.get("ema", False),
            **_img2img_from_record(record.get("img2img")),
            **inpaint_from_record(record.get("inpaint"), record.get("img2img")),
            **from_record_recipe(s),
            **networks_from_record(record, path, lora_dirs, embedding_dirs, _warn),
            **({"cache_interval": s["cache_interval"]} if s.get("cache_interval", 1) != 1 else {}),
            **({"token_merging": s["token_merging"]} if s.get("token_merging") else {}),
        }
    if chunks["parameters"]:
        if chunks.get("fooocus") is not None:
            from ldm_cli.files.foreign_metadata import fooocus_unreplayed

            ignored = fooocus_unreplayed(chunks["fooocus"])
            if ignored:
                _warn(f"warning: --from {path}: Fooocus settings ldm does not replay: {', '.join(ignored)}")
        parsed = parse_a1111(chunks["parameters"])
        values = _from_a1111(parsed)
        if parsed["fields"].get("Model hash"):
            values["recorded_model_hash"] = parsed["fields"]["Model hash"]
        warn_missing_a1111_embeddings(parsed["fields"], path, embedding_dirs, _warn)
        return values
    raise UsageError(f"--from {path}: the PNG has no ldm or A1111 generation metadata")


def _img2img_from_record(img2img: dict | None) -> dict:
    """An img2img image re-runs from the same init file (it must still be where it was)."""
    if not img2img:
        return {}
    key = "init_image" if "init_image" in img2img else "init_latents"
    return {key: Path(img2img[key]), "strength": img2img["strength"]}


def _from_a1111(parsed: dict) -> dict:
    fields = parsed["fields"]
    values = {"prompt": parsed["prompt"], "negative_prompt": parsed["negative_prompt"]}
    try:
        if "Steps" in fields:
            values["steps"] = int(fields["Steps"])
        if "CFG scale" in fields:
            values["guidance"] = float(fields["CFG scale"])
        if "Seed" in fields:
            values["seed"] = int(fields["Seed"])
        if "Size" in fields:
            values["width"], values["height"] = (int(v) for v in fields["Size"].split("x"))
        values.update(from_a1111_recipe(fields))  # Sampler, Schedule type, Clip skip, Hires, ...; warns once
    except ValueError:
        raise UsageError("--from: the A1111 parameters in the PNG are malformed") from None
    return values


