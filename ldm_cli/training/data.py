"""Find captioned images in a folder, check every one once, and report what will be trained on.

Two caption conventions, mixed freely, nested folders allowed:
  - Hugging Face imagefolder: `metadata.jsonl` lines {"file_name": "a/b.png", "text": "caption"}
    (paths relative to the folder holding metadata.jsonl; it wins over sidecar files)
  - kohya / sidecar: `name.txt` or `name.caption` beside `name.png`; a folder named `10_style`
    repeats its images 10 times per epoch.

Bad items (unreadable or corrupt image, missing or empty caption, exact duplicate) are listed and
left out; warnings (caption cut at 77 tokens, image smaller than the resolution) are listed and kept.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.training.buckets import aspect_label, bucket_sizes, nearest_bucket

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CAPTION_SUFFIXES = (".txt", ".caption")
METADATA_FILE = "metadata.jsonl"
_REPEATS = re.compile(r"^(\d+)_")


@dataclass(frozen=True)
class Item:
    """One usable training image."""

    path: Path
    caption: str
    width: int
    height: int
    sha256: str
    bucket: tuple[int, int]
    repeats: int = 1


@dataclass
class DataReport:
    root: Path
    resolution: int
    items: list[Item] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why it is left out)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (relative path, what to know)
    caption_sources: Counter = field(default_factory=Counter)
    images_found: int = 0

    @property
    def aspect_spread(self) -> dict[str, int]:
        counts = Counter(aspect_label(item.bucket) for item in self.items)
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "resolution": self.resolution,
            "images_found": self.images_found,
            "images_used": len(self.items),
            "samples_per_epoch": sum(item.repeats for item in self.items),
            "left_out": [{"path": p, "why": w} for p, w in self.bad],
            "warnings": [{"path": p, "what": w} for p, w in self.warnings],
            "caption_sources": dict(self.caption_sources),
            "aspect_buckets": self.aspect_spread,
        }

    def lines(self, limit: int = 20) -> list[str]:
        d = self.to_dict()
        out = [
            f"data {self.root}: {d['images_found']} images found, {d['images_used']} used, "
            f"{len(self.bad)} left out, {len(self.warnings)} warnings",
            "captions from: " + (", ".join(f"{k} {v}" for k, v in sorted(self.caption_sources.items())) or "none"),
            f"aspect buckets at {self.resolution} px: " + (", ".join(f"{k} x{v}" for k, v in d["aspect_buckets"].items()) or "none"),
        ]
        for title, entries in (("left out", self.bad), ("warning", self.warnings)):
            for path, why in entries[:limit]:
                out.append(f"  {title}: {path}: {why}")
            if len(entries) > limit:
                out.append(f"  ... and {len(entries) - limit} more ({title}); see data-report.json")
        return out


def scan(root: Path, resolution: int, use_buckets: bool = True, tokenizer=None, skip: Path | None = None) -> DataReport:
    """Check every image under `root` once; returns the report with the usable items."""
    root = Path(root)
    report = DataReport(root, resolution)
    sizes = bucket_sizes(resolution, use_buckets)
    captions = _metadata_captions(root, report, skip)
    seen: dict[str, str] = {}
    images = _image_files(root, skip)
    report.images_found = len(images)
    listed = {p.resolve() for p in images}
    for missing in sorted(set(captions) - listed):
        report.bad.append((_relative(missing, root), f"listed in {METADATA_FILE} but there is no such image file"))
    for path in images:
        rel = path.relative_to(root).as_posix()
        caption, source = captions.get(path.resolve(), (None, None))
        if caption is None:
            caption, source = _sidecar_caption(path)
        if caption is None:
            report.bad.append((rel, "missing caption: add a .txt file with the same name, or a metadata.jsonl line"))
            continue
        caption = " ".join(caption.split())
        if not caption:
            report.bad.append((rel, f"empty caption ({source})"))
            continue
        loaded = _load_image(path)
        if isinstance(loaded, str):
            report.bad.append((rel, loaded))
            continue
        digest, width, height = loaded
        if digest in seen:
            report.bad.append((rel, f"exact duplicate of {seen[digest]}"))
            continue
        seen[digest] = rel
        if min(width, height) < resolution:
            report.warnings.append((rel, f"smaller than the training resolution ({width}x{height} < {resolution}); upscaled"))
        if tokenizer is not None:
            from ldm_cli.pipeline.prompts.text import dropped_words

            dropped = dropped_words(tokenizer, caption)
            if dropped:
                report.warnings.append((rel, f"caption longer than {tokenizer.model_max_length} tokens; cut: {dropped!r}"))
        report.caption_sources[source] += 1
        report.items.append(Item(path, caption, width, height, digest, nearest_bucket(width, height, sizes), _repeats(path, root)))
    return report


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _image_files(root: Path, skip: Path | None) -> list[Path]:
    skip = skip.resolve() if skip is not None else None
    files = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(part.startswith(".") for part in parts):
            continue  # hidden files and folders (caches, .git)
        if skip is not None and (path.resolve() == skip or skip in path.resolve().parents):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            files.append(path)
    return files


def _metadata_captions(root: Path, report: DataReport, skip: Path | None) -> dict[Path, tuple[str, str]]:
    """Captions from every metadata.jsonl under root, keyed by the resolved image path."""
    captions = {}
    for meta in sorted(root.rglob(METADATA_FILE)):
        rel_meta = meta.relative_to(root).as_posix()
        try:
            lines = meta.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            report.bad.append((rel_meta, f"unreadable ({exc})"))
            continue
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                name, text = entry["file_name"], entry.get("text")
            except (json.JSONDecodeError, KeyError, TypeError):
                report.bad.append((f"{rel_meta}:{number}", 'not a JSON object with "file_name" and "text"'))
                continue
            captions[(meta.parent / name).resolve()] = (text if isinstance(text, str) else "", METADATA_FILE)
    return captions


def _sidecar_caption(image: Path) -> tuple[str | None, str | None]:
    for suffix in CAPTION_SUFFIXES:
        sidecar = image.with_suffix(suffix)
        if sidecar.is_file():
            try:
                return sidecar.read_text(encoding="utf-8"), suffix
            except (OSError, UnicodeDecodeError):
                return "", f"{suffix} (unreadable)"
    return None, None


def _load_image(path: Path):
    """(sha256, width, height) of a fully decodable image, or the reason it is unusable."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode everything: truncated files fail here, not mid-training
            width, height = image.size
    except UnidentifiedImageError:
        return "not an image PIL can read (corrupt or unknown format)"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"corrupt or truncated image ({' '.join(str(exc).split())})"
    if width < 8 or height < 8:
        return f"too small to train on ({width}x{height})"
    return hashlib.sha256(data).hexdigest(), width, height


def _repeats(path: Path, root: Path) -> int:
    for folder in path.relative_to(root).parents:
        match = _REPEATS.match(folder.name)
        if match:
            return max(1, int(match.group(1)))
    return 1


def load_rgb(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")
