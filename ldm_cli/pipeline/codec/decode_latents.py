"""`ldm decode` end to end: .latent.safetensors -> check against the model's VAE -> pixels -> <name>.png
with provenance."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ldm_cli.pipeline.config import ModelSettings
from ldm_cli.errors import GenerationError, InputFileError, ModelError, printable
from ldm_cli.files.latent_files import stem_of
from ldm_cli.pipeline.codec.codec_settings import DecodeSettings, output_path
from ldm_cli.pipeline.codec.file_batch import Batch, progress, say
from ldm_cli.pipeline.codec.vae_loading import LoadedVae, load_vae


def run_decode(s: DecodeSettings, files: list[Path]) -> list[dict]:
    from ldm_cli.files.latent_files import load_latents

    batch = Batch("latent files", "decoded", len(files))
    latent_files = [f for p in files if (f := batch.attempt(p, load_latents, p, s.model.allow_pickle))]  # before the model
    batch.stop_if_nothing_left(latent_files)
    model = _decode_model(s, latent_files)
    loaded = load_vae(model)
    results = []
    for latent_file in progress(latent_files, "decoding"):
        result = batch.attempt(latent_file.path, _check_and_decode, s, loaded, latent_file)
        if result:
            results.append(result)
    batch.finish()
    return results


def _check_and_decode(s: DecodeSettings, loaded: LoadedVae, latent_file) -> dict:
    check_fits(latent_file, loaded.vae, loaded.spec, loaded.sha256)
    try:
        return _decode_one(s, loaded, latent_file)
    except GenerationError as exc:  # NaN/inf pixels from this file's latents: this file's problem
        raise InputFileError(f"{latent_file.path}: {exc}") from None


def _decode_model(s: DecodeSettings, latent_files) -> ModelSettings:
    """--model if given, else the model the first file records (so `ldm decode x.latent.safetensors` just works)."""
    from dataclasses import replace

    from ldm_cli.models.sources import resolve_source

    recorded = next((f.header.model for f in latent_files if f.header and f.header.model), None)
    if s.model_given or recorded is None or s.model.vae:
        return s.model
    try:
        resolve_source(recorded)
    except ModelError:
        raise ModelError(
            f"{latent_files[0].path} was encoded with model {recorded!r}, which is not available here; "
            "pass --model with a model that has the same VAE"
        ) from None
    return replace(s.model, model=recorded)


def check_fits(latent_file, vae, spec: str, vae_sha256: str) -> None:
    """Channel count and scaling factor must match the model; another VAE hash is only a warning."""
    channels = latent_file.latents.shape[1]
    if channels != vae.config.latent_channels:
        raise InputFileError(
            f"{latent_file.path}: {channels} latent channels, but the VAE of {spec} expects "
            f"{vae.config.latent_channels}; use the model it was encoded with"
        )
    header = latent_file.header
    if header is None:
        say(f"{latent_file.path}: no ldm header; assuming the latents are already multiplied by the scaling factor")
        return
    if not header.scaling_applied:
        raise InputFileError(f"{latent_file.path}: the header says the scaling factor was not applied; ldm cannot decode it")
    if abs(header.scaling_factor - vae.config.scaling_factor) > 1e-6:
        raise InputFileError(
            f"{latent_file.path}: encoded with scaling factor {header.scaling_factor} (model {header.model}), but "
            f"{spec} uses {vae.config.scaling_factor}; pass --model with the model it was encoded with"
        )
    if header.vae_sha256 and vae_sha256 and header.vae_sha256 != vae_sha256:
        say(f"warning: {latent_file.path} was encoded with another VAE ({header.vae_sha256[:10]}, {header.model}); "
            f"using the VAE of {spec} ({vae_sha256[:10]}) anyway")


def _decode_one(s: DecodeSettings, loaded: LoadedVae, latent_file) -> dict:
    from dataclasses import asdict

    from ldm_cli.pipeline.codec import vae_ops
    from ldm_cli.files.images import save_png
    from ldm_cli.pipeline.codec.latents import to_uint8
    from ldm_cli.files.metadata import FORMAT_VERSION, library_versions

    started = time.perf_counter()
    latents = latent_file.latents.to(loaded.device, loaded.dtype)
    images, tiled = vae_ops.decode(loaded.vae, latents, s.tile)
    record = {
        "format": FORMAT_VERSION, "tool": "ldm", "command": "decode",
        "source": {"path": str(latent_file.path), "sha256": _sha256(latent_file.path),
                   "header": asdict(latent_file.header) if latent_file.header else None},
        "model": {"spec": loaded.spec, "vae_sha256": loaded.sha256},
        "tiled": tiled, "versions": library_versions(),
    }
    target = output_path(s.out, ".png", stem_of(latent_file.path) + ".png")
    path = save_png(to_uint8(images)[0], target, {"ldm": json.dumps(record, sort_keys=True)})
    result = {"latents": str(latent_file.path), "path": str(path), "size": [images.shape[-1], images.shape[-2]],
              "tiled": tiled, "seconds": round(time.perf_counter() - started, 3)}
    if s.json_output:
        print(json.dumps(result), flush=True)
    else:
        note = "  (tiled VAE)" if tiled else ""
        print(printable(f"{latent_file.path} -> {path}  {result['size'][0]}x{result['size'][1]}{note}"), flush=True)
    return result


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
