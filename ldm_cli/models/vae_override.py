"""`--vae PATH|HUB_ID`: decode (and encode) with another VAE than the model's own.

Accepted, as A1111 and diffusers users have them:
  a diffusers VAE folder       config.json + diffusion_pytorch_model.safetensors (or a model folder's vae/)
  a single file                A1111 `*.vae.safetensors` with LDM names (encoder.*, decoder.*, quant_conv,
                               post_quant_conv; possibly under first_stage_model.), or a full SD1 checkpoint's VAE
  a Hub id                     e.g. stabilityai/sd-vae-ft-mse, through the HF cache (offline-aware)
A single file has no config, so it takes the model's own VAE config (same SD1 architecture).
The recorded name and hash follow A1111: the file's name, and the SHA-256 of the weights read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ldm_cli.errors import ModelError

_HUB_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_IGNORED = ("loss.", "model_ema.")  # A1111 drops the discriminator loss and EMA bookkeeping of VAE files


@dataclass(frozen=True)
class VaeSource:
    spec: str  # what the user passed
    kind: str  # "folder" | "single-file" | "hub"
    path: Path | None

    @property
    def display_name(self) -> str:
        """A1111's `VAE:` field is the file's name; a folder or Hub id is named as given."""
        return self.path.name if self.kind == "single-file" else self.spec


def resolve_vae_source(spec: str) -> VaeSource:
    path = Path(spec).expanduser()
    if path.is_dir():
        return VaeSource(spec, "folder", path)
    if path.is_file():
        return VaeSource(spec, "single-file", path)
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return VaeSource(spec, "hub", None)
    raise ModelError(
        f"--vae {spec!r}: no such folder or file, and not a Hub id like 'org/name'; pass a diffusers VAE folder, "
        "a .vae.safetensors file or a Hub repo id such as stabilityai/sd-vae-ft-mse"
    )


def load_vae_override(source: VaeSource, dtype, *, config_root: Path, offline: bool = False,
                      allow_pickle: bool = False):
    """(AutoencoderKL, [weight files read]); config_root holds vae/config.json for single files."""
    if source.kind == "hub":
        source = VaeSource(source.spec, "folder", _hub_folder(source.spec, offline, allow_pickle))
    if source.kind == "folder":
        return _load_folder(source, dtype, allow_pickle)
    return _load_file(source.path, dtype, config_root, allow_pickle), [source.path]


def _load_folder(source: VaeSource, dtype, allow_pickle: bool):
    from diffusers import AutoencoderKL

    from ldm_cli.models.load_errors import guarded_load
    from ldm_cli.models.variants import choose_weights

    folder = source.path
    where = folder / "vae" if (folder / "vae" / "config.json").is_file() else folder
    if not (where / "config.json").is_file():
        raise ModelError(f"--vae {source.spec}: no config.json (nor vae/config.json); pass a diffusers VAE folder or a .safetensors file")
    choice = choose_weights(where, None, allow_pickle)
    vae = guarded_load("--vae", where, lambda: AutoencoderKL.from_pretrained(where, dtype=dtype, **choice.loader_kwargs))
    return vae, list(choice.files)


def _load_file(path: Path, dtype, config_root: Path, allow_pickle: bool):
    from diffusers import AutoencoderKL

    from ldm_cli.models import single_file
    from ldm_cli.models.load_errors import guarded_load

    if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise ModelError(
            f"--vae {path.name} is a pickle file, which can run code when loaded; use a .safetensors VAE "
            "or pass --allow-pickle if you trust the source"
        )
    if path.suffix not in (".safetensors", *PICKLE_SUFFIXES):
        raise ModelError(f"--vae {path}: expected a .safetensors VAE file, a diffusers VAE folder or a Hub id")
    state = single_file.read_state_dict(path, allow_pickle)
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED)}
    kind = single_file.classify_keys(state)
    if kind.kind == "sd1" and kind.has_vae:  # a whole checkpoint: take its VAE
        state = {k: v for k, v in state.items() if k.startswith(single_file.VAE_PREFIX)}
    elif kind.kind != "vae":
        what = single_file.refusal(path.name, kind) or f"{path.name} is not a VAE"
        raise ModelError(f"--vae: {what.split(';')[0]}; --vae takes a VAE file, a VAE folder or a Hub id")
    vae = guarded_load(
        "--vae", path,
        lambda: AutoencoderKL.from_single_file(state, config=str(config_root), subfolder="vae", local_files_only=True,
                                               torch_dtype=dtype),
        hint="pass an SD1 VAE (its shapes must match the model's VAE)",
    )
    single_file.check_complete("--vae", vae)
    return vae


def _hub_folder(spec: str, offline: bool, allow_pickle: bool) -> Path:
    import os

    from ldm_cli.models.hub import download

    names = ["config.json", "diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model.safetensors.index.json"]
    if allow_pickle:
        names.append("diffusion_pytorch_model*.bin")
    allow = names + [f"vae/{n}" for n in names]
    offline = offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return download(spec, None, allow, ["*.fp16.*", "*.fp16-*"], offline, flag="--vae")
