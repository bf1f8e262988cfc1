"""One VAE decode in a fresh process, to measure what --vae-tiling does to peak memory.

    python -m benchmarks.vae_decode FOLDER --size 768 [--tiling]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--tiling", action="store_true")
    args = parser.parse_args()

    import torch
    from diffusers import AutoencoderKL

    from ldm_cli.pipeline.codec import latents as latent_ops

    vae = AutoencoderKL.from_pretrained(args.folder, subfolder="vae").eval()
    if args.tiling:
        vae.enable_tiling()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latents = torch.randn(1, vae.config.latent_channels, args.size // factor, args.size // factor,
                          generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    image = latent_ops.decode(vae, latents)
    print(json.dumps({"decode_s": time.perf_counter() - started, "shape": list(image.shape)}))


if __name__ == "__main__":
    main()
