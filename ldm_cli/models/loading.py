"""Resolve `--model` to a source (no weights read), then load its components.

Sources, in the order they are tried:
  bundled name ("demo")          -> a diffusers folder inside the package
  existing folder                -> diffusers format (model_index.json + component subfolders)
  existing file (.safetensors)   -> single-file SD1.x checkpoint, converted with bundled SD1 configs
  "org/name"                     -> Hugging Face Hub repo, through the normal HF cache
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.errors import ModelError, UsageError

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


def locate_hub_snapshot(source: ModelSource, offline: bool, allow_pickle: bool) -> ModelSource:
    """Download (or find in the HF cache) the files a Hub model needs; return it as a folder source."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    offline = offline or _env_flag("HF_HUB_OFFLINE")
    ignore = ["*.fp16.*", "*non_ema*", "*.msgpack", "*.onnx", "*.onnx_data", "*.h5", "*.ckpt"]
    if not allow_pickle:
        ignore += ["*.bin", "*.pt", "*.pth"]
    try:
        folder = snapshot_download(
            source.spec,
            revision=source.revision,
            allow_patterns=["model_index.json", *(f"{c}/*" for c in COMPONENTS)],
            ignore_patterns=ignore,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError:
        if offline:
            raise ModelError(
                f"--model {source.spec}: not in the Hugging Face cache and offline mode is on; "
                "run once without --offline/HF_HUB_OFFLINE, or pass a local folder or .safetensors file"
            ) from None
        raise ModelError(
            f"--model {source.spec}: the Hugging Face Hub could not be reached and the model is not in the cache; "
            "check your connection, or pass a local folder or .safetensors file"
        ) from None
    except RevisionNotFoundError:
        raise ModelError(f"--revision {source.revision}: no such revision of {source.spec}") from None
    except RepositoryNotFoundError:
        raise ModelError(f"--model {source.spec}: no such Hub repository (or it is private; run `hf auth login`)") from None
    except OSError as exc:  # network failures surface as OSError subclasses
        raise ModelError(f"--model {source.spec}: could not reach the Hub ({exc}); retry or use --offline") from None
    return ModelSource(source.spec, "hub", Path(folder), source.revision)


def load_components(
    source: ModelSource,
    device: str = "cpu",
    dtype=None,
    *,
    offline: bool = False,
    allow_pickle: bool = False,
    single_file_config: Path | None = None,
) -> Components:
    """Load tokenizer, text encoder, VAE, UNet and the scheduler config, ready for inference."""
    import torch

    quiet_library_logs()
    dtype = dtype or torch.float32
    if source.kind == "hub":
        source = locate_hub_snapshot(source, offline, allow_pickle)
    if source.kind == "single-file":
        components = _load_single_file(source, dtype, allow_pickle, single_file_config or SD15_CONFIG_DIR)
    else:
        components = _load_folder(source, dtype, allow_pickle)
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


def _load_folder(source: ModelSource, dtype, allow_pickle: bool) -> Components:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = source.path
    check_folder_layout(folder)
    weight_files = {c: _weight_files(folder / c, allow_pickle) for c in WEIGHT_COMPONENTS}
    # Per component: safetensors when it has them; pickle only where the user allowed it.
    safe = {c: all(f.suffix == ".safetensors" for f in files) for c, files in weight_files.items()}
    loaders = {
        "text_encoder": lambda: CLIPTextModel.from_pretrained(
            folder, subfolder="text_encoder", dtype=dtype, use_safetensors=safe["text_encoder"]
        ),
        "vae": lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=dtype, use_safetensors=safe["vae"]),
        "unet": lambda: UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", dtype=dtype, use_safetensors=safe["unet"]
        ),
    }
    models = {name: _guarded_load(name, folder / name, load) for name, load in loaders.items()}
    tokenizer = _guarded_load("tokenizer", folder / "tokenizer", lambda: CLIPTokenizer.from_pretrained(folder / "tokenizer"))
    return Components(
        source=source,
        tokenizer=tokenizer,
        scheduler_config=read_scheduler_config(folder),
        weight_files=weight_files,
        **models,
    )


def _load_single_file(source: ModelSource, dtype, allow_pickle: bool, config_dir: Path) -> Components:
    from diffusers import StableDiffusionPipeline

    from ldm_cli.models.inpaint_detect import single_file_unet

    path = source.path
    _check_single_file(path, allow_pickle)
    pipe = _guarded_load(
        "checkpoint",
        path,
        lambda: StableDiffusionPipeline.from_single_file(
            str(path), config=str(config_dir), local_files_only=True, dtype=dtype,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            **single_file_unet(path, config_dir, dtype),  # a 9-channel inpainting UNet gets its own config
        ),
        hint=f"re-download it, or pass --config with its component configs (used: {config_dir})",
    )
    return Components(
        source=source,
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        unet=pipe.unet,
        scheduler_config=read_scheduler_config(config_dir),
        weight_files={"checkpoint": [path]},
    )


def check_folder_layout(folder: Path) -> None:
    """A diffusers folder must have model_index.json and every component's config."""
    if not (folder / "model_index.json").is_file():
        raise ModelError(
            f"--model {folder}: no model_index.json; expected a diffusers folder "
            "(model_index.json + tokenizer/ text_encoder/ vae/ unet/ scheduler/)"
        )
    needed = {
        "tokenizer": "vocab.json",
        "text_encoder": "config.json",
        "vae": "config.json",
        "unet": "config.json",
        "scheduler": "scheduler_config.json",
    }
    for component, filename in needed.items():
        if not (folder / component / filename).is_file():
            raise ModelError(f"--model {folder}: component {component}/ is missing {filename}; re-download or re-export the model")


def read_scheduler_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder}/scheduler/scheduler_config.json is unreadable ({exc}); re-download the model") from None


def _weight_files(component_dir: Path, allow_pickle: bool) -> list[Path]:
    """The weight files a component will load; pickle files only when the user allowed them."""
    files = sorted(p for p in component_dir.glob("*.safetensors") if ".fp16." not in p.name)
    if files:
        return files
    pickles = sorted(p for p in component_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not allow_pickle:
        raise ModelError(
            f"{component_dir}: only pickle weights ({pickles[0].name}); pickle files can run code when loaded, "
            "so convert them to .safetensors or pass --allow-pickle if you trust the source"
        )
    if not pickles:
        raise ModelError(f"{component_dir}: no weight file (*.safetensors); re-download or re-export the model")
    return pickles


def _check_single_file(path: Path, allow_pickle: bool) -> None:
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelError(
                f"{path.name} is a pickle checkpoint, which can run code when loaded; "
                "use the .safetensors version or pass --allow-pickle if you trust the source"
            )
        return
    if path.suffix != ".safetensors":
        raise ModelError(f"--model {path}: expected a .safetensors checkpoint or a diffusers folder")
    keys = _safetensors_keys(path)
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise ModelError(f"{path.name} is not an SD1.x checkpoint (no model.diffusion_model.* weights)")


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as exc:  # safetensors raises its own error type for bad headers
        raise ModelError(f"{path} is truncated or corrupt ({_short(exc)}); re-download it") from None


def _guarded_load(component: str, where: Path, load, hint: str = "re-download it"):
    """Run a loader and turn library errors about bad files into one actionable line."""
    try:
        return load()
    except ModelError:
        raise
    except Exception as exc:  # diffusers/transformers/safetensors raise many types for bad files
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
