"""How LoRAs and embeddings are recorded: full paths and SHA-256 in ldm's JSON record, and in the
A1111 line what A1111 writes — `<lora:NAME:W>` in the prompt (appended for --lora, as A1111 appends
its default LoRA), `Lora hashes: "NAME: <12 hex addnet hash>"` and `TI hashes: "NAME: <12 hex>"`."""

from __future__ import annotations

from ldm_cli.files.a1111_hashes import hashes_field, lora_short_hash
from ldm_cli.files.hashing import sha256_file
from ldm_cli.pipeline.prompts.prompt_tags import format_lora_tag


def networks_record(plan, prompt: str, negative_prompt: str) -> dict | None:
    """The `networks` entry of one image's JSON record (None when it used none)."""
    loras = [
        {"path": str(u.path.resolve()), "name": u.name, "scale": u.scale, "source": u.source,
         "sha256": sha256_file(u.path), "a1111_hash": lora_short_hash(u.path)}
        for u in plan.loras_for(prompt)
    ]
    embeddings = [
        {"file": str(e.path.resolve()), "token": e.token, "vectors": e.count, "source": e.source,
         "sha256": sha256_file(e.path), "a1111_hash": sha256_file(e.path)[:12]}
        for e in plan.embeddings_used(prompt, negative_prompt)
    ]
    return {"loras": loras, "embeddings": embeddings} if loras or embeddings else None


def a1111_prompt(prompt: str, networks: dict | None) -> str:
    """The prompt with a tag appended for each --lora, so A1111 and Civitai see which LoRA made it."""
    tags = [format_lora_tag(lora["name"], lora["scale"]) for lora in (networks or {}).get("loras", []) if lora["source"] == "flag"]
    return " ".join([prompt, *tags]) if tags else prompt


def a1111_network_fields(networks: dict | None) -> dict:
    networks = networks or {}
    loras = {lora["name"]: lora["a1111_hash"] for lora in networks.get("loras", [])}
    embeddings = {e["token"]: e["a1111_hash"] for e in networks.get("embeddings", [])}
    return {"Lora hashes": hashes_field(list(loras.items())) or None, "TI hashes": hashes_field(list(embeddings.items())) or None}
