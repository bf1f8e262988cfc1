"""ldm's own row in benchmarks/peers.py: `ldm generate`'s loading path and sampler, in the main venv.

    PYTHONPATH=. .venv/bin/python -m benchmarks.peer_ldm --dtype auto --model DIR --size 512 --threads 2 ...

Loads the model as `ldm generate --dtype D` does (txt2img.load_model: auto picks bf16 on CPUs with
native bf16), then times DDIM with guidance 7.5 by benchmarks/peer_protocol.py's method. It also
checks that its starting noise is the noise.npy the OpenVINO rows are given.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.peer_protocol import GUIDANCE, NEGATIVE, PROMPT, measure, parser


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--dtype", choices=("auto", "fp32", "bf16"), required=True)
    p.add_argument("--model", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from ldm_cli.models.devices import dtype_name, generation_dtype
    from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
    from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
    from ldm_cli.pipeline.txt2img import load_model, unet_config
    from ldm_cli.models.loading import resolve_source

    started = time.perf_counter()
    settings = GenerateSettings(prompts=(PROMPT,), model=ModelSettings(model=args.model, device="cpu", dtype=args.dtype,
                                                                      offline=True))
    components, device, dtype, _ = load_model(settings)
    loaded_s = time.perf_counter() - started
    _, reason = generation_dtype(args.dtype, "cpu", unet_config(resolve_source(args.model), None))
    maker = TextToImage(components, device, dtype)

    def make(steps: int) -> np.ndarray:
        plan = SamplingPlan(args.size, args.size, steps, GUIDANCE, "ddim", negative_prompt=NEGATIVE)
        with torch.no_grad():
            return maker.generate(PROMPT, args.seed, plan).pixels

    generator = torch.Generator("cpu").manual_seed(args.seed)
    shape = SamplingPlan(args.size, args.size, 1, GUIDANCE, "ddim").latent_shape(components)
    noise = maker.noise(shape, generator, SamplingPlan(args.size, args.size, 1, GUIDANCE, "ddim")).float().numpy()
    same_noise = bool(np.array_equal(noise, np.load(args.work / "noise.npy"))) if dtype == torch.float32 else None
    measure(make, args.row, args.work, loaded_s, {"dtype": dtype_name(dtype), "dtype_reason": reason,
                                                  "threads": torch.get_num_threads(), "torch": torch.__version__,
                                                  "noise_matches_noise_npy": same_noise})


if __name__ == "__main__":
    main()
