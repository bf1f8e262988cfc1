"""Resolve `--model` to a source (no weights read), then load its components.

Sources, in the order they are tried:
  bundled name ("demo")          -> a diffusers folder inside the package
  existing folder                -> diffusers format (model_index.json + component subfolders)
  existing file (.safetensors)   -> single-file SD1.x checkpoint, converted with bundled SD1 configs
  "org/name"                     -> Hugging Face Hub repo, through the normal HF cache
Which weight files of a folder are read: models/variants.py; single files: models/single_file.py;
--vae: models/vae_override.py.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.errors import ModelError, UsageError
from ldm_cli.models import single_file
from ldm_cli.models.variants import choose_weights, has_variant

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
ASSETS = Path(__file__).parent.parent / "assets"
SD15_CONFIG_DIR = ASSETS / "sd15"
BUNDLED_MODELS = {"demo": ASSETS / "demo"}

COMPONENTS = ("tokenizer", "text_encoder", "vae", "unet", "scheduler")
WEIGHT_COMPONENTS = ("text_encoder", "vae", "unet")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
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


@dataclass
class Components:
    """The loaded parts of an SD1-family model, plus what provenance needs."""

    source: ModelSource
    tokenizer: object
    text_encoder: object
    vae: object
    unet: object
    scheduler_config: dict
    weight_files: dict[str, list[Path]] = field(default_factory=dict)
    vae_source: object | None = None  # a VaeSource when --vae replaced the model's own VAE
    variant: str | None = None  # the --variant asked for (each component's files: weight_files)
    ema: bool = False  # a single file's EMA UNet weights were used

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        return self.unet.config.sample_size * self.vae_scale_factor


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


def load_components(
    source: ModelSource,
    device: str = "cpu",
    dtype=None,
    *,
    offline: bool = False,
    allow_pickle: bool = False,
    single_file_config: Path | None = None,
    variant: str | None = None,
    vae: str | None = None,
    ema: bool = False,
) -> Components:
    """Load tokenizer, text encoder, VAE, UNet and the scheduler config, ready for inference.

    variant: which weight files of a folder (None: the default ones); vae: a --vae replacing the model's
    own VAE; ema: a single file's model_ema.* UNet weights instead of its normal ones.
    """
    import torch

    from ldm_cli.models.vae_override import resolve_vae_source

    quiet_library_logs()
    dtype = dtype or torch.float32
    vae_source = resolve_vae_source(vae) if vae else None
    if source.kind == "hub":
        source = locate_hub_snapshot(source, offline, allow_pickle, variant)
    if source.kind == "single-file":
        if variant:
            raise ModelError(f"--variant {variant}: {source.path.name} is a single file, which has no variants; drop --variant")
        config_dir = single_file_config or SD15_CONFIG_DIR
        components = _load_single_file(source, dtype, allow_pickle, config_dir, ema, with_vae=vae_source is None)
    else:
        if ema:
            raise ModelError(
                f"--ema: {source.spec} is a diffusers folder, whose unet/ holds one set of weights (official "
                "releases store the EMA ones as the default and the others as --variant non_ema); drop --ema"
            )
        config_dir = source.path
        components = _load_folder(source, dtype, allow_pickle, variant)
    if vae_source is not None:
        from ldm_cli.models.vae_override import load_vae_override

        components.vae, components.weight_files["vae"] = load_vae_override(
            vae_source, dtype, config_root=config_dir, offline=offline, allow_pickle=allow_pickle
        )
        components.vae_source = vae_source
    components.variant, components.ema = variant, ema
    for model in (components.text_encoder, components.vae, components.unet):
        model.to(device).eval().requires_grad_(False)
    return components


def quiet_library_logs() -> None:
    """Our own progress and messages are enough; silence the libraries' advisory chatter and bars."""
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def _load_folder(source: ModelSource, dtype, allow_pickle: bool, variant: str | None = None) -> Components:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = source.path
    check_folder_layout(folder)
    if variant and not any(has_variant(folder / c, variant) for c in WEIGHT_COMPONENTS):
        raise ModelError(
            f"--variant {variant}: {folder} has no {variant} weights (no *.{variant}.safetensors in "
            f"{', '.join(WEIGHT_COMPONENTS)}); drop --variant to load its default weights"
        )
    # Per component: the asked variant where it exists, else the default weights; safetensors before pickle.
    choices = {c: choose_weights(folder / c, variant, allow_pickle) for c in WEIGHT_COMPONENTS}
    loaders = {
        "text_encoder": lambda: CLIPTextModel.from_pretrained(
            folder, subfolder="text_encoder", dtype=dtype, **choices["text_encoder"].loader_kwargs
        ),
        "vae": lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=dtype, **choices["vae"].loader_kwargs),
        "unet": lambda: UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", dtype=dtype, **choices["unet"].loader_kwargs
        ),
    }
    models = {name: _guarded_load(name, folder / name, load) for name, load in loaders.items()}
    tokenizer = _guarded_load("tokenizer", folder / "tokenizer", lambda: CLIPTokenizer.from_pretrained(folder / "tokenizer"))
    return Components(
        source=source,
        tokenizer=tokenizer,
        scheduler_config=read_scheduler_config(folder),
        weight_files={c: list(choice.files) for c, choice in choices.items()},  # only the files read: the hashes
        **models,
    )


def _load_single_file(source: ModelSource, dtype, allow_pickle: bool, config_dir: Path, ema: bool = False,
                      with_vae: bool = True) -> Components:
    from transformers import CLIPTokenizer

    from ldm_cli.models.inpaint_detect import single_file_unet

    path = source.path
    _check_single_file(path, allow_pickle, vae_given=not with_vae)
    state = single_file.read_state_dict(path, allow_pickle)
    if path.suffix != ".safetensors":  # a pickle was only classified now
        _refuse_other_kinds(path, single_file.classify_keys(state), vae_given=not with_vae)
    state = single_file.fix_old_names(state)
    if ema:
        state = single_file.use_ema(state, path.name)
    hint = f"re-download it, or pass --config with its component configs (used: {config_dir})"
    def load_parts():  # a 9-channel inpainting UNet needs a config of its own
        unet = single_file_unet(path, config_dir, dtype, state).get("unet")
        return single_file.load_sd1_parts(state, config_dir, dtype, with_vae, unet=unet)

    parts = _guarded_load("checkpoint", path, load_parts, hint=hint)
    tokenizer = _guarded_load("tokenizer", config_dir / "tokenizer", lambda: CLIPTokenizer.from_pretrained(config_dir / "tokenizer"))
    return Components(
        source=source,
        tokenizer=tokenizer,
        text_encoder=parts["text_encoder"],
        vae=parts.get("vae"),
        unet=parts["unet"],
        scheduler_config=read_scheduler_config(config_dir),
        weight_files={"checkpoint": [path]},
    )


TOKENIZER_FILES = ("vocab.json", "tokenizer.json")  # slow BPE files, or the one file transformers 5 saves


def check_folder_layout(folder: Path) -> None:
    """A diffusers folder must have model_index.json and every component's config; SD2 is refused here."""
    if not (folder / "model_index.json").is_file():
        raise ModelError(
            f"--model {folder}: no model_index.json; expected a diffusers folder "
            "(model_index.json + tokenizer/ text_encoder/ vae/ unet/ scheduler/)"
        )
    needed = {
        "tokenizer": TOKENIZER_FILES,
        "text_encoder": ("config.json",),
        "vae": ("config.json",),
        "unet": ("config.json",),
        "scheduler": ("scheduler_config.json",),
    }
    for component, filenames in needed.items():
        if not any((folder / component / name).is_file() for name in filenames):
            raise ModelError(
                f"--model {folder}: component {component}/ is missing {' or '.join(filenames)}; "
                "re-download or re-export the model"
            )
    _refuse_sd2_folder(folder)


def _refuse_sd2_folder(folder: Path) -> None:
    try:
        context = json.loads((folder / "unet" / "config.json").read_text()).get("cross_attention_dim")
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder}/unet/config.json is unreadable ({exc}); re-download the model") from None
    if context == single_file.SD2_CONTEXT_DIM:
        raise ModelError(
            f"--model {folder} is a Stable Diffusion 2.x model (1024-wide text encoder and cross-attention); "
            "ldm runs SD1.x models only — use an SD1.x model"
        )


def read_scheduler_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder}/scheduler/scheduler_config.json is unreadable ({exc}); re-download the model") from None


def _weight_files(component_dir: Path, allow_pickle: bool, variant: str | None = None) -> list[Path]:
    """The weight files a component will load; pickle files only when the user allowed them."""
    return list(choose_weights(component_dir, variant, allow_pickle).files)


def _check_single_file(path: Path, allow_pickle: bool, vae_given: bool = False) -> None:
    """What can be told from the file's name and header, before any tensor is read."""
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelError(
                f"{path.name} is a pickle checkpoint, which can run code when loaded; "
                "use the .safetensors version or pass --allow-pickle if you trust the source"
            )
        return
    if path.suffix != ".safetensors":
        raise ModelError(f"--model {path}: expected a .safetensors checkpoint or a diffusers folder")
    _refuse_other_kinds(path, single_file.header_kind(path), vae_given)


def _refuse_other_kinds(path: Path, kind, vae_given: bool) -> None:
    line = single_file.refusal(path.name, kind)
    if line:
        raise ModelError(line)
    if not kind.has_vae and not vae_given:
        raise ModelError(
            f"{path.name} has no VAE weights (no first_stage_model.* keys: it was released without one); "
            "pass the VAE to use with it as --vae FILE_OR_FOLDER (e.g. --vae stabilityai/sd-vae-ft-mse)"
        )


def _guarded_load(component: str, where: Path, load, hint: str = "re-download it"):
    """Run a loader and turn library errors about bad files into one actionable line."""
    try:
        return load()
    except ModelError:
        raise
    except Exception as exc:  # diffusers/transformers/safetensors raise many types for bad files
        if "shape" in str(exc) or "size mismatch" in str(exc):  # intact file, other architecture or config
            raise ModelError(
                f"could not load {component} from {where}: its tensor shapes do not fit the configs used "
                f"({_short(exc, 160)}) — {hint}"
            ) from None
        raise ModelError(
            f"could not load {component} from {where}: {_short(exc)}; the file may be truncated, corrupt or "
            f"for another architecture — {hint}"
        ) from None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def validate_revision(revision: str | None) -> None:
    if revision is not None and not revision.strip():
        raise UsageError("--revision must not be empty; pass a branch, tag or commit hash")
