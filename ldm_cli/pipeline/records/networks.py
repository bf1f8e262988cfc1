"""Which LoRAs and embeddings each prompt uses: `--lora`, `--embedding`, and what prompts name.

  <lora:NAME:W> / <lyco:NAME:W>   resolved by file stem in --lora-dir (or $LDM_LORA_DIR), merged
                                  like --lora NAME.safetensors:W, removed from the text CLIP sees
  a word that is an embedding's   resolved by file stem in --embeddings-dir (or $LDM_EMBEDDINGS_DIR):
  file stem                       only those named in a prompt or the negative prompt are loaded

LoRAs are merged into the weights when the model loads, so prompts of one run that name different
LoRA sets are made in groups, one per set, and the model is loaded afresh for each further set
(exact: no unmerging arithmetic). Names that cannot be found are listed in one warning each kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.errors import UsageError
from ldm_cli.models import network_files
from ldm_cli.models.embeddings import Embedding, expand_prompt, load_embedding, parse_embedding_arg, used_in, word_pattern
from ldm_cli.models.lora import LoraSpec, parse_lora_arg
from ldm_cli.pipeline.prompts.prompt_tags import extract_network_tags, without_network_tags


@dataclass(frozen=True)
class LoraUse:
    path: Path
    scale: float
    name: str  # as the prompt names it (A1111's alias), or the file stem for --lora
    source: str  # "flag" (--lora) or "prompt" (a <lora:...> tag)
    unet_scale: float | None = None  # <lora:NAME:TE:UNET>: the UNet's own weight; None -> scale

    @property
    def spec(self) -> LoraSpec:
        return LoraSpec(self.path, self.scale, self.unet_scale)


@dataclass
class NetworkPlan:
    flag_loras: tuple[LoraUse, ...] = ()
    prompt_loras: dict[str, tuple[LoraUse, ...]] = field(default_factory=dict)
    embeddings: tuple[Embedding, ...] = ()
    warnings: list[str] = field(default_factory=list)

    def loras_for(self, prompt: str) -> tuple[LoraUse, ...]:
        return self.flag_loras + self.prompt_loras.get(prompt, ())

    def clip_text(self, text: str) -> str:
        """What the text encoder is given: tags removed, multi-vector embedding tokens expanded."""
        return expand_prompt(without_network_tags(text), list(self.embeddings))

    def embeddings_used(self, *texts: str) -> list[Embedding]:
        return used_in(list(self.embeddings), *(without_network_tags(t) for t in texts))

    def groups(self, jobs: list) -> list[tuple[tuple[LoraUse, ...], list]]:
        """Jobs (anything with a .prompt, e.g. batch.Job) grouped by the LoRA set they need, in order of
        first appearance."""
        grouped: dict[tuple, tuple[tuple[LoraUse, ...], list]] = {}
        for job in jobs:
            loras = self.loras_for(job.prompt)
            key = tuple((str(u.path), u.scale, u.unet_scale) for u in loras)
            grouped.setdefault(key, (loras, []))[1].append(job)
        return list(grouped.values())


def check_prompt_tags(prompts, negative_prompt: str) -> None:
    """Bad tag syntax is a usage error, found before anything loads."""
    for text in (*prompts, negative_prompt or ""):
        extract_network_tags(text)


def plan_networks(settings) -> NetworkPlan:
    """Resolve every LoRA and embedding the run uses (file lookups and small reads; no model)."""
    plan = NetworkPlan(flag_loras=tuple(_flag_lora(v) for v in settings.loras))
    lora_dirs = network_files.folders("--lora-dir", getattr(settings, "lora_dirs", ()), network_files.LORA_DIR_ENV)
    lora_files = network_files.index(lora_dirs, network_files.LORA_SUFFIXES)
    # --from an ldm image: its tags first find the files they found then, where those still exist
    lora_files.update({name: Path(path) for name, path in getattr(settings, "recorded_tag_loras", ())})
    missing, foreign = [], []
    for prompt in dict.fromkeys(settings.prompts):
        plan.prompt_loras[prompt] = _tag_loras(prompt, lora_files, missing, foreign, plan.warnings)
    negative = [t.text for t in extract_network_tags(settings.negative_prompt or "")[1]]
    plan.warnings += _unresolved(missing, foreign, negative, lora_dirs)
    plan.embeddings = _embeddings(settings)
    return plan


def _tag_loras(prompt: str, lora_files: dict, missing: list, foreign: list, warnings: list) -> tuple[LoraUse, ...]:
    """The LoRAs a prompt's tags name, found in `lora_files`; the rest go to `missing` / `foreign`."""
    uses = []
    for tag in extract_network_tags(prompt)[1]:
        if not tag.is_lora:
            foreign.append(tag.text)
            continue
        path = network_files.lookup(tag.name, lora_files)
        if path is None:
            missing.append(tag.name)
            continue
        if tag.dyn is not None:
            warnings.append(f"warning: {tag.text}: dyn (rank cut-off) is not supported; the full rank is used")
        unet = tag.unet_weight if tag.unet_weight is not None and tag.unet_weight != tag.weight else None
        uses.append(LoraUse(path, tag.weight, tag.name, "prompt", unet))
    return tuple(uses)


def _unresolved(missing: list, foreign: list, negative: list, lora_dirs) -> list[str]:
    """One warning line per kind of tag that is removed without being applied."""
    lines = []
    if missing:
        where = ", ".join(map(str, lora_dirs)) if lora_dirs else f"no --lora-dir given and ${network_files.LORA_DIR_ENV} names no folder"
        lines.append(f"warning: LoRAs named in the prompt were not found ({where}): {', '.join(dict.fromkeys(missing))}; "
                     "they are left out (pass --lora-dir DIR, the folder of NAME.safetensors)")
    if foreign:
        lines.append(f"warning: ldm applies only <lora:...> and <lyco:...> tags; removed from the prompt and not "
                     f"applied: {' '.join(dict.fromkeys(foreign))}")
    if negative:
        lines.append(f"warning: network tags in the negative prompt are removed and not applied (as in A1111): {' '.join(negative)}")
    return lines


def _flag_lora(value: str) -> LoraUse:
    spec = parse_lora_arg(value)
    return LoraUse(spec.path, spec.scale, spec.path.stem, "flag")


def _embeddings(settings) -> tuple[Embedding, ...]:
    allow_pickle = settings.model.allow_pickle
    chosen = [load_embedding(*parse_embedding_arg(v, allow_pickle), allow_pickle) for v in getattr(settings, "embeddings", ())]
    dirs = network_files.folders("--embeddings-dir", getattr(settings, "embeddings_dirs", ()), network_files.EMBEDDINGS_DIR_ENV)
    if not dirs:
        return tuple(chosen)
    texts = [without_network_tags(t) for t in (*settings.prompts, settings.negative_prompt or "")]
    taken = {e.token.lower() for e in chosen} | {e.path.resolve() for e in chosen}
    for stem, path in network_files.index(dirs, network_files.EMBEDDING_SUFFIXES).items():
        if stem.lower() in taken or path.resolve() in taken or not any(word_pattern(stem).search(t) for t in texts):
            continue
        if path.suffix.lower() != ".safetensors" and not allow_pickle:
            raise UsageError(f"--embeddings-dir: {path} is named in the prompt but is a pickle file, which can run code "
                             "when loaded; convert it to .safetensors or pass --allow-pickle if you trust the source")
        chosen.append(load_embedding(path, stem, allow_pickle, source="dir"))
        taken.add(stem.lower())
    return tuple(chosen)
