"""What each PNG records about how it was made: the A1111 line and our full JSON record."""

from __future__ import annotations

import json

from ldm_cli import __version__
from ldm_cli.files.hashing import sha256_files
from ldm_cli.files.metadata import A1111_KEY, FORMAT_VERSION, JSON_KEY, a1111_parameters, library_versions
from ldm_cli.models.loading import Components
from ldm_cli.pipeline.starts.inpaint_settings import inpaint_fields
from ldm_cli.pipeline.records.network_record import a1111_network_fields, a1111_prompt
from ldm_cli.pipeline.records.recipe import infotext_fields
from ldm_cli.pipeline.loop.schedule_types import a1111_fields


def component_hashes(components: Components) -> dict[str, str]:
    return {name: sha256_files(files) for name, files in components.weight_files.items() if files}


def png_text(record: dict) -> dict[str, str]:
    """The two PNG text chunks for one image."""
    s = record["settings"]
    hashes = record["model"]["hashes"]
    model_hash = hashes.get("checkpoint") or hashes.get("unet") or ""
    recipe = infotext_fields(s, record["prompt"], s["negative_prompt"])  # Schedule type, Clip skip, Hires ...
    fields = {
        "Steps": s["steps"],
        "Sampler": a1111_fields(s["scheduler"], s.get("schedule_type"))[0],
        "Schedule type": recipe.pop("Schedule type"),
        "CFG scale": s["guidance"],
        "Seed": record["seed"],
        "Size": f"{s['width']}x{s['height']}",
        "Model hash": model_hash[:10],
        "Model": record["model"]["name"],
        **_vae_fields(record["model"].get("vae")),
        "Denoising strength": (record.get("img2img") or {}).get("strength"),
        **inpaint_fields(record.get("inpaint")),
        **recipe,
        **a1111_network_fields(record.get("networks")),
        "Version": f"ldm {__version__}",
    }
    return {
        A1111_KEY: a1111_parameters(a1111_prompt(record["prompt"], record.get("networks")), s["negative_prompt"], fields),
        JSON_KEY: json.dumps(record, sort_keys=True),
    }


def _vae_fields(vae: dict | None) -> dict:
    """A1111 writes these two only when a separate VAE file replaced the checkpoint's own."""
    if not vae:
        return {}
    return {"VAE hash": (vae.get("hash") or "")[:10], "VAE": vae["name"]}


def build_record(*, prompt: str, seed: int, settings: dict, components: Components, hashes: dict,
                 device: str, dtype: str, timings: dict, extra: dict | None = None) -> dict:
    source = components.source
    return {
        "format": FORMAT_VERSION,
        "tool": "ldm",
        "prompt": prompt,
        "seed": seed,
        "settings": settings,
        "model": {
            "spec": source.spec,
            "name": source.display_name,
            "kind": source.kind,
            "revision": source.revision,
            "hashes": hashes,
            **({"vae": _vae_record(components, hashes)} if components.vae_source is not None else {}),
            **({"variant": components.variant} if components.variant else {}),
            **({"ema": True} if components.ema else {}),
        },
        "device": device,
        "dtype": dtype,
        "versions": library_versions(),
        "timings": timings,
        **(extra or {}),
    }


def _vae_record(components: Components, hashes: dict) -> dict:
    source = components.vae_source
    return {"spec": source.spec, "name": source.display_name, "kind": source.kind, "hash": hashes.get("vae")}
