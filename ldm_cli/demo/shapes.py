"""Synthetic captioned shapes: the demo model's whole world.

One image = one flat-coloured shape on a flat background, 128x128, anti-aliased by drawing at 4x
and box-filtering down. Attributes:

    colour      6 names (foreground and background from the same palette, never equal)
    shape       circle, square, triangle, cross
    size        small (about 40% of the side) or large (about 70%)

Captions come in several phrasings; the plain one is "a red circle on a blue background".
Some phrasings leave out the size or the background, so the model also learns prompts that say less.

Held out of training (never drawn by `sample_training_scenes`): the colour+shape pairs in HELD_OUT.
The benchmark asks for them to see whether the model composes attributes it never saw together.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128
SUPERSAMPLE = 4
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 70, 220),
    "yellow": (240, 215, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
SIZE_FRACTION = {"small": 0.42, "large": 0.72}  # bounding-box side / image side
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("green", "triangle"), ("yellow", "circle"), ("blue", "cross"), ("white", "square"), ("black", "triangle"),
     ("red", "cross")}
)
PHRASINGS = (
    "a {colour} {shape} on a {background} background",
    "a {size} {colour} {shape} on a {background} background",
    "a {colour} {shape} on {background}",
    "{size} {colour} {shape}, {background} background",
    "a picture of a {size} {colour} {shape} on a {background} background",
    "{background} background with a {colour} {shape}",
    "a {colour} {shape}",
    "a {size} {colour} {shape}",
)


@dataclass(frozen=True)
class Scene:
    colour: str
    background: str
    shape: str
    size: str
    dx: int = 0  # centre offset in pixels
    dy: int = 0

    @property
    def held_out(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT

    def caption(self, phrasing: int = 0) -> str:
        return PHRASINGS[phrasing].format(
            colour=self.colour, shape=self.shape, background=self.background, size=self.size
        )

    def plain_prompt(self, with_size: bool = True) -> str:
        return self.caption(1 if with_size else 0)


def random_scene(rng: random.Random, allow_held_out: bool = False) -> Scene:
    while True:
        colour, background = rng.sample(COLOURS, 2)
        shape = rng.choice(SHAPES)
        if allow_held_out or (colour, shape) not in HELD_OUT:
            break
    size = rng.choice(SIZES)
    room = int(SIZE * (1 - SIZE_FRACTION[size]) / 2) - 4  # keep the shape inside the frame
    jitter = min(room, 12)
    return Scene(colour, background, shape, size, rng.randint(-jitter, jitter), rng.randint(-jitter, jitter))


def render(scene: Scene) -> Image.Image:
    """Draw a scene at SUPERSAMPLE x resolution and box-filter it down (anti-aliased edges)."""
    big = SIZE * SUPERSAMPLE
    image = Image.new("RGB", (big, big), PALETTE[scene.background])
    draw = ImageDraw.Draw(image)
    half = SIZE_FRACTION[scene.size] * big / 2
    cx, cy = big / 2 + scene.dx * SUPERSAMPLE, big / 2 + scene.dy * SUPERSAMPLE
    left, top, right, bottom = cx - half, cy - half, cx + half, cy + half
    fill = PALETTE[scene.colour]
    if scene.shape == "circle":
        draw.ellipse((left, top, right, bottom), fill=fill)
    elif scene.shape == "square":
        draw.rectangle((left, top, right, bottom), fill=fill)
    elif scene.shape == "triangle":
        draw.polygon([(cx, top), (right, bottom), (left, bottom)], fill=fill)
    elif scene.shape == "cross":
        arm = half / 3
        draw.rectangle((cx - arm, top, cx + arm, bottom), fill=fill)
        draw.rectangle((left, cy - arm, right, cy + arm), fill=fill)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}")
    return image.resize((SIZE, SIZE), Image.BOX)


def sample_training_scenes(count: int, seed: int) -> list[tuple[Scene, str]]:
    """`count` (scene, caption) pairs from the training distribution (held-out pairs excluded)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        scene = random_scene(rng)
        pairs.append((scene, scene.caption(rng.randrange(len(PHRASINGS)))))
    return pairs


def render_array(scenes: list[Scene]) -> np.ndarray:
    """Render scenes into one uint8 array [N, SIZE, SIZE, 3]."""
    return np.stack([np.asarray(render(s)) for s in scenes])


def write_dataset(folder: Path, count: int, seed: int) -> Path:
    """Write `count` PNGs plus metadata.jsonl (Hugging Face imagefolder layout) into `folder`.

    Each metadata line: {"file_name", "text", "scene": {colour, background, shape, size, dx, dy}}.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (scene, caption) in enumerate(sample_training_scenes(count, seed)):
        name = f"{index:06d}.png"
        render(scene).save(folder / name, optimize=False, compress_level=1)
        lines.append(json.dumps({"file_name": name, "text": caption, "scene": asdict(scene)}))
    tmp = folder / "metadata.jsonl.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(folder / "metadata.jsonl")
    return folder


def read_dataset(folder: Path) -> tuple[np.ndarray, list[str]]:
    """Read an imagefolder (PNGs + metadata.jsonl) into uint8 [N, H, W, 3] and captions."""
    folder = Path(folder)
    images, captions = [], []
    for line in (folder / "metadata.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        with Image.open(folder / record["file_name"]) as image:
            images.append(np.asarray(image.convert("RGB")))
        captions.append(record["text"])
    return np.stack(images), captions
