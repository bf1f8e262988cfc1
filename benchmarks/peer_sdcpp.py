"""The stable-diffusion.cpp rows of benchmarks/peers.py, run with benchmarks/.venvs/sdcpp's python.

    benchmarks/.venvs/sdcpp/bin/python -m benchmarks.peer_sdcpp --checkpoint FILE --wtype f32 ...

stable-diffusion-cpp-python (built from source with -march=native) loads the same random SD1.5
weights as ldm, written as one single-file checkpoint in the original LDM key layout
(tests/ldm_checkpoint.export_single_file), converted at load to --wtype (f32, f16, q8_0, bf16).
Euler with the discrete schedule, guidance 7.5 (sd.cpp runs the conditional and unconditional UNet
passes one after the other), its own RNG: its pictures cannot share ldm's starting noise.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.peer_protocol import GUIDANCE, NEGATIVE, PROMPT, measure, parser


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--wtype", choices=("f32", "f16", "q8_0", "bf16"), required=True)
    args = p.parse_args()
    from importlib.metadata import version

    from stable_diffusion_cpp import StableDiffusion

    started = time.perf_counter()
    sd = StableDiffusion(model_path=args.checkpoint, n_threads=args.threads, wtype=args.wtype, vae_decode_only=True,
                         verbose=False)
    loaded_s = time.perf_counter() - started

    def make(steps: int) -> np.ndarray:
        images = sd.generate_image(prompt=PROMPT, negative_prompt=NEGATIVE, width=args.size, height=args.size,
                                   cfg_scale=GUIDANCE, sample_method="euler", scheduler="discrete", sample_steps=steps,
                                   seed=args.seed)
        return np.asarray(images[0].convert("RGB"))

    measure(make, args.row, args.work, loaded_s, {"wtype": args.wtype, "threads": args.threads, "sampler": "euler",
                                                  "stable_diffusion_cpp_python": version("stable-diffusion-cpp-python")})


if __name__ == "__main__":
    main()
