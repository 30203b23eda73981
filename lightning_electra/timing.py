"""Timing the training step as a fit runs it: synchronised windows of steps, and what the GPU did meanwhile.

The benchmark (lightning_electra/tools/benchmark.py) and a sweep's plan (lightning_electra/runner/rates.py) time the
same step, the module's own in a Lightning fit, with these.
"""

from __future__ import annotations

import math
import statistics
import time

import lightning as L
import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Batches:
    """`total` batches cycled from a pool already on the device (an iterable Lightning takes as it is)."""

    def __init__(self, pool: list[dict], total: int):
        self.pool, self.total = pool, total

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        return (self.pool[i % len(self.pool)] for i in range(self.total))


class StepTimer(L.Callback):
    """Synchronised wall time of the warm-up, then of `steps` steps in `windows` windows; then, if asked, a profile of
    `profile` more steps. Peak memory is over warm-up and timed steps (CUDA graphs take their pool while recording)."""

    def __init__(self, device: torch.device, warmup: int, steps: int, windows: int = 3, profile: int = 0):
        self.device, self.warmup, self.profile_steps = device, warmup, profile
        windows = max(1, min(windows, steps))
        sizes = [steps // windows + (w < steps % windows) for w in range(windows)]
        self.ends = [warmup + sum(sizes[:i + 1]) for i in range(windows)]  # steps at which a window closes
        self.marks: list[float] = []  # the time at the warm-up's end and at each window's end
        self.sizes, self.profiler = sizes, None

    def on_train_start(self, trainer, module) -> None:
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.start = time.perf_counter()
        if self.warmup == 0:
            self.marks.append(self.start)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self.profile_steps and trainer.global_step == self.ends[-1] and self.profiler is None:
            from torch.profiler import ProfilerActivity, profile

            synchronize(self.device)
            cuda = [ProfilerActivity.CUDA] if self.device.type == "cuda" else []
            self.profiler = profile(activities=[ProfilerActivity.CPU, *cuda])
            self.profiler.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self.warmup or step in self.ends:
            synchronize(self.device)
            self.marks.append(time.perf_counter())
            if step == self.ends[-1] and self.device.type == "cuda":
                self.peak_gb = torch.cuda.max_memory_allocated(self.device) / 2**30
        if self.profiler is not None and step == self.ends[-1] + self.profile_steps:
            synchronize(self.device)
            self.profiler.__exit__(None, None, None)

    def timing(self) -> dict[str, float]:
        step_s = [(b - a) / n for a, b, n in zip(self.marks, self.marks[1:], self.sizes)]
        median = statistics.median(step_s)
        return {"step_s": median, "spread": (max(step_s) - min(step_s)) / median,
                "warmup_s": self.marks[0] - self.start, "peak_mem_gb": getattr(self, "peak_gb", math.nan)}


def cpu_profile_summary(prof, steps: int) -> dict:
    """A CPU step's time split into backward (autograd's engine: each node's time with its operators) and the rest
    (forward, the update, Lightning; under Lightning's optimiser closure they nest in one range, so they are not told
    apart here), and the operators that take the most self time."""
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    backward = sum(e.cpu_time_total for e in events if e.key.startswith("autograd::engine::evaluate_function"))
    phases = {"backward": min(1.0, backward / total)}
    phases["forward, update and the rest"] = 1 - phases["backward"]
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:25]
    lines = [f"{e.self_cpu_time_total / total:6.1%} {e.self_cpu_time_total / steps / 1e3:8.2f} ms {e.count / steps:6.0f}x"
             f"  {e.key[:100]}" for e in top]
    return {"phases": phases, "top": [(e.key, e.self_cpu_time_total / total) for e in top[:6]],
            "text": "CPU step by phase (share of self time): " + ", ".join(f"{k} {v:.0%}" for k, v in phases.items())
            + "\n\nOperators by self time (share, ms per step, calls per step):\n" + "\n".join(lines)}


def profile_summary(prof, steps: int) -> dict:
    """Kernels per step, GPU-busy time per step (union of kernel intervals) and the kernels that take the most; on a
    CPU, `cpu_profile_summary`."""
    from torch.autograd import DeviceType

    if not any(getattr(e, "device_type", None) == DeviceType.CUDA for e in prof.events()):
        return cpu_profile_summary(prof, steps)
    annotations = ("Optimizer.", "## ", "ProfilerStep", "Torch-Compiled", "CompiledFunction")  # GPU-side ranges
    kernels = [e for e in prof.events() if getattr(e, "device_type", None) == DeviceType.CUDA
               and not e.name.startswith(annotations)]
    busy, end = 0.0, -math.inf
    for a, b in sorted((e.time_range.start, e.time_range.end) for e in kernels):
        if b > end:
            busy += b - max(a, end)
            end = b
    by_name: dict[str, list[float]] = {}
    for e in kernels:
        entry = by_name.setdefault(e.name, [0.0, 0])
        entry[0] += e.time_range.elapsed_us()
        entry[1] += 1
    total = sum(t for t, _ in by_name.values()) or 1.0
    top = sorted(by_name.items(), key=lambda kv: -kv[1][0])
    lines = [f"{t / total:6.1%} {t / steps / 1e3:8.3f} ms {n / steps:6.0f}x  {name[:110]}" for name, (t, n) in top[:25]]
    cpu = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60)
    return {"kernels_per_step": len(kernels) / steps, "gpu_busy_ms": busy / steps / 1e3,
            "top": [(name, t / total) for name, (t, _) in top[:6]],
            "text": "GPU kernels by time (share, ms per step, launches per step):\n" + "\n".join(lines)
            + "\n\nHost side (profiled steps, CPU self time):\n" + cpu}


def timed_fit(module: L.LightningModule, pool: list[dict], device: torch.device, precision: str, grad_clip: float,
              warmup: int, steps: int, profile: int = 0, log_every_n_steps: int = 50) -> StepTimer:
    """The module's own training step in a plain Lightning fit (no logger, checkpoints or validation) over batches
    cycled from `pool` (already on `device`), timed by a StepTimer, which is returned."""
    timer = StepTimer(device, warmup, steps, profile=profile)
    total = warmup + steps + profile
    trainer = L.Trainer(accelerator=device.type, devices=[device.index or 0] if device.type == "cuda" else 1,
                        precision=precision, max_steps=total, gradient_clip_val=grad_clip, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=log_every_n_steps,
                        callbacks=[timer])
    trainer.fit(module, train_dataloaders=Batches(pool, total))
    return timer
