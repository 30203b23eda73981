"""The cross-cutting parts of a pre-training fit, as Lightning callbacks: what the objectives need not know.

* `FlopsCounter`: steps, tokens and FLOPs done since pre-training began (earlier stages included), in the paper's
  convention and as torch counts one real step.
* `NonFiniteGuard`: stops the run at the first non-finite loss (or weight), before a bad checkpoint is written.
* `RngState`: every rank's RNG states in the checkpoint, so a resumed run draws what an uninterrupted one would.
* `FractionCheckpoints`: the fine-tunable encoder in transformers' format at fractions of the budget.
* `ProgressReport`: step, loss, tokens a second and the estimated end, as a bar or as lines in a log (progress.py).

Each keeps its state in the checkpoint under the keys it always had ("flops", "measured_flops_per_step", "rng").
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.strategies import FSDPStrategy

from lightning_electra.errors import SuiteError
from lightning_electra.flops import measure_flops
from lightning_electra.io import atomic, write_json
from lightning_electra.models import effective_state
from lightning_electra.progress import Progress

COUNTS = ("step", "tokens", "flops_paper", "flops_measured")


class NonFiniteLossError(SuiteError, RuntimeError):
    """The loss (or a weight) stopped being finite; the checkpoints written before are kept, none after."""


class FlopsCounter(L.Callback):
    """Steps, tokens and FLOPs of pre-training so far. `offset` is what earlier stages did; `measured` (FLOPs per
    global batch, torch's FlopCounterMode on one forward + backward) is taken on a real batch when the fit starts,
    or comes from the checkpoint a fit resumes."""

    def __init__(self, offset: dict | None = None, measured: float | None = None):
        self.offset = dict(offset or dict.fromkeys(COUNTS, 0))
        self.measured = measured

    def done(self, module, step: int | None = None) -> dict[str, float]:
        """Counts after `step` of this stage (default: the module's global step), from the start of pre-training."""
        step = module.global_step if step is None else step
        c = module.cfg
        now = {"step": step, "tokens": step * c.train.batch_size * c.data.max_seq_length,
               "flops_paper": step * module.paper_flops_per_step(),
               "flops_measured": step * (self.measured or math.nan)}
        return {k: v + self.offset[k] for k, v in now.items()}

    def on_fit_start(self, trainer, module) -> None:
        if self.measured is None:
            self.measured = measure_step_flops(module, trainer)

    def on_save_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        checkpoint["flops"] = self.done(module)
        checkpoint["measured_flops_per_step"] = self.measured

    def on_load_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        self.measured = checkpoint.get("measured_flops_per_step")


def measure_step_flops(module, trainer) -> float:
    """FlopCounterMode on one forward + backward of a real batch, per global batch (torch's count: matmuls)."""
    dm = trainer.datamodule
    rows = [dm.train_set[i] for i in range(min(len(dm.train_set), dm.per_device_batch()))]
    batch = {k: v.to(module.device) for k, v in dm.collate(rows).items()}
    model = module
    if isinstance(trainer.strategy, FSDPStrategy):
        # sharded weights cannot run outside FSDP's forward; FLOPs depend on shapes, not values: count a copy
        model = type(module)(module.cfg, module.special, stage=module.stage).to(module.device)
    with torch.random.fork_rng(devices=[module.device] if module.device.type == "cuda" else []):
        flops = measure_flops(lambda: model.objective(batch, model.mask(batch))["loss"])
    module.zero_grad(set_to_none=True)
    return flops * module.cfg.train.batch_size / len(rows)


class NonFiniteGuard(L.Callback):
    """Notes the first step whose loss is not finite and stops the run with a NonFiniteLossError.

    On the CPU every step is checked. On a GPU reading the flag would make the host wait for each step, so it stays
    on the device and is read at log steps (which synchronise anyway) and before any checkpoint is written: a few
    NaN steps may run, but NaN weights are never saved. The loss is checked before its backward, or, with the whole
    step as one CUDA graph (train.step_graph, Lightning's manual optimisation), when the step ends.
    """

    def __init__(self, counter: FlopsCounter):
        self.counter = counter
        self.first_bad: torch.Tensor | None = None  # on the device: the first step with a non-finite loss (0: none)
        self.good_step: int | None = None  # the step of the last checkpoint written (or resumed from)

    def on_before_backward(self, trainer, module, loss: torch.Tensor) -> None:
        self.note(trainer, module, loss, module.global_step + 1)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if not module.automatic_optimization:  # the step graph: its backward is inside it, Lightning sees none
            self.note(trainer, module, outputs["loss"], module.global_step)  # the step Lightning has just counted

    def note(self, trainer, module, loss: torch.Tensor, step: int) -> None:
        """Keeps `step` on the device if its loss is the first non-finite one; checks at once where that is cheap."""
        if self.first_bad is None:
            self.first_bad = torch.zeros((), dtype=torch.long, device=loss.device)
        self.first_bad = torch.where(~torch.isfinite(loss.detach()) & (self.first_bad == 0), step, self.first_bad)
        if loss.device.type == "cpu" or module.is_log_step(step):
            self.check(trainer, module)

    def check(self, trainer, module, weights: bool = False) -> None:
        """Raises NonFiniteLossError if a loss so far (or, with `weights`, a weight now) is not finite."""
        bad = torch.zeros(2, dtype=torch.long, device=module.device)  # [first non-finite loss step, weights broken]
        if self.first_bad is not None:
            bad[0] = self.first_bad
        if weights:
            bad[1] = ~torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all()
        if trainer.world_size > 1:  # every rank stops at the same step
            bad = trainer.strategy.reduce(bad, reduce_op="max")
        step, broken = bad.tolist()
        first = self.counter.offset["step"]
        what = (f"non-finite loss at step {first + step}" if step else
                f"non-finite weights after step {first + module.global_step}" if broken else None)
        if what:
            callback = trainer.checkpoint_callback
            last = callback.last_model_path if callback else ""
            kept = (f"the last good checkpoint, {last} (step {first + self.good_step}), is kept; running the same "
                    "command again resumes from it and meets the same step, so change e.g. train.lr (a new run)"
                    if self.good_step is not None and last and Path(last).exists()
                    else "no checkpoint had been written yet")
            raise NonFiniteLossError(f"{module.cfg.name} ({module.cfg.variant}): {what}. Stopped: {kept}.")

    def on_save_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        self.check(trainer, module, weights=True)  # raising here leaves the previous checkpoint file as it was
        self.good_step = module.global_step

    def on_load_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        self.good_step = checkpoint.get("global_step")

    def on_train_end(self, trainer, module) -> None:
        self.check(trainer, module, weights=True)  # on a GPU the last steps may not have been checked yet


def stage_seed(seed: int, stage: int) -> int:
    """The seed a stage starts from: train.seed, and train.seed + k for a later stage k."""
    return seed + (stage if stage > 1 else 0)


class RngState(L.Callback):
    """Every rank's RNG states (masking, G's sampling, dropout) saved with each checkpoint and restored when training
    starts, as late as possible, so nothing between loading and the first step draws from them. Without saved
    states, ranks after the first seed their own streams: each its own draws, as one process has per example."""

    def __init__(self):
        self.saved: dict | None = None

    def on_save_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        checkpoint["rng"] = {"ranks": gather_rng_states(trainer)}

    def on_load_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        self.saved = checkpoint.get("rng")

    def on_train_start(self, trainer, module) -> None:
        rank, world = trainer.global_rank, trainer.world_size
        saved = self.saved or {}
        saved = saved.get("ranks", [saved] if saved else [])  # checkpoints before per-rank states held one dict
        if len(saved) == world:
            set_rng_states(saved[rank])
        elif world > 1:
            offset = 7919 * rank + (module.global_step if saved else 0)  # resumed on another device count: a new stream
            torch.manual_seed(stage_seed(module.cfg.train.seed, module.stage) + offset)
        elif saved:
            set_rng_states(saved[0])
        self.saved = None


def gather_rng_states(trainer) -> list[dict]:
    """Every rank's RNG states (Lightning builds a checkpoint on every rank; rank 0 writes it)."""
    states = rng_states()
    if trainer.world_size == 1 or not torch.distributed.is_initialized():
        return [states]
    gathered: list = [None] * trainer.world_size
    torch.distributed.all_gather_object(gathered, states)
    return gathered


def rng_states() -> dict:
    """Every global RNG's state, in types a weights-only torch.load accepts (numpy's array as a list)."""
    name, keys, *rest = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), *rest], "python": random.getstate()}
    if torch.cuda.is_available():  # this process's device: ranks seeded alike draw alike, so rank 0's serves all
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


class FractionCheckpoints(L.Callback):
    """Saves the fine-tunable encoder in transformers' format at the given steps of this stage, with its FLOPs so far,
    into `directory_of(step counted from the start of pre-training)`."""

    def __init__(self, directory_of, steps: list[int], counter: FlopsCounter, guard: NonFiniteGuard):
        self.directory_of, self.steps, self.counter, self.guard = directory_of, set(steps), counter, guard

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step not in self.steps:
            return
        self.steps.discard(step)  # with gradient accumulation, the next micro-batches end at this step too
        self.guard.check(trainer, module, weights=True)  # never a NaN encoder to fine-tune (collective: every rank)
        # on every rank: under FSDP this gathers the sharded weights onto rank 0; otherwise it is state_dict()
        state = effective_state(trainer.strategy.lightning_module_state_dict())  # tie=gdes: D's own weights
        if trainer.is_global_zero:
            done = self.counter.done(module, step)  # counted from the start of pre-training, earlier stages included
            prefix = next(name for name, m in module.named_modules() if m is module.backbone()) + "."
            with atomic(self.directory_of(int(done["step"]))) as tmp:  # a resumed run may pass the same step again
                module.backbone().save_pretrained(tmp, state_dict={k[len(prefix):]: v for k, v in state.items()
                                                                   if k.startswith(prefix)})
                write_json(tmp / "meta.json", {**done, "variant": module.cfg.variant, "stage": module.stage})


class ProgressReport(L.Callback):
    """Pre-training's progress on rank 0 (progress.Progress): the step of all stages out of `total_steps`, the loss,
    tokens a second and the estimated end; a bar on a terminal, a line a minute or every 5% in a log. The loss is
    read from the device only when a line or a redraw is due."""

    def __init__(self, label: str, counter: FlopsCounter, total_steps: int):
        self.label, self.counter, self.total = label, counter, total_steps
        self.progress: Progress | None = None

    def on_train_start(self, trainer, module) -> None:
        c = module.cfg
        self.tokens_per_step = c.train.batch_size * c.data.max_seq_length
        start = self.counter.offset["step"] + trainer.global_step  # a resumed fit, a later stage
        self.progress = Progress(self.label, self.total, "step", start=start, enabled=trainer.is_global_zero)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = self.counter.offset["step"] + trainer.global_step
        if self.progress is None or not self.progress.due(step):
            return
        figures = []
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):  # automatic optimisation hands over the loss divided by the micro-batches
            scale = trainer.accumulate_grad_batches if module.automatic_optimization else 1
            figures.append(f"loss {loss.detach().float().item() * scale:.4g}")
        rate = self.progress.rate(step)
        if rate:
            figures.append(f"{rate * self.tokens_per_step:,.0f} tokens/s")
        self.progress.update(step, figures)

    def on_train_end(self, trainer, module) -> None:
        if self.progress is not None:
            self.progress.close()
