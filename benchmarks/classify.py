"""Zero-shot classification of held-out demo pictures by the ELBO (`ldm classify`), against `--model demo`.

    .venv/bin/python -m benchmarks.classify [--images 48] [--samples 32] [--seed 7] [--weighting elbo]

Pictures: `ldm demo-data` with a seed the model was not trained on (training used seed 0), so every
picture is new to it. Labels: all 120 captions "a {colour} {shape} on a {background} background"
(6 colours x 4 shapes x 5 other backgrounds); the top label is read back as colour, shape and
background. Chance: 1/6 colour, 1/4 shape, 1/6 background (a random caption's background), 1/120 all.

Writes benchmarks/results/classify.json (one run per weighting, merged).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from ldm_cli.demo.shapes import COLOURS, SHAPES, write_dataset
from ldm_cli.explain import elbo
from ldm_cli.explain.classify import ClassifyPlan, classify
from ldm_cli.explain.loaded import image_latents, load_model
from ldm_cli.pipeline.config import ModelSettings
from ldm_cli.pipeline.prompts.text import encode_prompts

RESULTS = Path(__file__).parent / "results" / "classify.json"
ATTRIBUTES = ("colour", "shape", "background")


def captions() -> list[tuple[str, dict]]:
    return [(f"a {c} {s} on a {b} background", {"colour": c, "shape": s, "background": b})
            for c in COLOURS for s in SHAPES for b in COLOURS if b != c]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7, help="demo-data seed (training used 0)")
    parser.add_argument("--weighting", default="elbo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(ModelSettings(model="demo", device="cpu"))
    c = model.components
    bound = elbo.bound_weights(c.scheduler_config)
    labels = captions()
    conds = encode_prompts(c.tokenizer, c.text_encoder, [text for text, _ in labels])
    plan = ClassifyPlan(samples=args.samples, weighting=args.weighting)
    right = {a: 0 for a in (*ATTRIBUTES, "all")}
    rows, seconds, evaluations = [], 0.0, 0
    with tempfile.TemporaryDirectory() as folder:
        write_dataset(Path(folder), args.images, args.seed)
        records = [json.loads(line) for line in (Path(folder) / "metadata.jsonl").read_text().splitlines()]
        for index, record in enumerate(records):
            started = time.perf_counter()
            _, x0 = image_latents(model, Path(folder) / record["file_name"])
            ranking = classify(c.unet, x0, conds, [text for text, _ in labels], bound,
                               c.scheduler_config["prediction_type"], plan)
            seconds += time.perf_counter() - started
            evaluations += ranking.samples_run
            top = dict(labels)[ranking.labels[0]["label"]]
            truth = {a: record["scene"][a] for a in ATTRIBUTES}
            hits = {a: top[a] == truth[a] for a in ATTRIBUTES}
            hits["all"] = all(hits.values())
            for a, ok in hits.items():
                right[a] += ok
            rows.append({"file": record["file_name"], "truth": truth, "top": ranking.labels[0]["label"], **hits})
            print(f"{index + 1}/{len(records)} {truth} -> {ranking.labels[0]['label']}  "
                  f"{right['all']}/{index + 1} all right", flush=True)
    n = len(records)
    result = {
        "images": n, "data_seed": args.seed, "labels": len(labels), "weighting": args.weighting,
        "plan": plan.__dict__, "accuracy": {a: right[a] / n for a in right},
        "chance": {"colour": 1 / 6, "shape": 1 / 4, "background": 1 / 6, "all": 1 / len(labels)},
        "seconds_per_image": seconds / n, "unet_evaluations_per_image": evaluations / n,
        "machine": f"{platform.machine()} CPU, 1 torch thread, shared 2-core machine",
        "torch": torch.__version__, "per_image": rows,
    }
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged[args.weighting] = result
    RESULTS.write_text(json.dumps(merged, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=1))


if __name__ == "__main__":
    main()
