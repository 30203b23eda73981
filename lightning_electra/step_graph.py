"""The whole pre-training step as one CUDA graph (`train.step_graph`): masking, forward, backward, gradient clipping
and the optimiser's update captured once, then replayed every step with one launch.

Why: at ELECTRA-Small's width a step is ~2,000 small kernels. torch.compile's own CUDA graphs (mode reduce-overhead)
replay the forward and the backward, but between them the host still ran autograd's wrapper, 400 gradient
accumulations, the gradient norm and AdamW: ~19 ms a step on an H100 at batch 128, while the kernels took ~14 ms
(analysis/reports/benchmark/). Here the host's work per step is copying the batch into the graph's input buffers,
writing each learning rate into a device scalar, and one replay.

What a graph needs, and how it is met:

* Fixed shapes and addresses. Pre-training batches are full and fixed-length (drop_last, fixed mask slots). Each
  batch is copied into buffers captured once. The captured backward creates the gradients in the graph's pool: they
  are set to None before capture and never zeroed after.
* No host sync inside. The gradient norm stays on the device and nothing calls .item(). The non-finite guard reads
  the loss after the replay (callbacks.NonFiniteGuard).
* Values that change from step to step live on the device. Each learning rate is a device scalar, filled from the
  scheduler's value before each replay. Random draws (masking, dropout, G's sampling) come from the generator's
  graph-safe offsets, so every replay draws afresh.
* Host-side switches key the graph: the adversarial MLE warm-up, AMOS's switch exit (`PretrainModule.graph_key`).
  A new key drops the old graph, warms up and captures anew.
* Warm-up: the first steps of each key run uncaptured on a side stream, as CUDA graphs ask. Compilation,
  cuBLAS workspaces and the allocator all settle there.

On a CPU there is no graph: the same body runs every step. That is what the CPU tests compare with Lightning's
automatic optimisation.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Hashable

import torch

WARMUP_STEPS = 3  # uncaptured steps before each capture (PyTorch's whole-network example takes 3)


class StepGraph:
    """One training step, `forward` (batch -> metrics with a 'loss'), its backward, clipping to `grad_clip` (0: none)
    and `optimizer.update()`, replayed as a CUDA graph on a GPU; `__call__` runs one step and returns its metrics.
    The optimizer must take its learning rates as tensors (lightning_electra.optim.AdamWeightDecay)."""

    def __init__(self, forward: Callable[[dict], dict], optimizer: torch.optim.Optimizer, grad_clip: float):
        self.forward, self.optimizer, self.grad_clip = forward, optimizer, grad_clip
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.device = self.params[0].device
        self.lrs = [torch.zeros((), device=self.device) for _ in optimizer.param_groups]  # the device's copies
        self.key: Hashable = None
        self.warmed = 0  # uncaptured steps run with `key`
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}

    def __call__(self, batch: dict[str, torch.Tensor], key: Hashable = ()) -> dict[str, torch.Tensor]:
        for lr, group in zip(self.lrs, self.optimizer.param_groups):
            lr.fill_(group["lr"])  # the scheduler's rate for this step, on the device (no sync)
        if self.device.type != "cuda":
            return self.body(batch)
        if key != self.key:
            self.key, self.warmed, self.graph = key, 0, None  # its pool is freed with the old gradients
        if self.graph is None and self.warmed < WARMUP_STEPS:
            self.warmed += 1
            return self.warm_up(batch)
        if self.graph is None:
            self.capture(batch)
        for name, buffer in self.inputs.items():
            buffer.copy_(batch[name], non_blocking=True)
        self.graph.replay()
        return {k: v.clone() for k, v in self.outputs.items()}  # the next replay overwrites the graph's outputs

    def body(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step itself, the same whether it runs as it is or is captured."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.uncached_autocast():
            metrics = self.forward(batch)
        with torch.autocast(self.device.type, enabled=False):  # as Lightning's automatic optimisation runs it: the
            metrics["loss"].backward()  # step is inside Lightning's autocast, whose casts would reach backward's ops
        if self.grad_clip:  # global norm over the optimiser's parameters, as Lightning clips them
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        with self.rates_on_device():
            self.optimizer.update()
        return {k: v.detach() for k, v in metrics.items()}

    def uncached_autocast(self):
        """The autocast the run is in (Lightning's precision), without its cache of cast weights: a graph would be
        handed casts made before it, where inside every cast must be recorded. Every step, warm-up included, runs
        so, so that torch.compile's guards on the autocast state see one state."""
        kind = self.device.type
        return torch.autocast(kind, dtype=torch.get_autocast_dtype(kind), enabled=torch.is_autocast_enabled(kind),
                              cache_enabled=False)

    @contextmanager
    def rates_on_device(self):
        """Each group's learning rate as its device scalar while the update runs (a graph reads it from there); the
        scheduler's float again after, so the scheduler and the checkpoints see what they always do."""
        groups = self.optimizer.param_groups
        floats = [group["lr"] for group in groups]
        for group, lr in zip(groups, self.lrs):
            group["lr"] = lr
        try:
            yield
        finally:
            for group, value in zip(groups, floats):
                group["lr"] = value

    def warm_up(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            metrics = self.body(batch)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        return metrics

    def capture(self, batch: dict[str, torch.Tensor]) -> None:
        """Records one step on the batch's buffers (recording runs nothing: the replay that follows does)."""
        self.inputs = {k: v.clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward makes the gradients, in the graph's pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = self.body(self.inputs)
