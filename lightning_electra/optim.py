"""The optimiser and learning-rate schedule of pre-training and fine-tuning, written once.

By default both reproduce google-research/electra's `model/optimization.py`, which ran the paper's experiments:

* `AdamWeightDecay`: Adam **without bias correction** (`update = m / (sqrt(v) + eps)`), plus decoupled weight decay
  (`update += weight_decay * param`), then `param -= lr * update`. `bias_correction=True` takes torch's AdamW instead.
* Weight decay is off for every parameter whose name matches `LayerNorm`, `layer_norm` or `bias` (the official
  exclusion list).
* The schedule `lr * min(1, step / warmup) * (1 - step / total)`: warm-up and linear decay overlap, so a fine-tune
  peaks at (1 - warmup fraction) x lr. `overlap=False` decays only after the warm-up instead.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

import torch

NO_DECAY = re.compile(r"LayerNorm|layer_norm|bias")


def decays(name: str) -> bool:
    """Whether a parameter gets weight decay (the official exclusion list)."""
    return not NO_DECAY.search(name)


def decay_groups(named_parameters: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """Two parameter groups: with and without weight decay (trainable parameters only)."""
    groups = {True: [], False: []}
    for name, p in named_parameters:
        if p.requires_grad:
            groups[decays(name)].append(p)
    return [{"params": groups[True], "weight_decay": weight_decay}, {"params": groups[False], "weight_decay": 0.0}]


_FUSED = getattr(torch, "_fused_adamw_", None)
_NO_BIAS_CORRECTION = 1e6  # a step count: 0.9 ** 1e6 and 0.999 ** 1e6 underflow to 0


def fusable(lr, params: list[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW kernel can make the update: a float lr (a step graph's lr is a device tensor),
    plain tensors (not FSDP's DTensors) of one dtype on one CPU or GPU."""
    return (_FUSED is not None and not isinstance(lr, torch.Tensor) and len({(p.device, p.dtype) for p in params}) == 1
            and all(type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") for p in params))


class AdamWeightDecay(torch.optim.Optimizer):
    """The official ELECTRA / BERT optimiser: Adam with decoupled weight decay and no bias correction.

    A group's learning rate may be a device scalar instead of a float: a CUDA graph of the whole step
    (lightning_electra/step_graph.py) reads it from there. That graph runs the update inside the closure Lightning
    hands to `step`, so with `update_in_closure`, `step` runs the closure alone."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, update_in_closure: bool = False):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.update_in_closure = update_in_closure

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self.update_in_closure:
            self.update()
        return loss

    @torch.no_grad()
    def update(self) -> None:
        """One update from the gradients there are (parameters without one are left as they are)."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    self.state[p]["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            grads = [p.grad for p in params]
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            beta1, beta2 = group["betas"]
            if fusable(group["lr"], params):
                # torch's fused AdamW kernel, one pass over each tensor (15x the foreach ops' speed on 2 CPU cores:
                # 1.2 against 19 ms for 2M weights), made the official update by a step count at which both bias
                # corrections, 1 - beta^step, are exactly 1 in floating point
                step = torch.full((), _NO_BIAS_CORRECTION, device=params[0].device)
                _FUSED(params, grads, m, v, [], [step] * len(params), lr=group["lr"], beta1=beta1, beta2=beta2,
                       weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False, maximize=False)
                continue
            torch._foreach_lerp_(m, grads, 1 - beta1)  # m = beta1 * m + (1 - beta1) * g
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)  # v = beta2 * v + (1 - beta2) * g^2
            denominator = torch._foreach_sqrt(v)
            torch._foreach_add_(denominator, group["eps"])
            update = torch._foreach_div(m, denominator)  # no bias correction: the official update
            if group["weight_decay"]:
                torch._foreach_add_(update, params, alpha=group["weight_decay"])
            lr = group["lr"]
            if isinstance(lr, torch.Tensor):  # a device scalar: scale on the device, then subtract
                torch._foreach_mul_(update, lr)
                torch._foreach_sub_(params, update)
            else:
                torch._foreach_add_(params, update, alpha=-lr)


def clip_by_global_norm(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Clip the gradients of the optimiser's parameters by their global norm, as Lightning clips them (on the device:
    no host sync)."""
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], max_norm)


def build_optimizer(groups: list[dict], lr: float, eps: float, betas=(0.9, 0.999), bias_correction: bool = False,
                    fused: bool = False, step_graph: bool = False) -> torch.optim.Optimizer:
    """The official optimiser, or torch's AdamW (bias-corrected; fused on CUDA when asked) with `bias_correction`.
    `step_graph`: the official one, its update run by a step graph inside the closure (the config refuses torch's
    AdamW there)."""
    if bias_correction:
        return torch.optim.AdamW(groups, lr=lr, eps=eps, betas=tuple(betas), fused=fused)
    return AdamWeightDecay(groups, lr=lr, eps=eps, betas=tuple(betas), update_in_closure=step_graph)


def warmup_linear_decay(total_steps: int, warmup_fraction: float | None = None, overlap: bool = False,
                        warmup_steps: int | None = None) -> Callable[[int], float]:
    """LambdaLR factor: a linear warm-up over `warmup_steps` (else `warmup_fraction` of the steps) and a linear decay
    to 0 at `total_steps`, either overlapping (the official product, `min(1, step / warmup) * (1 - step / total)`)
    or the decay starting once the warm-up is done (`overlap=False`)."""
    warmup = max(1.0, float(warmup_steps) if warmup_steps is not None else total_steps * (warmup_fraction or 0.0))
    if not overlap:
        warmup = max(1, int(round(warmup)))

    def factor(step: int) -> float:
        if overlap:
            return min(1.0, step / warmup) * max(0.0, 1.0 - step / total_steps)
        if step < warmup:
            return step / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def lr_schedule(optimizer: torch.optim.Optimizer, factor: Callable[[int], float]) -> dict:
    """Lightning's scheduler entry for a per-step LambdaLR."""
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
