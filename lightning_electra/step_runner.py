"""How a pre-training step executes, chosen once from the config (`step_runner`), apart from what the step is
(`PretrainModule`: mask the batch, the objective's losses, the optimiser, schedule and clipping).

Three ways to run one set of ops, each a speed switch only (tests/test_equivalence.py, tests/test_step_graph.py):

* eager: the forward as written; Lightning's automatic optimisation runs backward, clipping and the update.
* compiled (`train.compile`): the same forward through torch.compile. Every batch has one shape (drop_last, fixed
  length, fixed mask slots), so no dynamic-shape graphs. On CUDA the mode is "reduce-overhead" unless the whole step
  is one graph already: at ELECTRA-Small's width a step is ~2,000 small kernels, and launching them one by one from
  Python left the GPU idle half the time. Those graphs' outputs are overwritten by the next replay, so the step
  hands out copies.
* graphed (`train.step_graph`): the whole step, that forward (eager or compiled), backward, clipping and the
  update, as one CUDA graph (lightning_electra/step_graph.py) under Lightning's manual optimisation.

A runner is called with the batch and the step's phase (`PretrainModule.phase`): a plain value, on which
torch.compile specialises and for which the step graph captures a graph of its own.
"""

from __future__ import annotations

from typing import Callable, Hashable

import torch

Forward = Callable[..., dict[str, torch.Tensor]]  # (batch, phase) -> metrics, 'loss' among them
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile's modes that replay CUDA graphs


def compile_mode(requested: str | None, device: torch.device, step_graph: bool) -> str:
    """torch.compile's mode: `requested` if set, else compile's own CUDA graphs on a GPU (unless the whole step is one
    graph already), else its default."""
    return requested or ("reduce-overhead" if device.type == "cuda" and not step_graph else "default")


def compiled(forward: Forward, mode: str, device: torch.device) -> Forward:
    """`forward` through torch.compile in `mode`; where that replays CUDA graphs, returning copies of its outputs
    (the next replay overwrites them, and logging keeps them)."""
    step = torch.compile(forward, dynamic=False, mode=mode)
    if device.type != "cuda" or mode not in CUDA_GRAPH_MODES:
        return step

    def copied(batch: dict[str, torch.Tensor], phase: Hashable = None) -> dict[str, torch.Tensor]:
        metrics = step(batch, phase)
        return {k: v.clone() if k == "loss" else v.detach().clone() for k, v in metrics.items()}

    return copied


def step_runner(module) -> Forward:
    """The step of a PretrainModule on its device, as its config asks: (batch, phase) -> metrics."""
    train = module.cfg.train
    forward = module.masked_objective
    if train.compile:
        forward = compiled(forward, compile_mode(module.compile_mode, module.device, train.step_graph), module.device)
    if not train.step_graph:
        return forward
    return lambda batch, phase=None: module.graphed_step(batch, forward, module.clip_gradients_to_norm, phase)
