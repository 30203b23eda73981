"""A whole training step as one CUDA graph: pre-training's (`train.step_graph`: masking, forward, backward, gradient
clipping, the optimiser's update) and GLUE's batched seeds' (`finetune.step_graph`), captured once, then replayed
every step with one launch.

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
* One graph per shape of batch and per host-side switch: the adversarial MLE warm-up, AMOS's switch exit
  (`PretrainModule.phase`, handed to the forward). Pre-training has one shape; a GLUE fine-tune (the batched seeds'
  ensemble) one per length bucket, and the last, smaller batch of each. Each graph has its own memory pool, so one
  never overwrites another's buffers; all share the weights, the optimiser's state and the learning rates.
* Warm-up: the first steps of each graph run uncaptured on a side stream, as CUDA graphs ask. Compilation,
  cuBLAS workspaces and the allocator all settle there (a shape seen fewer times simply never gets a graph).

On a CPU there is no graph: the same body runs every step. That is what the CPU tests compare with Lightning's
automatic optimisation.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Hashable

import torch

WARMUP_STEPS = 3  # uncaptured steps before each capture (PyTorch's whole-network example takes 3)


@dataclass
class Captured:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]  # the buffers each batch is copied into
    outputs: dict[str, torch.Tensor]  # the metrics, overwritten by every replay


class StepGraph:
    """One training step: `forward` (batch -> metrics with a 'loss'; (batch, key) when a step has a host-side switch
    `key`), its backward, `clip` (clips the gradients in place on the device; None: no clipping) and
    `optimizer.update()`, replayed as a CUDA graph on a GPU. `__call__` runs one step and returns its metrics. The
    optimizer must take its learning rates as tensors (lightning_electra.optim.AdamWeightDecay)."""

    def __init__(self, forward: Callable[[dict], dict], optimizer: torch.optim.Optimizer,
                 clip: Callable[[], object] | None):
        self.forward, self.optimizer, self.clip = forward, optimizer, clip
        self.device = optimizer.param_groups[0]["params"][0].device
        self.lrs = [torch.zeros((), device=self.device) for _ in optimizer.param_groups]  # the device's copies
        self.graphs: dict[Hashable, Captured] = {}
        self.seen: dict[Hashable, int] = {}  # uncaptured steps run per graph key
        self.switch: Hashable = None  # the host-side switch of the step (None: none)
        self.stream: torch.cuda.Stream | None = None  # the warm-up's side stream

    def __call__(self, batch: dict[str, torch.Tensor], key: Hashable = None) -> dict[str, torch.Tensor]:
        for lr, group in zip(self.lrs, self.optimizer.param_groups):
            lr.fill_(group["lr"])  # the scheduler's rate for this step, on the device (no sync)
        if key != self.switch:  # switches do not flip back within a fit: the old setting's graphs free their pools
            self.switch, self.graphs = key, {k: g for k, g in self.graphs.items() if k[0] == key}
            self.seen = {k: n for k, n in self.seen.items() if k[0] == key}  # should one come back: warmed anew
        if self.device.type != "cuda":
            return self.body(batch)
        key = (key, tuple((k, tuple(v.shape), v.dtype) for k, v in batch.items() if isinstance(v, torch.Tensor)))
        captured = self.graphs.get(key)
        if captured is None and self.seen.get(key, 0) < WARMUP_STEPS:
            self.seen[key] = self.seen.get(key, 0) + 1
            return self.warm_up(batch)
        if captured is None:
            captured = self.graphs[key] = self.capture(batch)
        for name, buffer in captured.inputs.items():
            buffer.copy_(batch[name], non_blocking=True)
        captured.graph.replay()
        return {k: v.clone() for k, v in captured.outputs.items()}  # the next replay overwrites the graph's outputs

    def body(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step itself, the same whether it runs as it is or is captured."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.uncached_autocast():
            metrics = self.forward(batch) if self.switch is None else self.forward(batch, self.switch)
        with torch.autocast(self.device.type, enabled=False):  # as Lightning's automatic optimisation runs it: the
            metrics["loss"].backward()  # step is inside Lightning's autocast, whose casts would reach backward's ops
        if self.clip is not None:
            self.clip()
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
        self.stream = self.stream or torch.cuda.Stream(self.device)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            metrics = self.body(batch)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return metrics

    def capture(self, batch: dict[str, torch.Tensor]) -> Captured:
        """Records one step on the batch's buffers (recording runs nothing: the replay that follows does). The
        gradients are set to None first, so the captured backward makes its own, in its pool: another graph's
        replays never write into them."""
        inputs = {k: v.clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the DataLoader's pin-memory thread may allocate pinned memory meanwhile, which the default
        # ("global") mode takes for an unsafe call inside the capture, spoiling it
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = self.body(inputs)
        return Captured(graph, inputs, outputs)


def lightning_clip(max_norm: float, graphed: bool) -> float | None:
    """The Trainer's gradient_clip_val: the norm, unless a step graph clips inside its graph (manual optimisation,
    where Lightning refuses a clip value of its own)."""
    return None if graphed else max_norm


class GraphedSteps:
    """For a LightningModule in manual optimisation (`automatic_optimization = False`) whose training step is a
    StepGraph: `graphed_step` runs one, made on first use over the module's one optimiser; the graphs go when the fit
    ends (each holds a memory pool nothing else may use)."""

    _step_graph: StepGraph | None = None

    def on_fit_end(self) -> None:
        if self._step_graph is not None:
            self._step_graph = None
            self.zero_grad(set_to_none=True)  # the last gradients live in the graphs' pools

    def graphed_step(self, batch: dict[str, torch.Tensor], forward: Callable[[dict], dict],
                     clip: Callable[[], object] | None, key: Hashable = None) -> dict[str, torch.Tensor]:
        """Lightning's optimizer.step runs the graph as its closure (so Lightning counts the step, as it would an
        automatic update), then the schedule steps, as Lightning steps it after an automatic update."""
        optimizer = self.optimizers()
        if self._step_graph is None:
            if not getattr(optimizer.optimizer, "update_in_closure", False):  # else every step would update twice
                raise TypeError("A graphed step needs an optimiser built to leave its update to the closure: "
                                "lightning_electra.optim.build_optimizer(..., step_graph=True).")
            self._step_graph = StepGraph(forward, optimizer.optimizer, clip)
        metrics: dict[str, torch.Tensor] = {}
        optimizer.step(closure=lambda: metrics.update(self._step_graph(batch, key)))
        self.lr_schedulers().step()
        return metrics
