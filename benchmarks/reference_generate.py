"""The reference for the fresh-process timing: diffusers' StableDiffusionPipeline from the shell.

    python -m benchmarks.reference_generate FOLDER PROMPT --steps 2 --seed 0 --size 512 --out x.png

Prints one JSON line: import, load and generate seconds. Safety checker off, as in ldm.
"""

from __future__ import annotations

import argparse
import json
import time

started = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("prompt")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch
    from diffusers import StableDiffusionPipeline

    imported = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(args.folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter()
    image = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance, height=args.size,
                 width=args.size, generator=torch.Generator().manual_seed(args.seed)).images[0]
    generated = time.perf_counter()
    image.save(args.out)
    print(json.dumps({"import_s": imported - started, "model_load_s": loaded - imported,
                      "generate_s": generated - loaded}))


if __name__ == "__main__":
    main()
