"""What `ldm distill` adds to the finetune trainer: the networks of the LCM objective (lcm.py), and for
`--method full` a student UNet with a guidance (w) embedding, its EMA target and an LCM model folder.

Full distillation (Luo et al. 2023, Algorithm 1; diffusers' train_lcm_distill_sd_wds.py does the same):
    student = the teacher's UNet + time_embedding.cond_proj: w's sinusoidal embedding (dim 256) is
              projected and added to the timestep embedding (`timestep_cond`)
    teacher = the loaded UNet, frozen, without the w embedding (CFG-augmented: c + w (c - u))
    target  = EMA of the student, decay `--ema-decay` (0.95) from the first step: the paper's theta^-
The new projection starts at zero, so at step 0 the student equals the teacher for every w (the
reference script leaves it at its random initialisation, which starts the student off the teacher).
The exported UNet is the target's weights (the EMA, as `ldm finetune --method full` exports).
"""

from __future__ import annotations

import contextlib
import copy

import torch

from ldm_cli.training.ema import EMA
from ldm_cli.training.lcm import LcmObjective, LoraNetworks

W_EMBEDDING_DIM = 256  # the LCM paper's and diffusers' script's default
W_PROJECTION = "time_embedding.cond_proj.weight"


def lcm_student(teacher):
    """A copy of `teacher` with a w embedding; the same outputs as the teacher until it trains."""
    from diffusers import UNet2DConditionModel

    dim = teacher.config.time_cond_proj_dim or W_EMBEDDING_DIM
    student = UNet2DConditionModel.from_config(teacher.config, time_cond_proj_dim=dim)
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {W_PROJECTION}, (missing, unexpected)
    if missing:  # a new projection: zero, so w adds nothing yet
        torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student.to(teacher.device, teacher.dtype)


class FullNetworks:
    """The frozen teacher UNet and the EMA target UNet of a full student."""

    def __init__(self, teacher, target):
        self._teacher, self.target = teacher, target

    def teacher(self):
        return contextlib.nullcontext(self._teacher)


class Distillation:
    """Built once by the trainer, before it decides what trains; for `full` it swaps the student in
    as `components.unet`, so the finetune machinery trains, checkpoints and exports the student."""

    def __init__(self, s, components):
        self.settings, self.teacher_spec = s, components.source.spec
        self.teacher = self.target = None
        if s.method == "full":
            self.teacher = components.unet.requires_grad_(False).eval()
            components.unet = lcm_student(self.teacher)
            self.w_embedding_dim = components.unet.config.time_cond_proj_dim

    @property
    def full(self) -> bool:
        return self.teacher is not None

    def objective(self, scheduler) -> LcmObjective:
        s = self.settings
        return LcmObjective(scheduler.config, scheduler.alphas_cumprod, s.ddim_timesteps, s.w_min, s.w_max,
                            s.loss_type, s.huber_c, self.w_embedding_dim if self.full else None)

    def target_ema(self, student, params: dict) -> EMA | None:
        """The target network as the EMA of `params` (the student's weights, "unet.<name>"): its own
        parameters are the averages, so checkpoints save and resume restores it like finetune's EMA."""
        if not self.full:
            return None  # LCM-LoRA: the target is the student itself
        self.target = copy.deepcopy(student).requires_grad_(False)
        shadow = {f"unet.{name}": p for name, p in self.target.named_parameters()}
        return EMA(params, self.settings.ema_decay, warmup=False, shadow=shadow)

    def networks(self, unet):
        """`unet`: the unwrapped student."""
        return FullNetworks(self.teacher, self.target) if self.full else LoraNetworks(unet)

    def export(self, scheduler_config: dict) -> dict:
        """save_full_model's overrides: an LCMScheduler config (solver steps = original_inference_steps)
        and the LCM pipeline class, so `ldm generate` and diffusers pick the lcm sampler themselves."""
        from diffusers import LCMScheduler

        config = LCMScheduler.from_config(dict(scheduler_config), original_inference_steps=self.settings.ddim_timesteps).config
        config = {k: v for k, v in config.items() if k != "_use_default_values"}
        return {"scheduler_config": config, "pipeline_class": "LatentConsistencyModelPipeline"}

    def record(self) -> dict:
        """What run.json says was distilled."""
        s = self.settings
        record = {"objective": "latent consistency distillation", "teacher": self.teacher_spec,
                  "into": "full UNet" if self.full else "LoRA", "w_range": [s.w_min, s.w_max],
                  "ddim_timesteps": s.ddim_timesteps}
        if self.full:
            record.update(w_embedding_dim=self.w_embedding_dim, target=f"EMA of the student, decay {s.ema_decay:g}",
                          exported="the EMA target's weights", scheduler="LCMScheduler")
        else:
            record.update(target="the student itself (no EMA)")
        return record
