"""The `.latent.safetensors` file: one tensor "latents" [1, C, H/8, W/8] and a header saying what it is.

The latents are stored already multiplied by the VAE's scaling factor (the space the UNet works in),
as float32. The safetensors header (string -> string) records:

    format, format_version      "ldm-latents", "1"
    scaling_applied, scaling_factor, shift_factor
    latent_kind                 "mean" (posterior mean, deterministic) or "sample" (with its seed)
    seed                        the seed of a sample, "" for the mean
    model, vae_sha256           which model and which VAE weights made them
    source_name, source_sha256, source_bytes, source_size (WxH as stored), encoded_size (WxH fed to the VAE)
    preprocessing, tiled, ldm_version

Pickled latents (.pt, .npy) are read only with --allow-pickle, and carry no header.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ldm_cli.errors import InputFileError
from ldm_cli.files.images import write_new_file

FORMAT = "ldm-latents"
FORMAT_VERSION = 1
TENSOR_KEY = "latents"
SUFFIX = ".latent.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".npy")
MAX_LATENT_VALUE = 1000.0  # SD latents (scaled) stay within about +-10, unscaled within about +-60


@dataclass
class LatentHeader:
    scaling_factor: float
    latent_kind: str  # "mean" | "sample"
    model: str
    vae_sha256: str
    source_name: str = ""
    source_sha256: str = ""
    source_bytes: int = 0
    source_size: str = ""  # "WxH" as the file stores it
    encoded_size: str = ""  # "WxH" of the pixels the VAE saw
    seed: int | None = None
    shift_factor: float = 0.0
    preprocessing: str = ""
    tiled: bool = False
    scaling_applied: bool = True
    format_version: int = FORMAT_VERSION

    def to_metadata(self) -> dict[str, str]:
        from ldm_cli import __version__

        text = {k: _text(v) for k, v in asdict(self).items()}
        return {"format": FORMAT, **text, "ldm_version": __version__}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: Path) -> LatentHeader:
        try:
            version = int(meta.get("format_version", "0") or 0)
        except ValueError:
            raise InputFileError(f"{path}: its latent header has format_version {meta.get('format_version')!r}, "
                                 "not a number; re-encode the image") from None
        if version > FORMAT_VERSION:
            raise InputFileError(f"{path}: latent format version {version} is newer than this ldm reads ({FORMAT_VERSION}); upgrade ldm")
        values = {}
        try:
            for f in fields(cls):
                if f.name in meta:
                    values[f.name] = _parse(meta[f.name], f.type)
            header = cls(**values)
        except (TypeError, ValueError) as exc:
            raise InputFileError(f"{path}: its ldm latent header is malformed ({exc}); re-encode the image") from None
        header.check(path)
        return header

    def check(self, path: Path) -> None:
        """Numbers decoding divides by must be usable: a NaN scaling factor would pass every comparison."""
        import math

        if not (math.isfinite(self.scaling_factor) and self.scaling_factor > 0):
            raise InputFileError(f"{path}: its latent header has scaling_factor {self.scaling_factor}, not a finite "
                                 "number > 0; the header is damaged, re-encode the image")
        if not math.isfinite(self.shift_factor):
            raise InputFileError(f"{path}: its latent header has shift_factor {self.shift_factor}, not a finite "
                                 "number; the header is damaged, re-encode the image")


@dataclass
class LatentFile:
    path: Path
    latents: object  # torch.Tensor [1, C, h, w], scaled
    header: LatentHeader | None  # None for pickled or foreign files

    @property
    def pixel_size(self) -> tuple[int, int]:
        """(width, height) the latents decode to with an 8x VAE."""
        return self.latents.shape[-1] * 8, self.latents.shape[-2] * 8


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(text: str, kind: str):
    if kind == "bool":
        return text == "true"
    if kind == "float":
        return float(text)
    if kind == "int":
        return int(text)
    if kind == "int | None":
        return int(text) if text else None
    return text


def output_name(source: Path) -> str:
    """photo.jpg -> photo.latent.safetensors"""
    return Path(source).stem + SUFFIX


def stem_of(path: Path) -> str:
    """photo.latent.safetensors -> photo; other names lose their last suffix."""
    name = Path(path).name
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else Path(path).stem


def save_latents(latents, header: LatentHeader, path: Path) -> Path:
    """Write atomically under a free name (never replacing a file); returns the path written."""
    from safetensors.torch import save_file

    tensor = latents.detach().float().cpu().contiguous()
    return write_new_file(path, lambda tmp: save_file({TENSOR_KEY: tensor}, str(tmp), metadata=header.to_metadata()), SUFFIX)


def load_latents(path: Path, allow_pickle: bool = False) -> LatentFile:
    """Read a latent file; shape-checked to [1, C, h, w] with finite values."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        tensor, header = _load_pickled(path, allow_pickle), None
    elif path.suffix.lower() == ".safetensors":
        tensor, header = _load_safetensors(path)
    else:
        raise InputFileError(f"{path}: expected a .latent.safetensors file (from `ldm encode`), or .pt/.npy with --allow-pickle")
    return LatentFile(path, _checked(tensor, path), header)


def _load_safetensors(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            keys = list(handle.keys())
            key = TENSOR_KEY if TENSOR_KEY in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise InputFileError(f"{path}: no 'latents' tensor in it (found {', '.join(keys) or 'nothing'})")
            tensor = handle.get_tensor(key)
    except InputFileError:
        raise
    except Exception as exc:  # safetensors raises its own error type for bad headers and short files
        raise InputFileError(f"{path}: truncated or corrupt safetensors file ({' '.join(str(exc).split())}); re-encode it") from None
    header = LatentHeader.from_metadata(meta, path) if meta.get("format") == FORMAT else None
    return tensor, header


def _load_pickled(path: Path, allow_pickle: bool):
    if not allow_pickle:
        raise InputFileError(
            f"{path}: {path.suffix} files are pickles, which can run code when loaded; "
            "convert to .safetensors or pass --allow-pickle if you trust the file"
        )
    import numpy as np
    import torch

    try:
        if path.suffix.lower() == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # numpy/torch raise many types for bad files
        raise InputFileError(f"{path}: cannot read it as latents ({' '.join(str(exc).split())})") from None
    if isinstance(obj, dict):
        obj = obj.get(TENSOR_KEY, next(iter(obj.values()), None) if len(obj) == 1 else None)
    if not isinstance(obj, torch.Tensor):
        raise InputFileError(f"{path}: expected a tensor (or {{'latents': tensor}}), found {type(obj).__name__}")
    return obj


def _checked(tensor, path: Path):
    import torch

    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)  # [C, h, w] -> [1, C, h, w]
    if tensor.ndim != 4 or tensor.shape[0] != 1:
        raise InputFileError(f"{path}: latents must have shape [1, C, H/8, W/8]; this has {list(tensor.shape)}")
    if 0 in tensor.shape:
        raise InputFileError(f"{path}: the latents are empty (shape {list(tensor.shape)}); re-encode the image")
    if not tensor.is_floating_point():
        raise InputFileError(f"{path}: latents must be floating point; this is {tensor.dtype}")
    tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise InputFileError(f"{path}: the latents contain NaN or infinity; re-encode the image")
    peak = float(tensor.abs().max()) if tensor.numel() else 0.0
    if peak > MAX_LATENT_VALUE:
        raise InputFileError(f"{path}: the latents reach {peak:.3g}, far beyond what a VAE encodes (|value| below "
                             f"~{MAX_LATENT_VALUE:g}); they were scaled wrongly or are not latents")
    return tensor
