"""A1111's X/Y/Z plot: axes of `KEY=V1,V2,...`, the cells they span, and the labelled sheet.

Each axis changes one `ldm generate` argument per value; prompt S/R searches for its first value
and replaces it with each value in turn (the first cell keeps the prompt as it is), in the prompt
and the negative prompt, as A1111 does. Values are comma-separated; quote one that holds a comma
("a, b"). A1111's range forms (1-5, 1-5 (+2), 1-5 [3]) work for integer and number keys.
"""

from __future__ import annotations

import csv
import itertools
import re
from dataclasses import dataclass

import numpy as np

from ldm_cli.errors import UsageError


def _int(text: str) -> int:
    return int(text)


def _float(text: str) -> float:
    return float(text)


def _text(text: str) -> str:
    return text


@dataclass(frozen=True)
class AxisKey:
    name: str
    label: str  # as the sheet writes it
    convert: object


KEYS = {k.name: k for k in [
    AxisKey("steps", "Steps", _int),
    AxisKey("g", "CFG scale", _float),
    AxisKey("seed", "Seed", _int),
    AxisKey("scheduler", "Sampler", _text),
    AxisKey("schedule-type", "Schedule type", _text),
    AxisKey("tcd-gamma", "TCD gamma", _float),
    AxisKey("clip-skip", "Clip skip", _int),
    AxisKey("strength", "Denoising strength", _float),  # the hires pass's with --hires-scale, else img2img's
    AxisKey("hires-scale", "Hires upscale", _float),
    AxisKey("hires-steps", "Hires steps", _int),
    AxisKey("lora", "LoRA scale", _float),  # the scale of every --lora
    AxisKey("variation-seed", "Variation seed", _int),
    AxisKey("variation-strength", "Variation strength", _float),
    AxisKey("prompt", "Prompt S/R", _text),
]}
ALIASES = {"cfg": "g", "guidance": "g", "sampler": "scheduler", "clip_skip": "clip-skip", "denoising": "strength",
           "prompt-sr": "prompt", "prompt_sr": "prompt", "sr": "prompt", "lora-scale": "lora"}
_RANGE = re.compile(r"^\s*([+-]?[\d.]+)\s*-\s*([+-]?[\d.]+)(?:\s*\(([+-]?[\d.]+)\)|\s*\[(\d+)\])?\s*$")


@dataclass(frozen=True)
class Axis:
    key: AxisKey
    values: tuple  # converted values

    def label(self, value) -> str:
        return str(value) if self.key.name == "prompt" else f"{self.key.label}: {value}"


def parse_axis(flag: str, text: str) -> Axis:
    name, sep, raw = text.partition("=")
    name = ALIASES.get(name.strip().lower(), name.strip().lower())
    if not sep or name not in KEYS:
        raise UsageError(f"{flag} {text!r}: write KEY=V1,V2,... with KEY one of {', '.join(KEYS)}")
    key = KEYS[name]
    items = [v.strip() for v in next(csv.reader([raw], skipinitialspace=True), [])]
    if key.convert is not _text:
        items = [x for item in items for x in _expand_range(item, key.convert is _int)]
    if not items or any(v == "" for v in items):
        raise UsageError(f"{flag} {text!r}: give at least one value, e.g. {name}=10,20,30")
    try:
        values = tuple(key.convert(v) for v in items)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: {name} takes {'whole numbers' if key.convert is _int else 'numbers'}") from None
    if name == "prompt" and len(values) < 2:
        raise UsageError(f"{flag} {text!r}: prompt S/R needs the search term and at least one replacement")
    return Axis(key, values)


def _expand_range(item: str, integer: bool) -> list[str]:
    """A1111's ranges: 1-5 -> 1,2,3,4,5; 1-9 (+3) -> 1,4,7; 0-1 [3] -> 0,0.5,1."""
    match = _RANGE.match(item)
    if not match or item.lstrip("+-").replace(".", "").isdigit():
        return [item]
    start, end, step, count = match.groups()
    start_v, end_v = float(start), float(end)
    if count:
        n = int(count)
        points = [start_v + (end_v - start_v) * i / (n - 1) for i in range(n)] if n > 1 else [start_v]
    else:
        delta = float(step) if step else 1.0
        if delta == 0 or (end_v - start_v) * delta < 0:
            raise UsageError(f"range {item!r}: the step must go from {start} toward {end}")
        points, v = [], start_v
        while (v <= end_v + 1e-9) if delta > 0 else (v >= end_v - 1e-9):
            points.append(v)
            v += delta
    return [str(int(round(p))) if integer else f"{p:g}" for p in points]


def cells(axes: list[Axis | None]) -> list[tuple]:
    """Every (x, y, z) index triple, z slowest then y then x (the order A1111 draws them)."""
    sizes = [len(a.values) if a else 1 for a in axes]
    return [(x, y, z) for z, y, x in itertools.product(range(sizes[2]), range(sizes[1]), range(sizes[0]))]


def apply(args: dict, axis: Axis, value) -> dict:
    """A copy of `ldm generate`'s arguments with the axis set to `value`."""
    args = dict(args)
    name = axis.key.name
    if name == "prompt":
        search = axis.values[0]
        if search not in (args.get("prompt") or "") and search not in (args.get("negative_prompt") or ""):
            raise UsageError(f"prompt S/R: {search!r} is not in the prompt or the negative prompt; the first value is the search term")
        args["prompt"] = (args.get("prompt") or "").replace(search, value)
        if args.get("negative_prompt"):
            args["negative_prompt"] = args["negative_prompt"].replace(search, value)
    elif name == "lora":
        if not args.get("lora"):
            raise UsageError("--x/--y/--z lora=...: also pass --lora FILE (its scale is what the axis changes)")
        args["lora"] = [f"{_lora_file(v)}:{value:g}" for v in args["lora"]]
    elif name == "strength":
        args["hires_strength" if args.get("hires_scale") is not None else "strength"] = value
    else:
        args[{"g": "guidance"}.get(name, name.replace("-", "_"))] = value
    return args


def _lora_file(value: str) -> str:
    head, sep, tail = value.rpartition(":")
    try:
        float(tail)
        return head if sep and head else value
    except ValueError:
        return value


def draw_sheet(images: dict[tuple, np.ndarray], axes: list[Axis | None]) -> np.ndarray:
    """One sheet: x across, y down, one block per z value under its own title."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    sizes = [len(a.values) if a else 1 for a in axes]
    cell_h = max(im.shape[0] for im in images.values())
    cell_w = max(im.shape[1] for im in images.values())
    pad = 6
    x_labels = [axes[0].label(v) for v in axes[0].values] if axes[0] else [""]
    y_labels = [axes[1].label(v) for v in axes[1].values] if axes[1] else [""]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = lambda t: int(probe.textlength(t, font=font))  # noqa: E731
    line_h = 14
    left = (max(text_w(t) for t in y_labels) + 2 * pad) if axes[1] else 0
    top = line_h + 2 * pad if axes[0] else 0
    title = line_h + 2 * pad if axes[2] else 0
    block_h = title + top + sizes[1] * cell_h
    sheet = Image.new("RGB", (left + sizes[0] * cell_w, sizes[2] * block_h), "white")
    draw = ImageDraw.Draw(sheet)
    for z in range(sizes[2]):
        y0 = z * block_h
        if axes[2]:
            draw.text((pad, y0 + pad), axes[2].label(axes[2].values[z]), fill="black", font=font)
        for x, label in enumerate(x_labels if axes[0] else []):
            draw.text((left + x * cell_w + (cell_w - text_w(label)) // 2, y0 + title + pad), label, fill="black", font=font)
        for y, label in enumerate(y_labels if axes[1] else []):
            draw.text((pad, y0 + title + top + y * cell_h + cell_h // 2 - line_h // 2), label, fill="black", font=font)
        for (x, y, zz), image in images.items():
            if zz == z:
                sheet.paste(Image.fromarray(image), (left + x * cell_w, y0 + title + top + y * cell_h))
    return np.asarray(sheet)
