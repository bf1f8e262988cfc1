"""Does int8 pay on this CPU? torch's CPU int8 path against fp32 and bf16, on the SD1.5 UNet, in one run.

    PYTHONPATH=. .venv/bin/python -m benchmarks.cpu_int8 [--size 256] [--repeats 2]

torch's CPU int8 path for a model like the UNet is dynamic quantization
(torch.ao.quantization.quantize_dynamic): nn.Linear weights stored as int8, activations quantized on
the fly per call (fbgemm/oneDNN int8 GEMM); convolutions stay fp32 (static int8 convs need a
calibrated pt2e flow, which torch now leaves to the separate torchao package). Rows, interleaved,
min of --repeats, one guided call (batch 2) at --size px: fp32, bf16, int8-dynamic Linear (fp32 rest).
Quality: PSNR/SSIM of the VAE-decoded x0 prediction against fp32's (random weights: how far it moves
the output, not how good it looks).

Writes benchmarks/results/cpu_int8.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from torch.ao.quantization import quantize_dynamic

    from benchmarks.deepcache import cpu_name
    from benchmarks.models import sd15_folder
    from ldm_cli.models.performance import cpu_has_native_bf16, use_sdpa
    from ldm_cli.pipeline.codec.quality import psnr, ssim

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    folder = sd15_folder()
    fp32 = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
    use_sdpa(fp32)
    models = {"fp32": fp32, "bf16": copy.deepcopy(fp32).to(torch.bfloat16)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for its quantized tensors
        models["int8-dynamic-linear"] = quantize_dynamic(copy.deepcopy(fp32), {torch.nn.Linear}, dtype=torch.qint8)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, args.size // 8, args.size // 8, generator=g)
    text = torch.randn(2, 77, 768, generator=g)
    t = torch.tensor(500)
    times = {name: [] for name in models}
    outputs = {}
    with torch.no_grad():
        for _ in range(args.repeats):  # interleaved: the shared machine's load hits every row alike
            for name, unet in models.items():
                dtype = torch.bfloat16 if name == "bf16" else torch.float32
                started = time.perf_counter()
                outputs[name] = unet(x.to(dtype), t, encoder_hidden_states=text.to(dtype), return_dict=False)[0].float()
                times[name].append(time.perf_counter() - started)
                print(f"{name}: {times[name][-1]:.2f} s", flush=True)
        del models
        alpha = DDIMScheduler.from_pretrained(folder / "scheduler").alphas_cumprod[500]
        vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
        use_sdpa(vae)
        pictures = {}
        for name, eps in outputs.items():
            x0 = (x[1:] - (1 - alpha).sqrt() * eps[1:]) / alpha.sqrt()
            image = vae.decode(x0 / vae.config.scaling_factor).sample
            pictures[name] = ((image[0] / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    base = min(times["fp32"])
    report = {"machine": {"cpu": cpu_name(), "avx512_bf16": cpu_has_native_bf16(), "cores": 2, "torch": torch.__version__,
                          "quantized_engine": torch.backends.quantized.engine,
                          "load_average": [round(v, 2) for v in os.getloadavg()]},
              "unet": "SD1.5 (random weights), one guided call, batch 2", "size": args.size, "repeats": args.repeats,
              "rows": {}}
    for name in times:
        report["rows"][name] = {
            "call_s": round(min(times[name]), 3), "speedup_vs_fp32": round(base / min(times[name]), 3),
            "x0_picture_psnr_db_vs_fp32": None if name == "fp32" else round(psnr(pictures["fp32"], pictures[name]), 2),
            "x0_picture_ssim_vs_fp32": None if name == "fp32" else round(ssim(pictures["fp32"], pictures[name]), 4),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cpu_int8.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
