"""Exponential moving average of the trained weights (exported for full fine-tuning and distillation).

The decay warms up as min(decay, (1 + n) / (10 + n)) so short fine-tuning runs are not stuck at the
start; the LCM target network uses its decay from the first step, as the paper does.
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, params: dict[str, torch.Tensor], decay: float, warmup: bool = True,
                 shadow: dict[str, torch.Tensor] | None = None):
        """`shadow`: tensors to average into in place (a target network's own parameters) instead of copies."""
        self.decay, self.warmup = decay, warmup
        if shadow is None:
            shadow = {name: p.detach().clone().float() for name, p in params.items()}
        assert shadow.keys() == params.keys(), "the shadow must hold exactly the trained weights"
        self.shadow = shadow

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, params: dict[str, torch.Tensor], step: int) -> None:
        weight = 1 - self.decay_at(step)
        for name, p in params.items():
            self.shadow[name].lerp_(p.detach().float(), weight)

    @torch.no_grad()
    def copy_to(self, params: dict[str, torch.Tensor]) -> None:
        """Overwrite the live weights with the averaged ones (at the end of training)."""
        for name, p in params.items():
            p.copy_(self.shadow[name].to(p.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} weights, e.g. {sorted(missing)[0]}")
        for name in self.shadow:
            self.shadow[name].copy_(state[name])
