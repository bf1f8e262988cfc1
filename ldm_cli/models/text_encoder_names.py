"""The CLIP text encoder's canonical key names, whatever the installed transformers calls its modules.

Every real file (SD checkpoints, diffusers folders, kohya/peft LoRAs) names the text encoder's tensors
`text_model.encoder.layers.N…`, as transformers 4 does. transformers 5 flattened CLIPTextModel, so its
modules and `save_pretrained` keys lack the `text_model.` prefix; transformers 4 would load such a file
with random weights and only a warning. So: read both spellings, write the canonical one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PREFIX = "text_model."
_OUTSIDE = ("text_projection.",)  # CLIPTextModelWithProjection keeps this beside text_model


def canonical_key(key: str) -> str:
    """'encoder.layers.0.mlp.fc1.weight' -> 'text_model.encoder.layers.0.mlp.fc1.weight' (idempotent)."""
    if key.startswith(PREFIX) or key.startswith(_OUTSIDE) or not key:
        return key
    return PREFIX + key


def module_names(text_encoder) -> dict[str, str]:
    """{canonical module name: in-memory module name} for every module of the loaded text encoder."""
    flattened = not hasattr(text_encoder, "text_model")
    return {(canonical_key(name) if flattened else name): name for name, _ in text_encoder.named_modules() if name}


def save_text_encoder(text_encoder, folder: Path) -> Path:
    """`save_pretrained`, then rename the weights to the canonical `text_model.` keys (same tensors)."""
    folder = Path(folder)
    text_encoder.save_pretrained(folder)
    canonicalise_weights(folder)
    return folder


def canonicalise_weights(folder: Path) -> None:
    """Rewrite a text_encoder folder's safetensors files (single or sharded) with canonical keys."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = sorted(folder.glob("*.safetensors"))
    for path in files:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {"format": "pt"}
            tensors = {canonical_key(k): handle.get_tensor(k) for k in handle.keys()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, path.stat().st_mode & 0o777)  # keep the mode the file had (safetensors writes 0600)
        os.replace(tmp, path)
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {canonical_key(k): v for k, v in data.get("weight_map", {}).items()}
        index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
