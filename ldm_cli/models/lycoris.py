"""The weight updates of the LoRA family, as the LyCORIS project merges them (lycoris/modules/*.py).

With s = alpha / rank (s = 1 when the file has no alpha):
  LoRA / LoCon:   dW = s * up @ down                          (conv: down [r, in, kh, kw], up [out, r, 1, 1])
  Tucker (mid):   dW = s * einsum("i j k l, i p, j r -> p r k l", mid, up^T, down)
  LoHa:           dW = s * (w1a @ w1b) * (w2a @ w2b)           (Hadamard product; rank = w1b.shape[0])
  LoHa + Tucker:  dW = s * einsum("i j …, j r, i p -> p r …", t1, w1b, w1a) * (same with t2, w2b, w2a)
  LoKr:           dW = s * kron(w1, w2), w1 = w1a @ w1b if factored, w2 = w2a @ w2b or Tucker(t2, w2a, w2b);
                  rank = w1b.shape[0] or w2b.shape[0]; both factors full: s = 1 (LyCORIS ignores alpha)
  full:           dW = diff
  DoRA:           W' = m * (W + dW) / ||W + dW||, the norm over the axis m spans (m [out, 1, …]: each output
                  row, LyCORIS' default and peft's; m [1, in, …]: each input column)
"""

from __future__ import annotations

import torch


def rank_and_scale(algo: str, tensors: dict, alpha: float | None) -> tuple[int | None, float]:
    """The rank the file was trained at and alpha / rank (no alpha stored: alpha = rank, as every loader does)."""
    if algo == "full":
        return None, 1.0
    if algo == "lora":
        rank = tensors["down"].shape[0]
    elif algo == "loha":
        rank = tensors["w1b"].shape[0]
    else:  # lokr: the rank of whichever factor is decomposed; none is -> scale 1
        factored = tensors.get("w1b", tensors.get("w2b"))
        if factored is None:
            return None, 1.0
        rank = factored.shape[0]
    if alpha is None:
        return rank, 1.0
    return rank, alpha / rank


def delta_weight(algo: str, tensors: dict, alpha: float | None, shape: torch.Size) -> torch.Tensor:
    """dW for a module whose weight has `shape`, in float32 (scaled by alpha / rank, not by the user)."""
    t = {k: v.float() for k, v in tensors.items() if k != "dora"}
    _, scale = rank_and_scale(algo, tensors, alpha)
    if algo == "lora":
        delta = _lora(t)
    elif algo == "loha":
        delta = _loha(t)
    elif algo == "lokr":
        delta = _lokr(t, shape)
    else:
        delta = t["diff"]
    if delta.numel() != shape.numel():
        raise ValueError(f"update shape {tuple(delta.shape)} does not fit weight {tuple(shape)}")
    return (delta * scale).reshape(shape)


def _lora(t: dict) -> torch.Tensor:
    up, down = t["up"], t["down"]
    if "mid" in t:  # Tucker: down [r, in, 1, 1], mid [r, r, kh, kw], up [out, r, 1, 1]
        return rebuild_tucker(t["mid"], up.flatten(1).T, down.flatten(1))
    delta = up.flatten(1) @ down.flatten(1)  # [out, in * kh * kw]
    return delta.reshape(up.shape[0], *down.shape[1:]) if down.dim() > 2 else delta


def _loha(t: dict) -> torch.Tensor:
    if "t1" in t and "t2" in t:  # w*_a [r, out], w*_b [r, in], t* [r, r, kh, kw]
        first = torch.einsum("i j ..., j r, i p -> p r ...", t["t1"], t["w1b"], t["w1a"])
        second = torch.einsum("i j ..., j r, i p -> p r ...", t["t2"], t["w2b"], t["w2a"])
        return first * second
    return (t["w1a"] @ t["w1b"].flatten(1)) * (t["w2a"] @ t["w2b"].flatten(1))


def _lokr(t: dict, shape: torch.Size) -> torch.Tensor:
    w1 = t["w1"] if "w1" in t else t["w1a"] @ t["w1b"]
    if "w2" in t:
        w2 = t["w2"]
    elif "t2" in t:  # w2a [r, out_k], w2b [r, in_n], t2 [r, r, kh, kw]
        w2 = rebuild_tucker(t["t2"], t["w2a"], t["w2b"])
    else:
        w2 = t["w2a"] @ t["w2b"].flatten(1)
    if len(shape) > 2 and w2.dim() == 2:  # conv: [out_k, in_n * kh * kw] -> [out_k, in_n, kh, kw]
        w2 = w2.reshape(w2.shape[0], shape[1] // w1.shape[1], *shape[2:])
    while w1.dim() < w2.dim():
        w1 = w1.unsqueeze(-1)
    return torch.kron(w1, w2.contiguous())


def rebuild_tucker(core: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """LyCORIS' rebuild_tucker: core [i, j, …], wa [i, p], wb [j, r] -> [p, r, …]."""
    return torch.einsum("i j ..., i p, j r -> p r ...", core, wa, wb)


def decompose(weight: torch.Tensor, delta: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """DoRA: the merged weight m * (W + dW) / ||W + dW||, the norm over the axis `magnitude` spans."""
    merged = weight.float() + delta
    magnitude = magnitude.float()
    if magnitude.dim() >= 2 and magnitude.shape[0] == 1 and merged.shape[0] != 1:  # [1, in, 1, …]: per input
        norm = merged.transpose(0, 1).reshape(merged.shape[1], -1).norm(dim=1)
        norm = norm.reshape(1, -1, *[1] * (merged.dim() - 2))
    else:  # [out], [out, 1, …]: per output row
        norm = merged.reshape(merged.shape[0], -1).norm(dim=1).reshape(-1, *[1] * (merged.dim() - 1))
    magnitude = magnitude.reshape(norm.shape)
    return merged * (magnitude / (norm + torch.finfo(torch.float32).eps))
