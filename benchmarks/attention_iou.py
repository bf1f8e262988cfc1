"""Does the shape word's cross-attention map cover the drawn shape? (`ldm generate --attention-maps`)

    .venv/bin/python -m benchmarks.attention_iou [--images 24] [--seed 5]

Random demo prompts "a {size} {colour} {shape} on a {background} background" with random seeds,
generated at default settings (50 steps, guidance 7.5, DDIM) with attention recording on. For each
picture: the shape word's map (word_maps, upsampled bilinearly to 128x128), thresholded DAAM-style
at 0.4 of its maximum, against the checker's shape mask (ldm_cli.demo.checker.shape_mask): IoU.

Chance, two ways: (1) the same thresholded maps against the masks of the *other* pictures (shuffled
pairs: what a map that only knew "there is a shape near the middle" would score); (2) a mask of the
same area placed independently of the shape: E[IoU] = a m / (a + m - a m) with a, m the two area
fractions. Also the background word's map, which should overlap the shape less.

Writes benchmarks/results/attention_iou.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from ldm_cli.demo.checker import read_image, shape_mask
from ldm_cli.demo.shapes import random_scene
from ldm_cli.explain.attention import recording, upsample, word_maps
from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
from ldm_cli.pipeline.generation import TextToImage
from ldm_cli.pipeline.txt2img import load_model, resolve_plan

RESULTS = Path(__file__).parent / "results" / "attention_iou.json"
THRESHOLD = 0.4  # of the map's maximum (DAAM's tau)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def thresholded(maps, word: str, size) -> np.ndarray:
    heat = upsample(maps.word_maps[maps.words.index(word)], size).numpy()
    return heat >= THRESHOLD * heat.max()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = GenerateSettings(prompts=("x",), model=ModelSettings(model="demo", device="cpu"))
    components, device, dtype, _ = load_model(settings)
    plan = resolve_plan(settings, components)
    maker = TextToImage(components, device, dtype)
    rng = random.Random(args.seed)
    shapes, backgrounds, masks, rows = [], [], [], []
    for _ in range(args.images):
        scene = random_scene(rng, allow_held_out=True)
        prompt, seed = scene.plain_prompt(), rng.randrange(2**31)
        with recording(components.unet, plan.latent_shape(components)[-2:]) as recorder:
            image = maker.generate(prompt, seed, plan)
        pixels = image.pixels
        maps = word_maps(components.tokenizer, prompt, recorder.token_maps)
        size = pixels.shape[:2]
        mask = shape_mask(pixels)
        reading = read_image(pixels)
        shapes.append(thresholded(maps, scene.shape, size))
        backgrounds.append(thresholded(maps, "background", size))
        masks.append(mask)
        rows.append({"prompt": prompt, "seed": seed, "drawn_right": reading.shape == scene.shape,
                     "iou_shape_word": iou(shapes[-1], mask), "iou_background_word": iou(backgrounds[-1], mask),
                     "mask_area": float(mask.mean()), "map_area": float(shapes[-1].mean())})
        print(json.dumps(rows[-1]), flush=True)
    n = len(rows)
    shuffled = [iou(shapes[i], masks[j]) for i in range(n) for j in range(n) if i != j]
    independent = [r["map_area"] * r["mask_area"] / (r["map_area"] + r["mask_area"] - r["map_area"] * r["mask_area"])
                   for r in rows]
    matched = [r["iou_shape_word"] for r in rows]
    result = {
        "images": n, "seed": args.seed, "threshold": f"{THRESHOLD} x the map's maximum",
        "settings": {"steps": plan.steps, "guidance": plan.guidance, "scheduler": plan.scheduler},
        "mean_iou_shape_word": float(np.mean(matched)),
        "mean_iou_shape_word_shuffled_pairs": float(np.mean(shuffled)),
        "mean_iou_same_area_independent": float(np.mean(independent)),
        "mean_iou_background_word": float(np.mean([r["iou_background_word"] for r in rows])),
        "share_above_shuffled_mean": float(np.mean([m > np.mean(shuffled) for m in matched])),
        "per_image": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=1))


if __name__ == "__main__":
    main()
