"""A1111 extra-network tags inside prompts: `<lora:NAME:W>`, `<lyco:NAME:W>`, `<hypernet:NAME>`.

A1111 (modules/extra_networks.py) finds every `<(\\w+):([^>]+)>`, removes it from the text that
CLIP sees, and splits the inside on ':' into items; an item `key=value` is named, the others are
positional. For LoRA (extensions-builtin/Lora/extra_networks_lora.py):

    name = positional[0]
    te   = float(positional[1]) if given else 1.0;   te=   overrides it
    unet = float(positional[2]) if given else te;    unet= overrides it
    dyn  = int(positional[3]) if given;              dyn=  overrides it   (ldm does not use it)

This module is pure text: it resolves no files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ldm_cli.errors import UsageError

TAG = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = ("lora", "lyco")  # A1111 1.5+ treats <lyco:...> as an alias of <lora:...>


@dataclass(frozen=True)
class Tag:
    kind: str  # "lora", "lyco", "hypernet", ... as written
    name: str
    weight: float = 1.0  # A1111's text-encoder multiplier (the first number)
    unet_weight: float | None = None  # None: the same as weight
    dyn: int | None = None
    text: str = ""  # the tag exactly as it appears in the prompt

    @property
    def unet_scale(self) -> float:
        return self.weight if self.unet_weight is None else self.unet_weight

    @property
    def is_lora(self) -> bool:
        return self.kind in LORA_KINDS


def extract_network_tags(prompt: str) -> tuple[str, list[Tag]]:
    """(the prompt with every tag removed, the tags in order). Raises UsageError for a bad number."""
    tags: list[Tag] = []

    def found(match: re.Match) -> str:
        tags.append(_parse(match.group(1), match.group(2), match.group(0)))
        return ""

    return TAG.sub(found, prompt), tags


def _parse(kind: str, inside: str, text: str) -> Tag:
    positional, named = [], {}
    for item in inside.split(":"):
        parts = item.split("=", 2)
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(item)
    if not positional:
        raise UsageError(f"{text}: no network name in the tag; write it as <{kind}:NAME:WEIGHT>")
    try:
        weight = float(positional[1]) if len(positional) > 1 else 1.0
        weight = float(named.get("te", weight))
        unet = float(positional[2]) if len(positional) > 2 else None
        unet = float(named["unet"]) if "unet" in named else unet
        dyn = int(positional[3]) if len(positional) > 3 else None
        dyn = int(named["dyn"]) if "dyn" in named else dyn
    except ValueError:
        raise UsageError(f"{text}: the weight must be a number, e.g. <{kind}:{positional[0]}:0.8>") from None
    return Tag(kind, positional[0], weight, unet, dyn, text)


def without_network_tags(prompt: str) -> str:
    """The text CLIP sees."""
    return TAG.sub("", prompt)


def format_lora_tag(name: str, scale: float) -> str:
    """`<lora:NAME:W>` as A1111 writes it into the recorded prompt."""
    return f"<lora:{name}:{scale:g}>"
