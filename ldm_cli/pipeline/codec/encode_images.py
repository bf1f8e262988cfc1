"""`ldm encode` end to end: images -> (size policy) -> VAE posterior -> mean or seeded sample,
x scaling_factor -> <name>.latent.safetensors (+ --report PSNR/SSIM, --visualize channel picture)."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from ldm_cli.errors import printable
from ldm_cli.files.latent_files import SUFFIX, LatentHeader, stem_of
from ldm_cli.pipeline.codec.codec_settings import EncodeSettings, output_path
from ldm_cli.pipeline.codec.file_batch import Batch, progress, say
from ldm_cli.pipeline.codec.vae_loading import LoadedVae, load_vae


def run_encode(s: EncodeSettings, files: list[Path]) -> list[dict]:
    """Encode every readable image; a bad one is named and skipped, and the batch fails at the end."""
    from ldm_cli.files.image_io import load_image

    batch = Batch("images", "encoded", len(files))
    good = [path for path in files if batch.attempt(path, load_image, path, s.size)]  # all checked before the model loads
    batch.stop_if_nothing_left(good)
    loaded = load_vae(s.model)
    seed = s.seed
    if s.sample and seed is None:
        seed = secrets.randbelow(2**32)
        say(f"seed {seed} (random)")
    results = []
    for path in progress(good, "encoding"):
        result = batch.attempt(path, _encode_one, s, loaded, path, seed)
        if result:
            results.append(result)
    batch.finish()
    return results


def _encode_one(s: EncodeSettings, loaded: LoadedVae, path: Path, seed: int | None) -> dict:
    import torch

    from ldm_cli.pipeline.codec import vae_ops
    from ldm_cli.files.image_io import load_image, to_tensor
    from ldm_cli.files.latent_files import output_name, save_latents

    started = time.perf_counter()
    image = load_image(path, s.size)
    generator = torch.Generator("cpu").manual_seed(seed) if s.sample else None
    vae = loaded.vae
    encoding = vae_ops.encode(vae, to_tensor(image.pixels), sample=s.sample, generator=generator, tile=s.tile)
    width, height = image.size
    header = LatentHeader(
        scaling_factor=float(vae.config.scaling_factor),
        shift_factor=float(getattr(vae.config, "shift_factor", None) or 0.0),
        latent_kind=encoding.kind, seed=seed if s.sample else None, model=loaded.spec, vae_sha256=loaded.sha256,
        source_name=path.name, source_sha256=image.sha256, source_bytes=image.file_bytes,
        source_size="{}x{}".format(*image.original_size), encoded_size=f"{width}x{height}",
        preprocessing=image.describe() if image.notes else "", tiled=encoding.tiled,
    )
    written = save_latents(encoding.latents, header, output_path(s.out, SUFFIX, output_name(path)))
    result = {
        "image": str(path), "path": str(written), "shape": list(encoding.latents.shape), "kind": encoding.kind,
        "seed": header.seed, "size": [width, height], "preprocessing": image.notes, "tiled": encoding.tiled,
        "kl": encoding.kl, "channel_mean": [], "channel_std": [],
    }
    for mean, std in vae_ops.channel_stats(encoding.latents):
        result["channel_mean"].append(round(mean, 6))
        result["channel_std"].append(round(std, 6))
    if s.report:
        result.update(_reconstruction(loaded, encoding.latents, image.pixels, s.tile))
    if s.visualize:
        result["channels_png"] = str(_write_channel_picture(encoding.latents, written, header))
    result["seconds"] = round(time.perf_counter() - started, 3)
    _print_encode(s, result, encoding.latents.numel())
    return result


def _reconstruction(loaded: LoadedVae, latents, pixels, tile) -> dict:
    from ldm_cli.pipeline.codec import vae_ops
    from ldm_cli.pipeline.codec.latents import to_uint8
    from ldm_cli.pipeline.codec.quality import psnr, ssim

    images, _ = vae_ops.decode(loaded.vae, latents, tile)
    again = to_uint8(images)[0]
    return {"psnr_db": round(psnr(pixels, again), 4), "ssim": round(ssim(pixels, again), 6)}


def _write_channel_picture(latents, written: Path, header: LatentHeader) -> Path:
    from ldm_cli.files.images import save_png
    from ldm_cli.pipeline.codec.quality import channel_picture

    text = {"ldm": json.dumps({"tool": "ldm", "command": "encode --visualize", "latents": written.name,
                               "source": header.source_name, "kind": header.latent_kind})}
    return save_png(channel_picture(latents), written.with_name(stem_of(written) + ".channels.png"), text)


def _print_encode(s: EncodeSettings, r: dict, elements: int) -> None:
    if s.json_output:
        print(json.dumps(r), flush=True)
        return
    lines = []
    if r["preprocessing"]:
        lines.append(f"{r['image']}: " + "; ".join(r["preprocessing"]))
    kind = "posterior mean" if r["kind"] == "mean" else f"posterior sample, seed {r['seed']}"
    tiled = "  (tiled VAE)" if r["tiled"] else ""
    lines.append(f"{r['image']} -> {r['path']}  latents {r['shape']} ({kind}){tiled}")
    lines.append("  channel mean " + " ".join(f"{v:+.4f}" for v in r["channel_mean"]))
    lines.append("  channel std  " + " ".join(f"{v:.4f}" for v in r["channel_std"]))
    lines.append(f"  KL(q(z|x) || N(0,I)) = {r['kl']:.1f} nats ({r['kl'] / elements:.3f} per latent element)")
    if "psnr_db" in r:
        lines.append(f"  reconstruction PSNR {r['psnr_db']:.2f} dB  SSIM {r['ssim']:.4f}")
    if "channels_png" in r:
        lines.append(f"  channels picture -> {r['channels_png']}")
    print(printable("\n".join(lines), keep_newlines=True), flush=True)  # file names can hold escape sequences
