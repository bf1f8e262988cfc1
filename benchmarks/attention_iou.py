"""Does the shape word's cross-attention map cover the drawn shape? (`ldm generate --attention-maps`)

    .venv/bin/python -m benchmarks.attention_iou [--images 24] [--seed 5]

Random demo prompts "a {size} {colour} {shape} on a {background} background" with random seeds,
generated at default settings (50 steps, guidance 7.5, DDIM) with attention recording on. For each
picture: the shape word's map (word_maps, upsampled bilinearly to 128x128), thresholded in
three ways (THRESHOLDS), against the checker's shape mask (ldm_cli.demo.checker.shape_mask): IoU.

Chance: the same maps against the masks of the *other* pictures (shuffled pairs: what a map that
only knew "there is a shape near the middle" would score), per picture and on average. Also the
background word's map, which should overlap the shape less than chance.

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
# Three ways to turn a map into a mask: DAAM's (0.4 of the maximum), above its mean, and its top pixels
# with the same area as the true shape (which makes the comparison independent of the mask's size).
THRESHOLDS = {
    "daam_0.4_max": lambda heat, area: heat >= 0.4 * heat.max(),
    "above_mean": lambda heat, area: heat > heat.mean(),
    "equal_area": lambda heat, area: heat >= np.quantile(heat, 1 - area) if area > 0 else heat > heat.max(),
}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def heat_of(maps, word: str, size) -> np.ndarray:
    return upsample(maps.word_maps[maps.words.index(word)], size).numpy()


def compare(heats, masks, rule) -> dict:
    """Matched IoU against the same maps on the other pictures' masks (shuffled pairs), per picture."""
    n = len(heats)
    matched, shuffled, above = [], [], []
    for i in range(n):
        own = iou(rule(heats[i], masks[i].mean()), masks[i])
        others = [iou(rule(heats[i], masks[j].mean()), masks[j]) for j in range(n) if j != i]
        matched.append(own)
        shuffled.extend(others)
        above.append(own > np.mean(others))
    return {"mean_iou": float(np.mean(matched)), "mean_iou_shuffled_pairs": float(np.mean(shuffled)),
            "share_of_pictures_above_their_shuffled_mean": float(np.mean(above))}


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
    shape_heats, background_heats, masks, rows = [], [], [], []
    for _ in range(args.images):
        scene = random_scene(rng, allow_held_out=True)
        prompt, seed = scene.plain_prompt(), rng.randrange(2**31)
        with recording(components.unet, plan.latent_shape(components)[-2:]) as recorder:
            image = maker.generate(prompt, seed, plan)
        pixels = image.pixels
        maps = word_maps(components.tokenizer, prompt, recorder.token_maps)
        size = pixels.shape[:2]
        masks.append(shape_mask(pixels))
        shape_heats.append(heat_of(maps, scene.shape, size))
        background_heats.append(heat_of(maps, "background", size))
        rows.append({"prompt": prompt, "seed": seed, "drawn_right": read_image(pixels).shape == scene.shape,
                     "mask_area": float(masks[-1].mean()),
                     "iou_shape_word": {k: iou(rule(shape_heats[-1], masks[-1].mean()), masks[-1]) for k, rule in THRESHOLDS.items()}})
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "images": len(rows), "seed": args.seed,
        "settings": {"steps": plan.steps, "guidance": plan.guidance, "scheduler": plan.scheduler},
        "shape_word": {k: compare(shape_heats, masks, rule) for k, rule in THRESHOLDS.items()},
        "background_word": {k: compare(background_heats, masks, rule) for k, rule in THRESHOLDS.items()},
        "per_image": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=1))


if __name__ == "__main__":
    main()
