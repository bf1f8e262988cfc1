"""`ldm distill` settings: finetune's, plus latent consistency distillation's own (w range, solver, loss)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ldm_cli.errors import UsageError
from ldm_cli.training.settings import FinetuneSettings, validate_finetune


@dataclass(frozen=True)
class DistillSettings(FinetuneSettings):
    w_min: float = 3.0  # guidance w of the CFG-augmented teacher, sampled in [w_min, w_max]; CFG scale is w + 1
    w_max: float = 15.0
    ddim_timesteps: int = 50  # solver steps N (the LCM sampler's original_inference_steps)
    loss_type: str = "huber"
    huber_c: float = 0.001
    ema_decay: float = 0.95  # --method full: the EMA target network's decay (the LCM paper's mu)

    command = "ldm distill"
    fixed_fields = ("caption_dropout", "validation_prompts")  # not options of `ldm distill`

    def distillation(self, components):
        """The trainer's hook: the objective's networks (and for `full`, the student swapped in)."""
        from ldm_cli.training.distillation import Distillation

        return Distillation(self, components)

    @property
    def lora_metadata(self) -> dict[str, str]:
        return {"ldm.distill": "lcm", "ldm.lcm_w_range": f"{self.w_min:g}-{self.w_max:g}",
                "ldm.lcm_ddim_timesteps": str(self.ddim_timesteps), "ldm.sampler": "lcm"}


def validate_distill(s: DistillSettings) -> None:
    from ldm_cli.training.lcm import LOSS_TYPES

    for flag, value in (("--w-min", s.w_min), ("--w-max", s.w_max)):
        if not (math.isfinite(value) and 0 <= value <= 50):
            raise UsageError(f"{flag} {value}: must be between 0 and 50 (the CFG scale is w + 1, e.g. 6.5 for 7.5)")
    if s.w_min > s.w_max:
        raise UsageError(f"--w-min {s.w_min} is above --w-max {s.w_max}; give w-min <= w-max")
    if not 2 <= s.ddim_timesteps <= 1000:
        raise UsageError(f"--ddim-timesteps {s.ddim_timesteps}: must be between 2 and 1000 (50 is typical)")
    if s.loss_type not in LOSS_TYPES:
        raise UsageError(f"--loss {s.loss_type!r}: choose one of {', '.join(LOSS_TYPES)}")
    if not 0 < s.ema_decay < 1:
        raise UsageError(f"--ema-decay {s.ema_decay}: must be between 0 and 1 (0.95 is the LCM paper's)")
    if not (math.isfinite(s.huber_c) and s.huber_c > 0):
        raise UsageError(f"--huber-c {s.huber_c}: must be a finite number > 0 (0.001 is typical)")
    validate_finetune(s)
