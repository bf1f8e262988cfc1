"""Single-file checkpoints (A1111/CompVis layout): what a file is, and loading an SD1 one.

A checkpoint stores the three models under the original LDM prefixes:
    model.diffusion_model.*          UNet                (model_ema.* : its EMA copy, dots removed)
    first_stage_model.*              VAE                 (absent in "no VAE" releases: pass --vae)
    cond_stage_model.transformer.*   CLIP text encoder   (older files lack the `text_model.` level)
Other files people pass as --model are told what they are: SD2 (OpenCLIP `cond_stage_model.model.*`,
1024-wide cross-attention), SDXL (`conditioner.embedders.*`), a bare VAE, a LoRA, an embedding.
Conversion to diffusers names is diffusers' own (from_single_file with our bundled SD1 configs), so
the pixels equal `StableDiffusionPipeline.from_single_file` on the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ldm_cli.errors import ModelError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
EMA_PREFIX = "model_ema."
EMA_BOOKKEEPING = {"model_ema.decay", "model_ema.num_updates"}
# A1111 modules/sd_models.py checkpoint_dict_replacements_sd1: files saved with transformers < 4.20-ish
# have no `text_model.` level under the CLIP prefix.
OLD_CLIP_NAMES = {
    f"{CLIP_PREFIX}embeddings.": f"{CLIP_PREFIX}text_model.embeddings.",
    f"{CLIP_PREFIX}encoder.": f"{CLIP_PREFIX}text_model.encoder.",
    f"{CLIP_PREFIX}final_layer_norm.": f"{CLIP_PREFIX}text_model.final_layer_norm.",
}
SD2_CONTEXT_DIM = 1024
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")  # refused unless --allow-pickle
_LORA_MARKERS = ("lora_down", "lora_up", "lora_A", "lora_B", "lora.down", "lora.up", "hada_w1", "lokr_w1",
                 "lora_linear_layer")


@dataclass(frozen=True)
class FileKind:
    kind: str  # "sd1" | "sd2" | "sdxl" | "vae" | "lora" | "embedding" | "unknown"
    has_vae: bool = False
    has_ema: bool = False


def classify_keys(keys, context_dim: int | None = None) -> FileKind:
    """What a state dict is, from its key names (and the UNet's cross-attention width when known)."""
    keys = list(keys)
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    if any(marker in k for k in keys for marker in _LORA_MARKERS):
        return FileKind("lora")
    if "emb_params" in keys or has("string_to_param") or has("string_to_token"):
        return FileKind("embedding")
    if has(UNET_PREFIX) and has("conditioner.embedders."):
        return FileKind("sdxl")
    if has(UNET_PREFIX):
        sd2 = has("cond_stage_model.model.") or context_dim == SD2_CONTEXT_DIM
        return FileKind("sd2" if sd2 else "sd1", has_vae=has(VAE_PREFIX), has_ema=_has_ema(keys))
    bare = [k.removeprefix(VAE_PREFIX) for k in keys]
    if any(k.startswith("encoder.conv_in.") for k in bare) and any(k.startswith("decoder.conv_out.") for k in bare):
        return FileKind("vae")
    return FileKind("unknown")


def _has_ema(keys) -> bool:
    return any(k.startswith(EMA_PREFIX) and k not in EMA_BOOKKEEPING for k in keys)


def refusal(name: str, kind: FileKind) -> str | None:
    """The line for a file that is not an SD1 checkpoint ldm can load as --model (None when it is one)."""
    lines = {
        "sd2": f"{name} is a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder, 1024-wide cross-attention); "
        "ldm runs SD1.x models only — use an SD1.x checkpoint",
        "sdxl": f"{name} is an SDXL checkpoint (two text encoders, conditioner.embedders.*); ldm runs SD1.x models only "
        "— use an SD1.x checkpoint",
        "vae": f"{name} is a VAE, not a full model; pass it as --vae with an SD1 --model",
        "lora": f"{name} is a LoRA, not a full model; pass it with --lora FILE[:SCALE] on top of an SD1 --model",
        "embedding": f"{name} is a textual-inversion embedding, not a model; pass it with --embedding FILE",
        "unknown": f"{name} is not an SD1.x checkpoint (no model.diffusion_model.* weights)",
    }
    return lines.get(kind.kind)


def header_kind(path: Path) -> FileKind:
    """Classify a .safetensors file from its header alone (no tensor data read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            probe = _context_probe(keys)
            context_dim = f.get_slice(probe).get_shape()[-1] if probe else None
    except Exception as exc:  # safetensors raises its own error type for bad headers
        raise ModelError(f"{path} is truncated or corrupt ({_short(exc)}); re-download it") from None
    return classify_keys(keys, context_dim)


def _context_probe(keys) -> str | None:
    """A cross-attention key/value projection of the UNet: its input width is the text encoder's width."""
    for k in keys:
        if k.startswith(UNET_PREFIX) and k.endswith("attn2.to_k.weight"):
            return k
    return None


def check_before_reading(path: Path, allow_pickle: bool, vae_given: bool = False) -> None:
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
    refuse_other_kinds(path, header_kind(path), vae_given)


def refuse_other_kinds(path: Path, kind: FileKind, vae_given: bool) -> None:
    """Anything but an SD1 checkpoint is named for what it is; one without a VAE needs --vae."""
    line = refusal(path.name, kind)
    if line:
        raise ModelError(line)
    if not kind.has_vae and not vae_given:
        raise ModelError(
            f"{path.name} has no VAE weights (no first_stage_model.* keys: it was released without one); "
            "pass the VAE to use with it as --vae FILE_OR_FOLDER (e.g. --vae stabilityai/sd-vae-ft-mse)"
        )


def read_state_dict(path: Path, allow_pickle: bool) -> dict:
    """All tensors of a checkpoint file; a pickle (.ckpt) only when the user allowed it (checked before)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise ModelError(f"{path} is truncated or corrupt ({_short(exc)}); re-download it") from None
    import torch

    assert allow_pickle, "pickle checkpoints are refused before this point"
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"{path} could not be unpickled ({_short(exc)}); re-download it") from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{path.name} holds no state dict (a {type(loaded).__name__}); expected an SD1 checkpoint")
    return state


def fix_old_names(state: dict) -> dict:
    """Rename pre-`text_model.` CLIP keys to today's names (as A1111 does when it loads them)."""
    fixed = {}
    for key, value in state.items():
        for old, new in OLD_CLIP_NAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        fixed[key] = value
    return fixed


def use_ema(state: dict, name: str) -> dict:
    """Replace the UNet weights with their EMA copies (model_ema.<name without 'model.' and dots>)."""
    swapped = dict(state)
    missing = []
    for key in state:
        if key.startswith(UNET_PREFIX):
            ema_key = EMA_PREFIX + "".join(key.split(".")[1:])
            if ema_key in state:
                swapped[key] = state[ema_key]
            else:
                missing.append(key)
    if missing or not any(k.startswith(UNET_PREFIX) for k in state):
        raise ModelError(
            f"--ema: {name} has no EMA copy of the UNet ({len(missing)} model.diffusion_model.* weights lack a "
            "model_ema.* twin); drop --ema to use its normal weights"
        )
    return {k: v for k, v in swapped.items() if not k.startswith(EMA_PREFIX)}


def load_sd1_parts(state: dict, config_dir: Path, dtype, with_vae: bool, unet=None) -> dict:
    """text_encoder, unet and (when with_vae) vae from an SD1 state dict, via diffusers' converters.

    `unet`: one already built (an inpainting UNet, whose config differs from config_dir's)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel

    common = {"config": str(config_dir), "local_files_only": True, "torch_dtype": dtype}
    parts = {
        "unet": unet if unet is not None else UNet2DConditionModel.from_single_file(state, subfolder="unet", **common),
        "text_encoder": create_diffusers_clip_model_from_ldm(
            CLIPTextModel, state, subfolder="text_encoder", config=str(config_dir), torch_dtype=dtype,
            local_files_only=True,
        ),
    }
    if with_vae:
        parts["vae"] = AutoencoderKL.from_single_file(state, subfolder="vae", **common)
    for name, model in parts.items():
        check_complete(name, model)
    return parts


def check_complete(name: str, model) -> None:
    """Converters leave weights the file lacked on the meta device; say so instead of failing later."""
    empty = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if empty:
        raise ModelError(
            f"the checkpoint has no weights for {len(empty)} {name} tensors (e.g. {empty[0]}); it is for another "
            "architecture or the --config does not match it"
        )


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
