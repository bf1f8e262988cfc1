"""`ldm inspect`: say what a file or folder is, its hashes, and whether and how ldm can use it.

Only headers are read (safetensors' JSON header, a few scalar alphas, a PNG's text chunks, a
folder's configs); pickle files are opened with torch's weights-only unpickler, which runs no code.
"""

from __future__ import annotations

import json
from pathlib import Path

from ldm_cli.errors import InputFileError
from ldm_cli.files import a1111_hashes
from ldm_cli.files.hashing import sha256_file, sha256_files
from ldm_cli.models import key_kinds

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def inspect_path(path: Path) -> dict:
    """A report: {'path', 'what', 'family', 'details', 'hashes', 'usable', 'use'}."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file or folder")
    if path.is_dir():
        return _folder(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _image(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return _pickle(path)
    header = read_safetensors_header(path)
    if header is None:
        raise InputFileError(f"{path}: {_sniff(path)}, not a checkpoint, VAE, LoRA, embedding, latent file or image ldm knows")
    shapes, metadata = header
    return _classify(path, shapes, metadata, {"sha256": sha256_file(path)})


def read_safetensors_header(path: Path) -> tuple[dict[str, list[int]], dict] | None:
    """({tensor name: shape}, __metadata__) from the JSON header; None if the file is no safetensors.
    A header that promises more bytes than the file has is reported as truncated."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return None
        length = int.from_bytes(head, "little")
        if not 2 <= length <= min(size - 8, 100 << 20):
            return None
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    if not isinstance(header, dict):
        return None
    metadata = header.pop("__metadata__", None) or {}
    end = max((t.get("data_offsets", [0, 0])[1] for t in header.values() if isinstance(t, dict)), default=0)
    if 8 + length + end > size:
        raise InputFileError(f"{path}: a truncated .safetensors file (its header describes {8 + length + end} bytes, "
                             f"the file has {size}); download it again")
    return {k: list(v.get("shape", [])) for k, v in header.items() if isinstance(v, dict)}, metadata


def _classify(path: Path, shapes: dict, metadata: dict, hashes: dict) -> dict:
    keys = list(shapes)
    if metadata.get("format") == "ldm-latents":
        shape = shapes.get("latents")
        return _report(path, "an ldm latent file", None, {"shape": shape, "model": metadata.get("model"),
                       "latent_kind": metadata.get("latent_kind"), "scaling_factor": metadata.get("scaling_factor")},
                       hashes, True, f"ldm decode {path}, or ldm generate --init-latents {path}")
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return _checkpoint(path, shapes, hashes)
    if key_kinds.is_vae(keys):
        hashes["a1111_vae_hash"] = hashes["sha256"][:10]
        return _report(path, "a VAE", None, {"names": "LDM" if "encoder.down.0.block.0.conv1.weight" in {
            k.removeprefix("first_stage_model.") for k in keys} else "diffusers"}, hashes, True, f"--vae {path}")
    lora = key_kinds.lora_facts(shapes, _alphas(path, keys), metadata)
    if lora is not None:
        hashes["a1111_lora_hash"] = a1111_hashes.lora_short_hash(path)
        usable = lora["family"] not in ("SD2.x", "SDXL")
        use = (f"--lora {path}:0.8, or <lora:{path.stem}:0.8> in a prompt with --lora-dir {path.parent}" if usable
               else f"refused: a LoRA for {lora['family']}; ldm runs SD1.x models")
        return _report(path, lora.pop("kind"), lora.pop("family"), lora, hashes, usable, use)
    embedding = key_kinds.embedding_facts(shapes)
    if embedding is not None:
        hashes["a1111_ti_hash"] = hashes["sha256"][:12]
        usable = embedding["family"] not in ("SD2.x", "SDXL")
        token = embedding.pop("token") or path.stem
        use = (f"--embedding {path} (prompts then say {token!r}), or name {path.stem!r} in a prompt with --embeddings-dir "
               f"{path.parent}" if usable else f"refused: an embedding for {embedding['family']}; ldm runs SD1.x models")
        return _report(path, "a textual-inversion embedding", embedding.pop("family"), {**embedding, "token": token},
                       hashes, usable, use)
    component = key_kinds.component_kind(keys)
    if component:
        return _report(path, component, None, {"tensors": len(keys)}, hashes, False,
                       "use the diffusers folder that holds it (with model_index.json) as --model")
    return _report(path, "a .safetensors file of no kind ldm knows", None,
                   {"tensors": len(keys), "example_keys": keys[:3]}, hashes, False,
                   "refused: not a checkpoint, VAE, LoRA or embedding")


def _checkpoint(path: Path, shapes: dict, hashes: dict) -> dict:
    facts = key_kinds.checkpoint_facts(shapes)
    hashes["a1111_model_hash"] = hashes["sha256"][:10]
    try:
        hashes["a1111_old_model_hash"] = a1111_hashes.old_model_hash(path)
    except OSError:
        pass
    family, variant = facts["family"], facts["variant"]
    if not family.startswith("SD1"):
        use = f"refused: {family} is not supported (ldm runs SD1.x)"
    elif variant == "inpainting":
        use = f"--model {path} with --mask (an inpainting UNet: 9 input channels)"
    elif variant != "text-to-image":
        use = f"refused: a {variant} checkpoint ({facts['unet_in_channels']} UNet input channels)"
    else:
        use = f"--model {path}" + ("" if facts["has_vae"] else " --vae VAE (it holds no VAE weights)")
    what = f"a single-file {variant} checkpoint" if variant != "text-to-image" else "a single-file checkpoint"
    return _report(path, what, family, facts, hashes, use.startswith("--model"), use)


def _folder(path: Path) -> dict:
    if (path / "model_index.json").is_file():
        config = _json(path / "unet" / "config.json")
        context = config.get("cross_attention_dim")
        family = "SDXL" if (path / "text_encoder_2").is_dir() or config.get("addition_embed_type") == "text_time" \
            else key_kinds.context_family(context)
        variant = {9: "inpainting", 8: "instruct-pix2pix"}.get(config.get("in_channels"), "text-to-image")
        files = [f for c in ("unet", "text_encoder", "vae") for f in sorted((path / c).glob("*.safetensors"))]
        hashes = {"unet_sha256": sha256_files(sorted(p for p in (path / "unet").glob("*.safetensors") if "non_ema" not in p.name))} \
            if any((path / "unet").glob("*.safetensors")) else {}
        index = _json(path / "model_index.json")
        details = {"pipeline": index.get("_class_name"), "scheduler": _json(path / "scheduler" / "scheduler_config.json").get("_class_name"),
                   "unet_in_channels": config.get("in_channels"), "weight_files": len(files)}
        usable = family.startswith("SD1") and variant in ("text-to-image", "inpainting")
        use = (f"--model {path}" + (" with --mask (inpainting)" if variant == "inpainting" else "")) if usable \
            else f"refused: {family if family != 'SD1.x' else variant} is not supported (ldm runs SD1.x)"
        return _report(path, f"a diffusers model folder ({variant})", family, details, hashes, usable, use)
    config = _json(path / "config.json")
    if config.get("_class_name") == "AutoencoderKL":
        return _report(path, "a diffusers VAE folder", None, {"latent_channels": config.get("latent_channels")}, {}, True, f"--vae {path}")
    if (path / "learned_embeds.safetensors").is_file():
        return inspect_path(path / "learned_embeds.safetensors")
    kind = config.get("_class_name") or config.get("architectures")
    return _report(path, f"a folder ({kind or 'no model_index.json or config.json'})", use=
                   "refused: not a diffusers model folder (model_index.json + tokenizer/ text_encoder/ vae/ unet/ scheduler/)")


def _image(path: Path) -> dict:
    from ldm_cli.files.metadata import read_png_metadata

    try:
        chunks = read_png_metadata(path)
    except InputFileError as exc:
        return _report(path, "an image ldm cannot read", use=f"refused: {exc}")
    source = "ldm" if chunks["ldm"] else "Fooocus" if chunks.get("fooocus") else "A1111" if chunks["parameters"] else None
    what = f"an image with {source} generation metadata" if source else "an image without generation metadata"
    use = f"ldm info {path}; ldm generate --from {path}" if source else f"ldm encode {path}, or --init-image {path}"
    return _report(path, what, None, {}, {"sha256": sha256_file(path)}, True, use)


def _pickle(path: Path) -> dict:
    import torch

    hashes = {"sha256": sha256_file(path)}
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the safe unpickler refuses anything but tensors and containers
        return _report(path, "a pickle file the safe (weights-only) unpickler refuses", None,
                       {"reason": " ".join(str(exc).split())[:160]}, hashes, False,
                       "refused unless you trust it: pickle can run code when loaded (--allow-pickle)")
    state = data.get("state_dict", data) if isinstance(data, dict) else {}
    if "string_to_param" in state:
        state = {f"string_to_param.{k}": v for k, v in dict(state["string_to_param"]).items()}
    shapes = {k: list(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    report = _classify(path, shapes, {}, hashes) if shapes else _report(path, "a pickle file with no tensors", hashes=hashes)
    if report["usable"]:
        report["use"] += " --allow-pickle (a pickle file: only if you trust its source)"
    return report


def _alphas(path: Path, keys: list[str]) -> dict[str, float]:
    names = [k for k in keys if k.endswith(".alpha")]
    if not names:
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {k: float(handle.get_tensor(k)) for k in names[:2000]}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _sniff(path: Path) -> str:
    head = path.read_bytes()[:8] if path.stat().st_size else b""
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "a ZIP archive (a PyTorch pickle checkpoint with another extension?)"
    if head.startswith(b"GGUF"):
        return "a GGUF file (stable-diffusion.cpp / llama.cpp weights)"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return "unrecognised content"


def _report(path: Path, what: str, family: str | None = None, details: dict | None = None,
            hashes: dict | None = None, usable: bool = False, use: str = "") -> dict:
    return {"path": str(path), "what": what, "family": family, "details": details or {}, "hashes": hashes or {},
            "usable": usable, "use": use}


HASH_LABELS = {
    "sha256": "SHA-256", "unet_sha256": "UNet SHA-256", "a1111_model_hash": "A1111 Model hash",
    "a1111_old_model_hash": "A1111 old model hash", "a1111_vae_hash": "A1111 VAE hash",
    "a1111_lora_hash": "A1111 Lora hash", "a1111_ti_hash": "A1111 TI hash",
}


def render(report: dict) -> str:
    """The report as a few lines of text."""
    family = f", {report['family']}" if report["family"] else ""
    lines = [f"{report['path']}: {report['what']}{family}"]
    for key, value in report["details"].items():
        if value not in (None, "", [], {}):
            lines.append(f"  {key.replace('_', ' ')}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    for key, value in report["hashes"].items():
        lines.append(f"  {HASH_LABELS.get(key, key)}: {value}")
    lines.append(f"  use: {report['use']}" if report["usable"] else f"  {report['use']}")
    return "\n".join(lines)
