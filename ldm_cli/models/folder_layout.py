"""A diffusers model folder: the files it must hold before anything loads, and its scheduler config."""

from __future__ import annotations

import json
from pathlib import Path

from ldm_cli.errors import ModelError
from ldm_cli.models.single_file import SD2_CONTEXT_DIM

TOKENIZER_FILES = ("vocab.json", "tokenizer.json")  # slow BPE files, or the one file transformers 5 saves


def check_folder_layout(folder: Path) -> None:
    """A diffusers folder must have model_index.json and every component's config; SD2 is refused here."""
    if not (folder / "model_index.json").is_file():
        raise ModelError(
            f"--model {folder}: no model_index.json; expected a diffusers folder "
            "(model_index.json + tokenizer/ text_encoder/ vae/ unet/ scheduler/)"
        )
    needed = {
        "tokenizer": TOKENIZER_FILES,
        "text_encoder": ("config.json",),
        "vae": ("config.json",),
        "unet": ("config.json",),
        "scheduler": ("scheduler_config.json",),
    }
    for component, filenames in needed.items():
        if not any((folder / component / name).is_file() for name in filenames):
            raise ModelError(
                f"--model {folder}: component {component}/ is missing {' or '.join(filenames)}; "
                "re-download or re-export the model"
            )
    _refuse_sd2_folder(folder)


def _refuse_sd2_folder(folder: Path) -> None:
    try:
        context = json.loads((folder / "unet" / "config.json").read_text()).get("cross_attention_dim")
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder}/unet/config.json is unreadable ({exc}); re-download the model") from None
    if context == SD2_CONTEXT_DIM:
        raise ModelError(
            f"--model {folder} is a Stable Diffusion 2.x model (1024-wide text encoder and cross-attention); "
            "ldm runs SD1.x models only — use an SD1.x model"
        )


def read_scheduler_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder}/scheduler/scheduler_config.json is unreadable ({exc}); re-download the model") from None
