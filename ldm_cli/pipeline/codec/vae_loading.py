"""The VAE of --model alone, for `ldm encode` and `ldm decode`: no text encoder or UNet is loaded
(except from a single-file checkpoint, whose VAE can only be had by loading it whole)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ldm_cli.pipeline.config import ModelSettings
from ldm_cli.errors import ModelError
from ldm_cli.pipeline.codec.file_batch import say


@dataclass
class LoadedVae:
    vae: object
    spec: str
    sha256: str
    device: str
    dtype: object


def load_vae(m: ModelSettings) -> LoadedVae:
    """Load only the VAE of --model (a diffusers folder's vae/, a bare VAE folder, a checkpoint, a Hub id)."""
    from ldm_cli.models.devices import resolve_device, resolve_dtype
    from ldm_cli.files.hashing import sha256_files
    from ldm_cli.models.loading import load_components, quiet_library_logs
    from ldm_cli.models.sources import locate_hub_snapshot, resolve_source

    if m.vae:
        return _load_vae_override(m, resolve_device(m.device), resolve_dtype(m.dtype, resolve_device(m.device)))
    source = resolve_source(m.model, m.revision)
    device = resolve_device(m.device)
    dtype = resolve_dtype(m.dtype, device)
    say(f"loading the VAE of {source.spec} on {device}")
    quiet_library_logs()
    if source.kind == "hub":
        source = locate_hub_snapshot(source, m.offline, m.allow_pickle)
    if source.kind == "single-file":  # the VAE lives inside the checkpoint: load it whole, keep the VAE
        components = load_components(source, device, dtype, allow_pickle=m.allow_pickle, single_file_config=m.config)
        return LoadedVae(components.vae, source.spec, sha256_files(components.weight_files["checkpoint"]), device, dtype)
    vae, files = _load_vae_folder(source.path, dtype, m.allow_pickle)
    vae.to(device).eval().requires_grad_(False)
    return LoadedVae(vae, source.spec, sha256_files(files), device, dtype)


def _load_vae_override(m: ModelSettings, device: str, dtype) -> LoadedVae:
    """--vae: a VAE folder, file or Hub id; a single file takes --model's VAE config (else SD1.5's)."""
    from ldm_cli.files.hashing import sha256_files
    from ldm_cli.models.loading import quiet_library_logs
    from ldm_cli.models.sources import SD15_CONFIG_DIR
    from ldm_cli.models.vae_override import load_vae_override, resolve_vae_source

    source = resolve_vae_source(m.vae)
    local = Path(m.model).expanduser() if m.model else None
    config_root = local if local is not None and (local / "vae" / "config.json").is_file() else SD15_CONFIG_DIR
    say(f"loading the VAE {source.spec} on {device}")
    quiet_library_logs()
    vae, files = load_vae_override(source, dtype, config_root=config_root, offline=m.offline, allow_pickle=m.allow_pickle)
    vae.to(device).eval().requires_grad_(False)
    return LoadedVae(vae, source.spec, sha256_files(files), device, dtype)


def _load_vae_folder(folder: Path, dtype, allow_pickle: bool):
    from diffusers import AutoencoderKL

    from ldm_cli.models.load_errors import guarded_load
    from ldm_cli.models.variants import choose_weights

    where = folder / "vae" if (folder / "vae" / "config.json").is_file() else folder
    if not (where / "config.json").is_file():
        raise ModelError(f"--model {folder}: no vae/config.json (nor a bare VAE's config.json); pass a diffusers model folder")
    files = list(choose_weights(where, None, allow_pickle).files)  # pickle files only when the user allowed them
    use_safetensors = all(f.suffix == ".safetensors" for f in files)
    vae = guarded_load("vae", where, lambda: AutoencoderKL.from_pretrained(where, dtype=dtype, use_safetensors=use_safetensors))
    return vae, files
