"""The command that continues an interrupted run, printed so that copy-pasting it just works.

It repeats every setting that differs from its default (the model above all: without --model a
plain re-run would fetch SD1.5), then adds `--resume latest`.
"""

from __future__ import annotations

import shlex
from dataclasses import fields

from ldm_cli.training.settings import FinetuneSettings

# settings field -> flag; booleans that default to True are switched off by a --no- flag
_FLAGS = {"output": "-o", "buckets": "--no-buckets", "ema": "--no-ema", "validation_prompts": "--validation-prompt",
          "loss_type": "--loss"}
_SKIP = {"data", "resume", "check_only", "strict", "model"}
_MODEL_FLAGS = {"model": "--model", "revision": "--revision", "offline": "--offline",
                "allow_pickle": "--allow-pickle", "config": "--config"}


def resume_command(s: FinetuneSettings, model_spec: str, resolution: int, default_prompts: tuple[str, ...] = ()) -> str:
    """`ldm finetune DATA -o OUT --model SPEC --resolution R ... --resume latest` for the settings of this run
    (the model and resolution always, resolved, so that another $LDM_MODEL cannot change what resumes)."""
    command = getattr(s, "command", "ldm finetune").split()  # `ldm distill` shares this
    words = [*command, str(s.data), "-o", str(s.output), "--model", model_spec, "--resolution", str(resolution)]
    defaults = type(s)(data=s.data, output=s.output)
    fixed = getattr(s, "fixed_fields", ())  # set by the command itself, not flags of it
    for f in fields(s):
        if f.name in _SKIP or f.name in fixed or f.name in ("output", "resolution"):
            continue
        value, default = getattr(s, f.name), getattr(defaults, f.name)
        if value == default or (f.name == "validation_prompts" and value == default_prompts):
            continue
        words += _words(_FLAGS.get(f.name, "--" + f.name.replace("_", "-")), value)
    for name, flag in _MODEL_FLAGS.items():
        if name != "model":
            value = getattr(s.model, name)
            if value not in (None, False):
                words += _words(flag, value)
    return shlex.join(words + ["--resume", "latest"])


def _words(flag: str, value) -> list[str]:
    if isinstance(value, bool):
        return [flag]  # True for --flip and friends; False for the --no- flags
    if isinstance(value, tuple):
        return [w for item in value for w in (flag, str(item))]
    return [flag, f"{value:g}" if isinstance(value, float) else str(value)]
