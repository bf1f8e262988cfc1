"""Does ToMe (token merging for SD, `--token-merging R`) pay on this CPU? Where, and for how much change?

    PYTHONPATH=. .venv/bin/python -m benchmarks.token_merging [--size 768] [--ratios 0.3,0.5]

SD1.5's UNet (benchmarks/.cache/sd15-random, random weights), one guided call (batch 2) at --size px in
the dtype `--dtype auto` picks here; plain against ldm's token merging at ratio R
(ldm_cli/models/token_merging.py: A1111's settings, self-attention at full resolution only),
interleaved, min of --repeats. Quality on random weights can only be the distance from the unmerged
output: PSNR of the VAE-decoded x0 prediction.

Writes benchmarks/results/token_merging_<size>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    import numpy as np
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from benchmarks.deepcache import cpu_name
    from benchmarks.models import sd15_folder
    from ldm_cli.models.performance import cpu_has_native_bf16, use_sdpa
    from ldm_cli.models.token_merging import merging_tokens
    from ldm_cli.pipeline.codec.quality import psnr, ssim

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--ratios", default="0.5")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    dtype = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    folder = sd15_folder()
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype).eval()
    use_sdpa(unet)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, args.size // 8, args.size // 8, generator=g).to(dtype)
    text = torch.randn(2, 77, 768, generator=g).to(dtype)
    t = torch.tensor(500)
    ratios = [float(r) for r in args.ratios.split(",")]
    times = {r: [] for r in [0.0, *ratios]}
    outputs = {}
    with torch.no_grad():
        for _ in range(args.repeats):  # interleaved: the shared machine's load hits every ratio alike
            for ratio in times:
                with merging_tokens(unet, ratio):
                    started = time.perf_counter()
                    outputs[ratio] = unet(x, t, encoder_hidden_states=text, return_dict=False)[0].float()
                    times[ratio].append(time.perf_counter() - started)
                print(f"ratio {ratio}: {times[ratio][-1]:.2f} s", flush=True)
        del unet
        alpha = DDIMScheduler.from_pretrained(folder / "scheduler").alphas_cumprod[500]
        vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
        use_sdpa(vae)
        pictures = {}
        for ratio, eps in outputs.items():
            x0 = (x[1:].float() - (1 - alpha).sqrt() * eps[1:]) / alpha.sqrt()
            image = vae.decode(x0 / vae.config.scaling_factor).sample
            pictures[ratio] = ((image[0] / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    base = min(times[0.0])
    report = {"machine": {"cpu": cpu_name(), "cores": 2, "torch": torch.__version__,
                          "note": "shared 2-core machine: timings move +-15% between runs",
                          "load_average": [round(v, 2) for v in os.getloadavg()]},
              "unet": "SD1.5 (random weights), one guided call, batch 2", "size": args.size,
              "dtype": str(dtype).removeprefix("torch."), "repeats": args.repeats,
              "plain_call_s": round(base, 3), "by_ratio": {}}
    for ratio in ratios:
        report["by_ratio"][str(ratio)] = {
            "call_s": round(min(times[ratio]), 3), "speedup": round(base / min(times[ratio]), 3),
            "eps_max_abs_diff": round(float((outputs[ratio] - outputs[0.0]).abs().max()), 4),
            "x0_picture_psnr_db": round(psnr(pictures[0.0], pictures[ratio]), 2),
            "x0_picture_ssim": round(ssim(pictures[0.0], pictures[ratio]), 4),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"token_merging_{args.size}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
