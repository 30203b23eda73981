"""The throughput benchmark's Markdown, from its table alone: `benchmark.md` from `benchmark.csv` and
`provenance.json` (`python -m lightning_electra benchmark --render DIR` redraws it without measuring)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from lightning_electra.benchmark_table import (PLAIN_IMPLEMENTATION, PLAIN_STEP, STEP_BEFORE_LIGHTNING_FIT, SUITE,
                                              device_peaks)
from lightning_electra.io import atomic_write_text
from lightning_electra.results import ResultsError


def fmt(x, spec: str, scale: float = 1.0) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x / scale, spec)


def step_graph(r) -> str:
    """', step graph' for a row whose whole step ran as one CUDA graph (train.step_graph; tables before it: none)."""
    return ", step graph" if str(getattr(r, "step_graph", False)) == "True" else ""


def how(r) -> str:
    """How a row's step ran: eager or compiled (in which mode), and whether as one CUDA graph."""
    return (f"compiled {r.compile_mode}" if r.compiled else "eager") + step_graph(r)


def busy_share(r) -> float:
    return r.gpu_busy_ms / r.step_ms if r.gpu_busy_ms == r.gpu_busy_ms else math.nan


def table(frame: pd.DataFrame) -> list[str]:
    lines = ["| variant | implementation | compiled | batch | tokens/s | step ms | paper TFLOP/s | measured TFLOP/s "
             "| MFU | peak GB | warm-up s | GPU busy | vs plain eager |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    plain = frame[(frame.implementation == PLAIN_IMPLEMENTATION) & ~frame.compiled.astype(bool)]
    for r in frame.itertuples():
        same = plain[plain.batch_size == r.batch_size]
        ref = same if len(same) else plain
        ratio = f"{r.tokens_per_s / ref.tokens_per_s.iloc[0]:.2f}x" if len(ref) else ""
        busy = fmt(100 * busy_share(r), ".0f") + ("%" if busy_share(r) == busy_share(r) else "")
        compiled = (f"yes ({r.compile_mode})" if r.compiled else "no") + step_graph(r)
        lines.append(f"| {r.variant} | {r.implementation} | {compiled} | {r.batch_size} "
                     f"| {fmt(r.tokens_per_s, ',.0f')} | {fmt(r.step_ms, '.1f')} "
                     f"| {fmt(r.paper_flops_per_s, '.3g', 1e12)} | {fmt(r.measured_flops_per_s, '.3g', 1e12)} "
                     f"| {fmt(r.mfu, '.3f')} | {fmt(r.peak_mem_gb, '.2f')} | {fmt(r.warmup_s, '.1f')} | {busy} "
                     f"| {ratio} |")
    return lines


def bounds(frame: pd.DataFrame, device: str) -> list[str]:
    """Per-token work and traffic of the fastest suite ELECTRA row (or the fastest row), against the device."""
    suite = frame[(frame.variant == "electra") & (frame.implementation == SUITE)]
    r = frame.loc[(suite if len(suite) else frame).tokens_per_s.idxmax()]
    tokens = r.batch_size * r.seq_len
    peak_flops, bandwidth = device_peaks(device) if "cpu" not in device else (None, None)
    m_tok, p_tok = r.measured_flops_per_step / tokens, r.paper_flops_per_step / tokens
    act = 2 * r.saved_bytes_per_token  # written by the forward, read back by the backward
    lines = [f"Fastest suite row of `{r.variant}`: batch {r.batch_size}, {how(r)}: {r.tokens_per_s:,.0f} tokens/s, "
             f"{r.step_ms:.1f} ms/step.", "",
             f"* Work per token: {p_tok / 1e6:.1f} MFLOP in the paper's convention, {m_tok / 1e6:.1f} MFLOP as torch "
             "counts it (matmul-type ops only, forward + backward).",
             f"* Traffic per token, a floor: the tensors autograd saves for backward in the eager graph come to "
             f"{r.saved_bytes_per_token / 1e3:.0f} kB per token, written once and read once ({act / 1e3:.0f} kB); "
             "intermediates that are not saved, the gradients flowing back and the optimizer's passes over the "
             "weights come on top, and compilation saves fewer tensors (it recomputes cheap ones)."]
    if peak_flops:
        lines.append(f"* Against the datasheet ({peak_flops / 1e12:.0f} TFLOP/s dense bf16, "
                     f"{bandwidth / 1e12:.2f} TB/s): the arithmetic alone would allow {peak_flops / m_tok / 1e6:.1f}M "
                     f"tokens/s and that floor traffic alone {bandwidth / act / 1e6:.1f}M tokens/s; the row reaches "
                     f"{r.tokens_per_s / 1e6:.2f}M (MFU {r.mfu:.3f}). Arithmetic intensity of the floor traffic: "
                     f"{m_tok / act:.0f} FLOP/byte, against the device's ridge of {peak_flops / bandwidth:.0f}.")
    if busy_share(r) == busy_share(r):
        lines.append(f"* Profiler: {r.kernels_per_step:.0f} kernels per step; the GPU is busy {r.gpu_busy_ms:.1f} of "
                     f"{r.step_ms:.1f} ms ({busy_share(r):.0%}), " + (
                         "so the host, launching kernels one by one, sets the pace." if busy_share(r) < 0.8 else
                         "so the kernels themselves set the pace, not the host."))
        if isinstance(r.top_kernels, str) and r.top_kernels:
            lines.append("* Largest kernels (share of GPU time): " + "; ".join(
                f"`{k.rsplit(':', 1)[0][:70]}` {float(k.rsplit(':', 1)[1]):.0%}"
                for k in r.top_kernels.split(";")[:5]) + ".")
        profiled = frame[frame.gpu_busy_ms == frame.gpu_busy_ms]
        host = profiled[profiled.gpu_busy_ms / profiled.step_ms < 0.8]
        if len(profiled):
            lines.append(f"* Host-bound rows (GPU busy under 80% of the step): {len(host)} of {len(profiled)}: " + (
                ", ".join(f"{h.variant}/{h.implementation} batch {h.batch_size} {how(h)} ({busy_share(h):.0%})"
                          for h in host.itertuples()) or "none") + ".")
    lines += step_ratio(frame)
    if "cpu" in device:
        lines += ["", f"On a CPU the row does {r.measured_flops_per_s / 1e9:.0f} GFLOP/s of matmul-type work as torch "
                  "counts it. profiles.txt (with --profile) splits each row's step into operators by self time: "
                  "the matmuls (mm, addmm, the attention kernels) are what the cores' vector units and oneDNN set "
                  "the pace of; the rest is element-wise work over the activations, bound by memory traffic, and "
                  "random draws. No kernel launches to hide: compilation gains only what fusing the element-wise "
                  "chains saves (see its row and its warm-up)."]
        return lines
    lines += ["", "At ELECTRA-Small's width (hidden 256, generator 64, K = 64 to 1024 in every matmul) a step is "
              "thousands of small kernels: the matmuls run far below the tensor cores' peak, and the element-wise "
              "work around them (LayerNorm, GELU, dropout, residual adds, the softmax over the vocabulary at the "
              "masked slots, the fp32 Gumbel sampling) moves about as many bytes as the matmuls do arithmetic. "
              "Launched one at a time from Python, the kernels leave the GPU idle whenever the host is slower than "
              "the kernel it just launched; compilation fuses the element-wise chains (fewer bytes, fewer "
              "launches), CUDA graphs (reduce-overhead) replay the compiled forward and backward as one launch each, and a larger batch "
              "makes each kernel longer. Once the GPU is busy all the time, the step is bound by memory traffic "
              "and by small-matmul efficiency, not by peak arithmetic: MFU stays low at this model size."]
    return lines


def step_ratio(frame: pd.DataFrame) -> list[str]:
    """ELECTRA's step against BERT's (eager suite rows at one batch), beside the ratio of their paper FLOPs: how far
    each objective's step cost follows its arithmetic."""
    eager = frame[(frame.implementation == SUITE) & ~frame.compiled.astype(bool)]
    lines = []
    for batch in sorted(set(eager.batch_size)):
        rows = eager[eager.batch_size == batch].set_index("variant")
        if {"electra", "bert"} <= set(rows.index):
            e, b = rows.loc["electra"], rows.loc["bert"]
            lines.append(f"* ELECTRA's step against BERT's at batch {batch}, eager: {e.step_ms / b.step_ms:.2f}x the "
                         f"time for {e.paper_flops_per_step / b.paper_flops_per_step:.2f}x the paper FLOPs.")
    return lines


def render(out: Path) -> Path:
    """benchmark.md from benchmark.csv and provenance.json in `out` (no measuring)."""
    missing = [name for name in ("benchmark.csv", "provenance.json") if not (out / name).is_file()]
    if missing:
        raise ResultsError(f"no {' or '.join(missing)} in {out}: --render takes the folder a benchmark wrote (its "
                           "--out, e.g. analysis/reports/benchmark).")
    frame = pd.read_csv(out / "benchmark.csv")
    info = json.loads((out / "provenance.json").read_text())
    md = ["# Pre-training throughput", "",
          f"Scale `{info['scale']}`'s shapes" + (" shrunk to 2 x 64 (--small)" if info["small"] else "")
          + f", sequence length {info['seq_len']}, {info['precision']}, on {info['device']}. {info['steps']} timed "
          f"optimizer steps after {info['warmup']} warm-up steps (compilation inside the warm-up), the median of "
          f"{min(3, info['steps'])} "
          "synchronised windows. tokens/s counts every position (batch x sequence length). 'GPU busy' is the "
          "share of the step in which a kernel runs (profiler). 'vs plain eager' divides by the plain "
          "transformers baseline run eagerly at the same batch (or its only batch).", "", *table(frame), ""]
    if info.get("failures"):
        md += ["Rows that failed:", "", *[f"* {f}" for f in info["failures"]], ""]
    if info.get("notes"):  # added by hand to provenance.json after a run (then --render)
        md += ["## Notes", "", *[f"* {n}" for n in info["notes"]], ""]
    if len(frame):
        md += ["## What bounds it", "", *bounds(frame, info["device"]), ""]
    md += ["## Provenance", "",
           f"* Command: `{info['command']}`",
           f"* Commit: {info['commit']}",
           f"* Date: {info['date']}",
           f"* Hardware: {info['device']}; host {info['host']} with {info['cpu_count']} CPU cores",
           f"* Software: {info['versions']}",
           f"* Data: {info['data']}",
           f"* Step: {info.get('step', STEP_BEFORE_LIGHTNING_FIT)} {PLAIN_STEP}",
           "* benchmark.csv also holds: measured and paper FLOPs per step, saved-tensor bytes per token (autograd's "
           "saved tensors in one eager step), kernels and GPU-busy ms per step (profiler), the compile mode, "
           "dynamo's graph and graph-break counts and CUDA-graph skips, step_ms_spread ((max - min) / median over "
           "the windows); profiles.txt (GPU runs) the kernels and host-side ops of each row.", ""]
    atomic_write_text(out / "benchmark.md", "\n".join(md))
    return out / "benchmark.md"
