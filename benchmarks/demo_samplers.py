"""Prompt adherence of the bundled demo model with every `ldm` scheduler, at few and at default steps.

    .venv/bin/python -m benchmarks.demo_samplers [--images 40] [--steps 20 50]

The same random prompts and seeds for every scheduler (guidance 7.5), read by ldm_cli.demo.checker.
Shows which samplers cope with the model's near-zero terminal SNR schedule at few steps.
Writes benchmarks/results/demo_samplers.json.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.demo_adherence import RESULTS, accuracy, load_maker, prompts_and_seeds, run_set
from ldm_cli.pipeline.config import GenerateSettings
from ldm_cli.pipeline.loop.schedulers import SCHEDULERS
from ldm_cli.pipeline.txt2img import resolve_plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--seed", type=int, default=777, help="seed of the prompt/seed draw")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    components, maker, _ = load_maker("demo")
    jobs = prompts_and_seeds(args.images, args.seed)
    table = {}
    for name in SCHEDULERS:
        for steps in args.steps:
            plan = resolve_plan(GenerateSettings(prompts=("",), steps=steps, scheduler=name), components)
            rows, _ = run_set(maker, plan, jobs)
            score = accuracy(rows)["all"]
            table.setdefault(name, {})[str(steps)] = {k: score[k] for k in ("colour", "background", "shape", "all_attributes")}
            print(name, steps, table[name][str(steps)], flush=True)
    report = {"model": "demo", "images": len(jobs), "guidance": 7.5, "accuracy": table}
    (RESULTS / "demo_samplers.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
