"""The data report: printed before training (and alone with --check), saved beside the output."""

from __future__ import annotations

import json
import sys

from ldm_cli.errors import InputFileError, printable
from ldm_cli.training.data import DataReport, scan
from ldm_cli.training.settings import FinetuneSettings


def bundled_tokenizer():
    """The SD1 CLIP tokenizer (shared by the whole family), to measure captions without a model."""
    import transformers
    from transformers import CLIPTokenizer

    transformers.utils.logging.set_verbosity_error()  # we report long captions ourselves

    from ldm_cli.models.loading import SD15_CONFIG_DIR

    return CLIPTokenizer.from_pretrained(SD15_CONFIG_DIR / "tokenizer")


def scan_data(settings: FinetuneSettings, resolution: int, tokenizer, printer=None) -> DataReport:
    """Scan, print the report, and stop if --strict found anything or nothing is usable."""
    report = scan(settings.data, resolution, settings.buckets, tokenizer, skip=settings.output)
    if printer is not None:
        for line in report.lines():
            printer(printable(line))  # file names and reasons come from the data folder
    if settings.strict and (report.bad or report.warnings):
        raise InputFileError(
            f"--strict: the data report lists {len(report.bad)} bad items and {len(report.warnings)} warnings; "
            "fix them (see the report above) or drop --strict to leave bad items out"
        )
    if not report.items:
        raise InputFileError(
            f"{settings.data}: no usable images; each image needs a caption in name.txt, name.caption or metadata.jsonl"
        )
    return report


def check_data(settings: FinetuneSettings) -> int:
    """`ldm finetune DATA --check`: the report alone, as text on stderr and JSON on stdout."""
    resolution = settings.resolution or native_resolution(settings)
    report = scan_data(settings, resolution, bundled_tokenizer(), printer=lambda line: print(line, file=sys.stderr))
    print(json.dumps(report.to_dict()))
    return 0



def native_resolution(settings: FinetuneSettings) -> int:
    """The model's native size from its configs, read without loading weights (512 if unknown)."""
    from ldm_cli.models.loading import SD15_CONFIG_DIR, resolve_source

    try:
        source = resolve_source(settings.model.model, settings.model.revision)
    except Exception:  # noqa: BLE001 - the real load reports a bad --model properly
        return 512
    folder = source.path if source.kind in ("folder", "bundled") else SD15_CONFIG_DIR
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        return unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return 512
