"""`ldm encode` and `ldm decode` end to end: settings, VAE loading, files, printed report.

    encode: images -> (size policy) -> VAE posterior -> mean or seeded sample, x scaling_factor
            -> <name>.latent.safetensors (+ --report PSNR/SSIM, --visualize channel picture)
    decode: .latent.safetensors -> check against the model's VAE -> pixels -> <name>.png with provenance
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.pipeline.config import MAX_SEED, ModelSettings
from ldm_cli.errors import GenerationError, InputFileError, ModelError, UsageError, one_line, printable
from ldm_cli.files.image_io import SizePolicy, expand_inputs
from ldm_cli.files.latent_files import SUFFIX, LatentHeader, stem_of


@dataclass(frozen=True)
class EncodeSettings:
    inputs: tuple[Path, ...]
    out: Path | None = None  # folder, or a .latent.safetensors file for one input; None -> ./
    sample: bool = False
    seed: int | None = None
    size: SizePolicy = SizePolicy()
    tile: bool | None = None  # None -> automatic above the size threshold
    report: bool = False
    visualize: bool = False
    json_output: bool = False
    model: ModelSettings = field(default_factory=ModelSettings)


@dataclass(frozen=True)
class DecodeSettings:
    inputs: tuple[Path, ...]
    out: Path | None = None  # folder, or a .png file for one input; None -> ./
    tile: bool | None = None
    json_output: bool = False
    model: ModelSettings = field(default_factory=ModelSettings)
    model_given: bool = False  # --model passed explicitly (else the model recorded in the file)


def validate_encode(s: EncodeSettings) -> list[Path]:
    """Checks that need no model; returns the image files (folders expanded)."""
    if s.seed is not None and not s.sample:
        raise UsageError(f"--seed {s.seed}: the posterior mean is deterministic; add --sample to draw a seeded sample")
    if s.seed is not None and not 0 <= s.seed <= MAX_SEED:
        raise UsageError(f"--seed {s.seed}: must be between 0 and {MAX_SEED}")
    s.size.validate()
    files = _existing(s.inputs, "IMAGE", expand=True)
    _check_out(s.out, SUFFIX, len(files))
    return files


def validate_decode(s: DecodeSettings) -> list[Path]:
    files = _existing(s.inputs, "LATENTS", expand=False)
    _check_out(s.out, ".png", len(files))
    return files


def _existing(inputs, what: str, expand: bool) -> list[Path]:
    if not inputs:
        raise UsageError(f"no {what} given; see the examples in --help")
    missing = [p for p in inputs if not Path(p).exists()]
    if missing:
        raise UsageError(f"{missing[0]}: no such file or folder")
    if expand:
        return expand_inputs(list(inputs))
    folders = [p for p in inputs if Path(p).is_dir()]
    if folders:
        raise UsageError(f"{folders[0]}: is a folder; pass the latent files themselves (e.g. {folders[0]}/*{SUFFIX})")
    return [Path(p) for p in inputs]


def _check_out(out: Path | None, file_suffix: str, count: int) -> None:
    if out is None:
        return
    if out.name.endswith(file_suffix):
        if count > 1:
            raise UsageError(f"-o {out}: one file name for {count} inputs; pass a folder instead")
        folder = out.parent
    elif out.suffix and not out.is_dir():
        raise UsageError(f"-o {out}: use a folder, or a file name ending in {file_suffix}")
    else:
        folder = out
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"-o {out}: {existing} is a file, not a folder; choose another -o")


def _target(out: Path | None, file_suffix: str, name: str) -> Path:
    if out is not None and out.name.endswith(file_suffix):
        return out
    return (out or Path(".")) / name


def say(message: str) -> None:
    print(printable(message), file=sys.stderr, flush=True)


# --- the VAE alone ---------------------------------------------------------------------------


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
    from ldm_cli.models.loading import load_components, locate_hub_snapshot, quiet_library_logs, resolve_source

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
    from ldm_cli.models.loading import SD15_CONFIG_DIR, quiet_library_logs
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
    files = list(choose_weights(where, None, allow_pickle).files)  # pickle files only when allowed
    use_safetensors = all(f.suffix == ".safetensors" for f in files)
    vae = guarded_load("vae", where, lambda: AutoencoderKL.from_pretrained(where, dtype=dtype, use_safetensors=use_safetensors))
    return vae, files


# --- encode ----------------------------------------------------------------------------------


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
    for path in _progress(good, "encoding"):
        result = batch.attempt(path, _encode_one, s, loaded, path, seed)
        if result:
            results.append(result)
    batch.finish()
    return results


class Batch:
    """The bad files of a batch: each named with its reason as found, one summary line at the end (exit 1).

    Only InputFileError is per file; anything else (disk full, interrupt) stops the whole batch."""

    def __init__(self, what: str, done: str, total: int):
        self.what, self.done, self.total = what, done, total
        self.bad: list[tuple[Path, str]] = []

    def attempt(self, path: Path, work, *args):
        try:
            return work(*args)
        except InputFileError as exc:
            if self.total == 1:
                raise
            self.bad.append((path, str(exc)))
            say(f"ldm: error: {printable(one_line(exc))}")
            return None

    def stop_if_nothing_left(self, good: list) -> None:
        if self.bad and not good:
            raise InputFileError(f"none of the {self.total} {self.what} could be used ({self._names()}); nothing written")

    def finish(self) -> None:
        if self.bad:
            written = self.total - len(self.bad)
            raise InputFileError(f"{len(self.bad)} of {self.total} {self.what} were not {self.done} ({self._names()}; "
                                 f"reasons above); the other {written} were")

    def _names(self, limit: int = 5) -> str:
        names = [str(p) for p, _ in self.bad[:limit]]
        more = f" and {len(self.bad) - limit} more" if len(self.bad) > limit else ""
        return ", ".join(names) + more


def _progress(items, desc: str):
    if len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="image", file=sys.stderr, leave=False, dynamic_ncols=True)


def _encode_one(s: EncodeSettings, loaded: LoadedVae, path: Path, seed: int | None) -> dict:
    import torch

    from ldm_cli.pipeline import vae_ops
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
    written = save_latents(encoding.latents, header, _target(s.out, SUFFIX, output_name(path)))
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
    from ldm_cli.pipeline import vae_ops
    from ldm_cli.pipeline.latents import to_uint8
    from ldm_cli.pipeline.quality import psnr, ssim

    images, _ = vae_ops.decode(loaded.vae, latents, tile)
    again = to_uint8(images)[0]
    return {"psnr_db": round(psnr(pixels, again), 4), "ssim": round(ssim(pixels, again), 6)}


def _write_channel_picture(latents, written: Path, header: LatentHeader) -> Path:
    from ldm_cli.files.images import save_png
    from ldm_cli.pipeline.quality import channel_picture

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


# --- decode ----------------------------------------------------------------------------------


def run_decode(s: DecodeSettings, files: list[Path]) -> list[dict]:
    from ldm_cli.files.latent_files import load_latents

    batch = Batch("latent files", "decoded", len(files))
    latent_files = [f for p in files if (f := batch.attempt(p, load_latents, p, s.model.allow_pickle))]  # before the model
    batch.stop_if_nothing_left(latent_files)
    model = _decode_model(s, latent_files)
    loaded = load_vae(model)
    results = []
    for latent_file in _progress(latent_files, "decoding"):
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

    from ldm_cli.models.loading import resolve_source

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

    from ldm_cli.pipeline import vae_ops
    from ldm_cli.files.images import save_png
    from ldm_cli.pipeline.latents import to_uint8
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
    target = _target(s.out, ".png", stem_of(latent_file.path) + ".png")
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
