"""What each PNG records about how it was made: the A1111 line and our full JSON record."""

from __future__ import annotations

import json

from ldm_cli import __version__
from ldm_cli.files.hashing import sha256_files
from ldm_cli.files.metadata import A1111_KEY, FORMAT_VERSION, JSON_KEY, a1111_parameters, library_versions
from ldm_cli.models.loading import Components
from ldm_cli.pipeline.network_record import a1111_network_fields, a1111_prompt
from ldm_cli.pipeline.schedulers import spec_for


def component_hashes(components: Components) -> dict[str, str]:
    return {name: sha256_files(files) for name, files in components.weight_files.items() if files}


def png_text(record: dict) -> dict[str, str]:
    """The two PNG text chunks for one image."""
    s = record["settings"]
    hashes = record["model"]["hashes"]
    model_hash = hashes.get("checkpoint") or hashes.get("unet") or ""
    fields = {
        "Steps": s["steps"],
        "Sampler": spec_for(s["scheduler"]).a1111_name,
        "CFG scale": s["guidance"],
        "Seed": record["seed"],
        "Size": f"{s['width']}x{s['height']}",
        "Model hash": model_hash[:10],
        "Model": record["model"]["name"],
        "Denoising strength": (record.get("img2img") or {}).get("strength"),
        **a1111_network_fields(record.get("networks")),
        "Version": f"ldm {__version__}",
    }
    return {
        A1111_KEY: a1111_parameters(a1111_prompt(record["prompt"], record.get("networks")), s["negative_prompt"], fields),
        JSON_KEY: json.dumps(record, sort_keys=True),
    }


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
        },
        "device": device,
        "dtype": dtype,
        "versions": library_versions(),
        "timings": timings,
        **(extra or {}),
    }
