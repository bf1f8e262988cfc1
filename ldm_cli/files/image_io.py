"""Reading images robustly, for every command that takes an image, and the size policy.

    open      PNG, JPEG (MPO), WEBP, BMP, TIFF; refuse bombs, truncated and corrupt files by name
    orient    apply the EXIF orientation tag, so a phone photo is upright
    to RGB    alpha composited onto white; grayscale, palette, CMYK, 16-bit and float -> 8-bit RGB
    size      keep the image's own size rounded down to a multiple of 8 (centre crop of < 8 px),
              or fit --height/--width by crop (cover), pad (contain, white borders) or stretch

Every step that changed the picture is reported in `LoadedImage.notes`, so the command can say it.
PIL and numpy are imported inside the functions: `ldm --help` never pays for them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.errors import InputFileError, UsageError

FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WEBP", "BMP": "BMP", "TIFF": "TIFF"}
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
RESIZE_MODES = ("crop", "pad", "stretch")
MULTIPLE = 8  # the VAE's downsampling factor: pixel sizes must divide by it
MAX_PIXELS = 8192 * 8192  # above this we refuse the file as a possible decompression bomb
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class SizePolicy:
    """--height/--width (None: the image's own size) and --resize."""

    height: int | None = None
    width: int | None = None
    resize: str = "crop"

    def validate(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise UsageError(f"--resize {self.resize!r}: choose crop (fill, cut the overflow), pad (fit, white borders) or stretch")
        for flag, value in (("--height", self.height), ("--width", self.width)):
            check_multiple(flag, value)


def check_multiple(flag: str, value: int | None) -> None:
    """A pixel size the VAE accepts; `flag` is the flag the user typed (--dim sets both sides)."""
    if value is not None and (value < MULTIPLE or value % MULTIPLE):
        raise UsageError(f"{flag} {value}: must be a positive multiple of {MULTIPLE} (e.g. 512)")


@dataclass
class LoadedImage:
    path: Path
    pixels: object  # np.ndarray [H, W, 3] uint8, after the size policy
    original_size: tuple[int, int]  # (width, height) as the file stores it, before EXIF rotation
    format: str
    sha256: str
    file_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) after orientation and the size policy."""
        return self.pixels.shape[1], self.pixels.shape[0]

    def describe(self) -> str:
        return "; ".join(self.notes) if self.notes else "used as is"


def load_image(path: Path, policy: SizePolicy = SizePolicy()) -> LoadedImage:
    """Read one image file into 8-bit RGB pixels at a size the VAE accepts."""
    import numpy as np

    path = Path(path)
    data = _read_bytes(path)
    notes: list[str] = []
    image, fmt, original_size = _decode(path, data, notes)
    image = _to_rgb(image, notes)
    image = _apply_size_policy(image, policy, notes, path)
    pixels = np.asarray(image, dtype=np.uint8)
    return LoadedImage(path, pixels, original_size, fmt, hashlib.sha256(data).hexdigest(), len(data), notes)


def to_tensor(pixels):
    """[H, W, 3] uint8 -> [1, 3, H, W] float32 in [-1, 1], as the VAE (and diffusers) expects."""
    import numpy as np
    import torch

    array = pixels.astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0) * 2.0 - 1.0  # [1, 3, H, W]


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded to the images directly inside them (sorted)."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not images:
                raise InputFileError(f"{path}: no images in this folder ({', '.join(SUFFIXES)})")
            found.extend(images)
        elif path.exists():
            found.append(path)
        else:
            raise InputFileError(f"{path}: no such file or folder")
    return found


# --- reading ---------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _decode(path: Path, data: bytes, notes: list[str]):
    """Open, check format and size, load every pixel (so truncation shows now), apply EXIF."""
    import io
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise InputFileError(f"{path}: the file is empty; re-export or re-download it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = FORMATS.get(image.format or "")
            if fmt is None:
                raise InputFileError(
                    f"{path}: {image.format} images are not supported; convert it to PNG, JPEG, WEBP, BMP or TIFF"
                )
            _check_pixels(path, image.size)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputFileError(
            f"{path}: refusing a possible decompression bomb (it claims over {Image.MAX_IMAGE_PIXELS // 10**6} "
            f"megapixels); ldm reads images up to {MAX_PIXELS // 10**6} megapixels"
        ) from None
    except UnidentifiedImageError:
        raise InputFileError(f"{path}: not an image file or corrupt; use a PNG, JPEG, WEBP, BMP or TIFF") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncated or broken data this way
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputFileError(f"{path}: the image data is truncated or corrupt ({reason}); re-export or re-download it") from None
    original_size = image.size
    orientation = image.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        image = ImageOps.exif_transpose(image)
        notes.append(f"rotated upright by its EXIF orientation tag ({orientation})")
    return image, fmt, original_size


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise InputFileError(
            f"{path}: refusing a possible decompression bomb ({_size_text(size)}); "
            f"ldm reads images up to {MAX_PIXELS // 10**6} megapixels"
        )
    if width < 1 or height < 1:
        raise InputFileError(f"{path}: the image has no pixels ({_size_text(size)})")


def _size_text(size) -> str:
    return f"{size[0]}x{size[1]} pixels"


# --- colour ----------------------------------------------------------------------------------


def _to_rgb(image, notes: list[str]):
    """Any mode -> 8-bit RGB. High bit depths are scaled (not clipped); alpha goes onto white."""
    from PIL import Image

    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _high_depth_to_l(image)
        notes.append(f"converted {_depth_name(mode)} grayscale to 8-bit")
        mode = "L"
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("composited its transparency onto white")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("converted CMYK to RGB")
    return image.convert("RGB") if mode != "RGB" else image


def _high_depth_to_l(image):
    """16-bit (and 32-bit int or float) grayscale -> 8-bit by scaling the range, not by clipping."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        top = 1.0 if array.max(initial=0.0) <= 1.0 else 255.0
    elif image.mode.startswith("I;16") or array.max(initial=0) > 255:
        top = 65535.0
    else:
        top = 255.0
    scaled = np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _depth_name(mode: str) -> str:
    return {"F": "floating-point"}.get(mode, "16-bit" if mode.startswith("I;16") else "high-bit-depth")


# --- size ------------------------------------------------------------------------------------


def _apply_size_policy(image, policy: SizePolicy, notes: list[str], path: Path):
    width, height = image.size
    if policy.height is None and policy.width is None:
        target = (width // MULTIPLE * MULTIPLE, height // MULTIPLE * MULTIPLE)
        if 0 in target:
            raise InputFileError(
                f"{path}: {width}x{height} is too small; images need at least {MULTIPLE} pixels on each side"
            )
        if target != (width, height):
            notes.append(f"cropped {width}x{height} to {target[0]}x{target[1]} (a multiple of {MULTIPLE}), centred")
            return _centre_crop(image, target)
        return image
    target = _target_size(width, height, policy)
    if target == (width, height):
        return image
    notes.append(f"resized {width}x{height} to {target[0]}x{target[1]} by {policy.resize}")
    return {"crop": _cover_and_crop, "pad": _fit_and_pad, "stretch": _stretch}[policy.resize](image, target)


def _target_size(width: int, height: int, policy: SizePolicy) -> tuple[int, int]:
    """Both given: that size. One given: the other follows the aspect ratio, to a multiple of 8."""
    if policy.height is not None and policy.width is not None:
        return policy.width, policy.height
    if policy.width is not None:
        other = max(MULTIPLE, round(height * policy.width / width / MULTIPLE) * MULTIPLE)
        return policy.width, other
    other = max(MULTIPLE, round(width * policy.height / height / MULTIPLE) * MULTIPLE)
    return other, policy.height


def _centre_crop(image, target):
    width, height = image.size
    left, top = (width - target[0]) // 2, (height - target[1]) // 2
    return image.crop((left, top, left + target[0], top + target[1]))


def _stretch(image, target):
    from PIL import Image

    return image.resize(target, Image.Resampling.LANCZOS)


def _cover_and_crop(image, target):
    """Scale so the image covers the target, then cut the overflow evenly from both sides."""
    from PIL import Image

    width, height = image.size
    scale = max(target[0] / width, target[1] / height)
    size = (max(target[0], round(width * scale)), max(target[1], round(height * scale)))
    return _centre_crop(image.resize(size, Image.Resampling.LANCZOS), target)


def _fit_and_pad(image, target):
    """Scale so the whole image fits, then centre it on white."""
    from PIL import Image

    width, height = image.size
    scale = min(target[0] / width, target[1] / height)
    size = (max(1, min(target[0], round(width * scale))), max(1, min(target[1], round(height * scale))))
    canvas = Image.new("RGB", target, WHITE)
    canvas.paste(image.resize(size, Image.Resampling.LANCZOS), ((target[0] - size[0]) // 2, (target[1] - size[1]) // 2))
    return canvas
