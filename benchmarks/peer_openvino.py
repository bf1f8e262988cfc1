"""The OpenVINO rows of benchmarks/peers.py, run with benchmarks/.venvs/openvino's python.

    benchmarks/.venvs/openvino/bin/python -m benchmarks.peer_openvino --model DIR --ir DIR --precision default ...

optimum-intel's OVStableDiffusionPipeline on the same diffusers folder as ldm: exported to OpenVINO IR
once (fp32 weights, no weight compression, cached in --ir), reshaped to static shapes (batch 1, CFG:
the UNet sees batch 2), compiled for the CPU with --threads inference threads, one stream and the
LATENCY hint. --precision default leaves INFERENCE_PRECISION_HINT as OpenVINO picks it (bf16 on CPUs
with native bf16); f32 forces it. The sampler is the DDIM scheduler ldm builds (WORK/scheduler.json),
the starting latents ldm's seeded noise (WORK/noise.npy), so the pictures can be compared with ldm's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks.peer_protocol import GUIDANCE, NEGATIVE, PROMPT, measure, parser, to_uint8


def export(model: Path, ir: Path) -> float:
    """Export the diffusers folder to IR once; the seconds it took (0 when the IR was there)."""
    if (ir / ".complete").exists():
        return 0.0
    from optimum.intel import OVStableDiffusionPipeline

    started = time.perf_counter()
    pipe = OVStableDiffusionPipeline.from_pretrained(model, export=True, compile=False, load_in_8bit=False)
    pipe.save_pretrained(ir)
    (ir / ".complete").write_text("ok\n")
    return time.perf_counter() - started


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--ir", type=Path, required=True)
    p.add_argument("--precision", choices=("default", "f32", "bf16"), required=True)
    args = p.parse_args()
    import openvino
    import torch
    from diffusers import DDIMScheduler
    from optimum.intel import OVStableDiffusionPipeline

    torch.set_num_threads(args.threads)  # the little torch work left in the pipeline (scheduler arithmetic)
    export_s = export(args.model, args.ir)
    config = {"INFERENCE_NUM_THREADS": str(args.threads), "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
    if args.precision != "default":
        config["INFERENCE_PRECISION_HINT"] = args.precision
    started = time.perf_counter()
    pipe = OVStableDiffusionPipeline.from_pretrained(args.ir, compile=False, ov_config=config)
    pipe.reshape(batch_size=1, height=args.size, width=args.size, num_images_per_prompt=1)
    pipe.scheduler = DDIMScheduler.from_config(json.loads((args.work / "scheduler.json").read_text()))
    pipe.compile()
    loaded_s = time.perf_counter() - started
    noise = torch.from_numpy(np.load(args.work / "noise.npy"))

    def make(steps: int) -> np.ndarray:
        out = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=GUIDANCE,
                   height=args.size, width=args.size, latents=noise.clone(), output_type="np")
        return to_uint8(out.images[0])

    unet = pipe.unet.request
    compiled = unet if hasattr(unet, "get_property") else unet.get_compiled_model()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    chosen = hint.to_string() if hasattr(hint, "to_string") else str(hint)  # e.g. "bf16"
    measure(make, args.row, args.work, loaded_s, {
        "precision_hint": chosen, "requested": args.precision, "export_s": round(export_s, 1),
        "openvino": openvino.__version__, "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "unet_input_shapes": [str(i.get_partial_shape()) for i in compiled.inputs]})


if __name__ == "__main__":
    main()
