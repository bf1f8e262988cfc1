"""GET /sdapi/v1/loras, /embeddings and /sd-vae: the files this server can use, in A1111's shapes.

loras:       [{"name": stem, "alias": kohya ss_output_name or stem, "path", "metadata": header metadata}]
embeddings:  {"loaded": {stem: {...}}, "skipped": {stem: {...}}}, each {"step", "sd_checkpoint",
             "sd_checkpoint_name", "shape", "vectors"}; "skipped" are those this model cannot take
             (another width, a pickle without --allow-pickle, an unreadable file)
sd-vae:      the --vae the server loaded ([] when the model's own is used)
"""

from __future__ import annotations

from pathlib import Path

from ldm_cli.models import network_files


def lora_items(dirs) -> list[dict]:
    from ldm_cli.files.a1111_hashes import safetensors_metadata

    items = []
    for stem, path in network_files.index(dirs, network_files.LORA_SUFFIXES).items():
        try:
            metadata = safetensors_metadata(path)
        except Exception:  # noqa: BLE001 - a file we cannot read is still listed, as A1111 lists it
            metadata = {}
        items.append({"name": stem, "alias": metadata.get("ss_output_name") or stem, "path": str(path.resolve()),
                      "metadata": metadata})
    return items


def embedding_items(dirs, allow_pickle: bool, width: int) -> dict:
    from ldm_cli.models.embeddings import read_embedding

    loaded, skipped = {}, {}
    for stem, path in network_files.index(dirs, network_files.EMBEDDING_SUFFIXES).items():
        item = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None, "vectors": 0}
        if path.suffix.lower() != ".safetensors" and not allow_pickle:
            skipped[stem] = item  # a pickle can run code; `ldm serve --allow-pickle` reads it
            continue
        try:
            vectors, _ = read_embedding(path, allow_pickle)
        except Exception:  # noqa: BLE001 - listed as skipped, as A1111 does with a file it cannot use
            skipped[stem] = item
            continue
        item.update(shape=int(vectors.shape[1]), vectors=int(vectors.shape[0]))
        (loaded if item["shape"] == width else skipped)[stem] = item
    return {"loaded": loaded, "skipped": skipped}


def vae_items(vae: str | None) -> list[dict]:
    """A1111's [{"model_name", "filename"}]; ldm loads at most the one --vae."""
    if not vae:
        return []
    return [{"model_name": Path(vae).name, "filename": str(Path(vae).resolve()) if Path(vae).exists() else vae}]
