"""The throughput benchmark's table: its columns, what a timed step is, the GPUs' datasheet peaks, and writing the
table with its provenance. Shared by the tool that measures (lightning_electra/tools/benchmark.py) and the report
that renders it (analysis/benchmark.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lightning_electra.io import atomic_write_text

SUITE, PLAIN_IMPLEMENTATION = "suite", "plain-transformers"  # the `implementation` column's values
COLUMNS = ["variant", "implementation", "compiled", "device", "precision", "batch_size", "seq_len", "tokens_per_s",
           "step_ms", "paper_flops_per_s", "measured_flops_per_s", "mfu", "peak_mem_gb",
           # beyond the required columns: how long warm-up (compilation included) took, the step-time spread over
           # the timed windows, and what the profiler and the saved-tensor count say (see "What bounds it")
           "warmup_s", "step_ms_spread", "measured_flops_per_step", "paper_flops_per_step", "saved_bytes_per_token",
           "kernels_per_step", "gpu_busy_ms", "compile_mode", "graphs", "graph_breaks", "cudagraph_skips",
           "top_kernels", "step_graph"]


# What a timed step is, written into provenance.json by the run that measured it, so that re-rendering an older
# table (--render) describes how its rows were measured, not how today's code would measure them.
STEP = ("the module's own training step in a Lightning fit, as a sweep trains it: masking on the device + the "
        "objective (through torch.compile when compiled), backward, gradient clipping, the run's optimiser and "
        "schedule; batches already on the device.")
STEP_BEFORE_LIGHTNING_FIT = (  # tables from before provenance recorded the step (the H100 run of 2026-11-22)
    "masking on the device + the objective (through torch.compile when compiled), backward, gradient clipping, AdamW "
    "(fused on CUDA) and the schedule, as Lightning's automatic optimisation runs them; batches already on the device.")
PLAIN_STEP = ("The plain baseline: transformers' ElectraForMaskedLM + ElectraForPreTraining, tied embeddings, "
              "full-vocabulary generator logits, the models' own losses.")


def device_peaks(name: str) -> tuple[float | None, float | None]:
    """(dense bf16 FLOP/s, memory bytes/s) from the datasheet for the GPUs we know; (None, None) otherwise."""
    n = name.upper()
    if "H200" in n:
        return 989e12, 4.8e12
    if "H100" in n:
        return (756e12, 2.0e12) if "PCIE" in n else (989e12, 3.35e12)
    if "A100" in n:
        return 312e12, 2.0e12
    return None, None


def write_benchmark(rows: list[dict], failures: list[str], info: dict, out: Path) -> pd.DataFrame:
    """benchmark.csv and provenance.json in `out`: everything the report (analysis/benchmark.py) is drawn from."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write_text(out / "benchmark.csv", frame.to_csv(index=False))
    atomic_write_text(out / "provenance.json", json.dumps({**info, "failures": failures, "notes": []}, indent=1))
    return frame
