"""Pre-training throughput: every objective of the suite, eager and compiled, beside the plain transformers baseline.

    python -m lightning_electra benchmark                  # GPU: ELECTRA-Small shapes (scale `tiny`), batch 128, 512
    python -m lightning_electra benchmark --device cpu     # CPU: small shapes (2 x 64, seq 64, batch 8), seconds
    make benchmark ARGS="--variants electra,plain --batch-sizes 512 --compile on" OVERRIDES="model.num_layers=4"

Each row times the module's own training step, as a sweep trains it: a Lightning fit of `--warmup` steps (compilation
happens inside them) then `--steps` timed steps in synchronised windows, with the run's precision, gradient clipping,
optimiser and schedule. The step is the module's own (lightning_electra/step_runner.py): masking on the device and the
objective, through torch.compile when `train.compile`; with `--step-graph`, the whole step (that forward, backward,
clipping, the update) replayed as one CUDA graph (lightning_electra/step_graph.py). Batches are built before timing
and sit on the device, as a DataLoader with workers and pinned memory keeps them ready during training: rows of the
packed corpus when DATA_DIR is set, else random ids with the same [CLS] A [SEP] B [SEP] structure, 5% of rows shorter
and padded. The plain baseline (`plain` in --variants, lightning_electra/tools/baseline.py) is trained by the same
step.

Columns: tokens_per_s counts every position of every row (B x L); paper_flops_per_s uses the paper's convention
(lightning_electra.flops), the same for the plain baseline as for the suite's ELECTRA since the algorithm is the
same; measured_flops_per_s is torch's FlopCounterMode count of one eager step (matmul-type ops, forward + backward)
times steps/s, so the plain baseline's full-vocabulary head counts there; mfu is measured FLOPs/s over the
device's dense bf16 peak (blank on CPU or an unknown GPU). analysis/benchmark.py writes the Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import math
import os
import platform
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from lightning_electra.data.files import vocab_path
from lightning_electra.data.packing import batch_from_ids, synthetic_ids
from lightning_electra.data.tokenizer import special_ids
from lightning_electra.io import ROOT, atomic_write_text
from lightning_electra.log import logger
from lightning_electra.provenance import command_line, git_commit
from lightning_electra.timing import profile_summary, timed_fit
from lightning_electra.module import lightning_gradient_clip
from lightning_electra.objectives import OBJECTIVES, objective
from lightning_electra.runner.configs import load_config
from lightning_electra.tools.baseline import SMALL_MODEL, PlainElectra, corpus_ids
from lightning_electra.benchmark_table import (COLUMNS, PLAIN_IMPLEMENTATION, STEP, SUITE, device_peaks,
                                              write_benchmark)

log = logger("benchmark")

DEFAULT_OUT = ROOT / "analysis" / "reports" / "benchmark"
PLAIN = "plain"  # the name of the plain-transformers baseline in --variants


def autocast(device: torch.device, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def count_step(module, batch, device: torch.device, precision: str) -> tuple[float, float]:
    """(FLOPs torch counts for one eager forward + backward, bytes of tensors autograd saves for backward)."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast(device, precision), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            loss = module.masked_objective(batch)["loss"]
        loss.backward()
    module.zero_grad(set_to_none=True)
    return float(counter.get_total_flops()), float(sum(saved.values()))


def measure_row(name: str, cfg, special, device: torch.device, precision: str, token_counts, ids, warmup: int,
                steps: int, pool: int, profile: int, mode: str | None, failures: list[str], label: str):
    """(FLOPs, saved bytes, timing, profile, paper FLOPs, compile mode, dynamo counts) of one row; None if it failed."""
    from torch._dynamo.utils import counters

    module = None
    try:
        torch._dynamo.reset()  # each row compiles afresh: no cache limits, no dynamic-shape recompiles
        counters.clear()
        torch.manual_seed(cfg.train.seed)
        cls = PlainElectra if name == PLAIN else objective(name).for_stage(1)
        module = cls(cfg, special, token_counts=token_counts, compile_mode=mode if cfg.train.compile else None)
        module.to(device).train()
        used_mode = module.resolved_compile_mode() if cfg.train.compile else ""
        bs = cfg.train.batch_size
        batches = [{k: v.to(device) for k, v in batch_from_ids(ids[i * bs:(i + 1) * bs], special).items()}
                   for i in range(pool)]
        flops, saved = count_step(module, batches[0], device, precision)
        timer = timed_fit(module, batches, device, precision, lightning_gradient_clip(cfg), warmup, steps, profile,
                          cfg.train.log_every_n_steps)
        dynamo = {"graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values()),
                  "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}
        prof = profile_summary(timer.profiler, profile) if timer.profiler is not None else {}
        return flops, saved, timer.timing(), prof, module.paper_flops_per_step(), used_mode, dynamo
    except Exception as err:  # a row that fails (out of memory, a compiler error) leaves the others standing
        traceback.print_exc()
        failures.append(f"{label}: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}")
        return None
    finally:
        del module
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def versions() -> str:
    import lightning
    import transformers

    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    return (f"python {platform.python_version()}, torch {torch.__version__}{cuda}, transformers "
            f"{transformers.__version__}, lightning {lightning.__version__}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lightning_electra benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--device", default="auto", help="auto (cuda if visible), cuda, cuda:N or cpu")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated suite variants, plus '{PLAIN}' for the plain transformers baseline "
                        "(default: every variant, then plain)")
    p.add_argument("--batch-sizes", default=None, help="suite batch sizes (default 128,512 on GPU; 8 with --small)")
    p.add_argument("--plain-batch-sizes", default=None,
                   help="plain-baseline batch sizes (default 128 on GPU, the paper's; --batch-sizes with --small)")
    p.add_argument("--compile", choices=["both", "on", "off"], default=None,
                   help="eager, compiled or both (default: both on GPU, off on CPU where compiling takes minutes)")
    p.add_argument("--plain-compile", choices=["both", "on", "off"], default=None,
                   help="the same for the plain baseline (default: as --compile)")
    p.add_argument("--step-graph", choices=["both", "on", "off"], default="off",
                   help="the suite's whole step as one CUDA graph (train.step_graph), without or with (default off)")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode for the suite (default: the suite's own, reduce-overhead on CUDA)")
    p.add_argument("--plain-compile-mode", default="default", help="torch.compile mode for the plain baseline")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 30 on GPU, 2 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps, compilation included (default 5; 1 CPU)")
    p.add_argument("--small", action=argparse.BooleanOptionalAction, default=None,
                   help="small shapes: 2 x 64 model, seq 64, batch 8 (default on CPU)")
    p.add_argument("--scale", default="tiny", help="the scale config whose shapes to use (tiny: ELECTRA-Small)")
    p.add_argument("--seq-len", type=int, default=None, help="sequence length (default: the scale's; 64 with --small)")
    p.add_argument("--precision", default=None, help="default: the scale's on GPU (bf16-mixed), 32-true on CPU")
    p.add_argument("--data", choices=["auto", "corpus", "synthetic"], default="auto",
                   help="auto: packed-corpus rows when DATA_DIR is set, else synthetic ids")
    p.add_argument("--corpus-bytes", type=int, default=None, help="corpus prefix to pack (default 4 MB; 0.5 MB small)")
    p.add_argument("--pool", type=int, default=4, help="distinct batches cycled through")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                   help="profile a few steps per row: kernel counts and GPU-busy time on CUDA (the default there); "
                        "on a CPU, the step by phase and the operators by self time")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for benchmark.csv and benchmark.md")
    p.add_argument("--render", type=Path, default=None,
                   help="only re-render DIR/benchmark.md from DIR/benchmark.csv and DIR/provenance.json")
    p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. model.num_layers=4)")
    return p.parse_intermixed_args(argv)


def ints(text: str | None) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text and text.lower() != "none" else []


def modes(choice: str) -> list[bool]:
    return {"both": [False, True], "on": [True], "off": [False]}[choice]


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.render:  # nothing to measure: the command line renders it (analysis/benchmark.py)
        return None
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.set_float32_matmul_precision("high")
    small = (not cuda) if args.small is None else args.small
    base = load_config(args.scale, variant="electra", overrides=list(args.overrides))
    seq = args.seq_len or (64 if small else base.data.max_seq_length)
    precision = args.precision or (base.train.precision if cuda else "32-true")
    batch_sizes = ints(args.batch_sizes) or ([8] if small else [128, 512])
    plain_sizes = ints(args.plain_batch_sizes) if args.plain_batch_sizes is not None else (
        batch_sizes if small else [128])
    compile_choice = args.compile or ("both" if cuda else "off")
    plain_compile = args.plain_compile or compile_choice
    steps = args.steps or (30 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    profile = 3 if (cuda if args.profile is None else args.profile) else 0
    trained = [name for name in OBJECTIVES if objective(name).stages]  # the control trains nothing to time
    names = [v.strip() for v in args.variants.split(",")] if args.variants else [*trained, PLAIN]
    unknown = [v for v in names if v not in trained and v != PLAIN]
    if unknown:
        raise SystemExit(f"Unknown variant(s) {unknown}; known: {', '.join(trained)}, {PLAIN}")
    overrides = [*(SMALL_MODEL if small else []), f"data.max_seq_length={seq}", f"train.precision={precision}",
                 *args.overrides]

    use_corpus = args.data == "corpus" or (args.data == "auto" and bool(os.environ.get("DATA_DIR")))
    special = special_ids(vocab_path(base.data))
    rows_needed = args.pool * max(batch_sizes + plain_sizes)
    token_counts = None
    if use_corpus:
        corpus_bytes = args.corpus_bytes or (500_000 if small else 4_000_000)
        ids, dm, data_note = corpus_ids(load_config(args.scale, variant="electra", overrides=overrides), rows_needed,
                                        corpus_bytes)
        token_counts = dm.token_counts()
    else:
        ids, data_note = synthetic_ids(rows_needed, seq, special), "synthetic ids ([CLS] A [SEP] B [SEP], 5% padded)"

    plan = [(name, bs, compiled, graphed) for name in names if name != PLAIN for bs in batch_sizes
            for compiled in modes(compile_choice) for graphed in modes(args.step_graph)]
    plan += [(PLAIN, bs, compiled, False) for bs in plain_sizes for compiled in modes(plain_compile)] \
        if PLAIN in names else []
    info = {"command": command_line(["benchmark", *argv]), "data": data_note,
            "steps": steps, "warmup": warmup, "small": small, "scale": args.scale, "seq_len": seq,
            "precision": precision, "device": device_name(device), "host": platform.machine(),
            "cpu_count": os.cpu_count(), "commit": git_commit(), "versions": versions(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "step": STEP}
    log.info(f"{len(plan)} rows on {info['device']} ({precision}, seq {seq}); data: {data_note}")
    rows, failures, profiles = [], [], []
    for name, bs, compiled, graphed in plan:
        cfg = load_config(args.scale, variant="electra" if name == PLAIN else name,
                          overrides=[*overrides, f"train.batch_size={bs}", f"train.compile={compiled}",
                                     f"train.step_graph={graphed}"])
        label = f"{name} batch {bs} {'compiled' if compiled else 'eager'}{', step graph' if graphed else ''}"
        # a step graph compiles without graphs of its own (the suite's default mode for it)
        mode = args.plain_compile_mode if name == PLAIN else None if graphed else args.compile_mode
        result = measure_row(name, cfg, special, device, precision, token_counts, ids, warmup, steps, args.pool,
                             profile, mode, failures, label)
        if result is None and compiled and name != PLAIN and not graphed \
                and (mode or "reduce-overhead") == "reduce-overhead" and cuda:
            # CUDA graphs failed: measure the plain compiled step instead, and say so
            result = measure_row(name, cfg, special, device, precision, token_counts, ids, warmup, steps, args.pool,
                                 profile, "default", failures, label + " (mode default)")
        if result is None:
            continue
        flops, saved, timing, prof, paper, used_mode, dynamo = result
        tokens, step_s = bs * seq, timing["step_s"]
        peak_flops, _ = device_peaks(info["device"]) if cuda else (None, None)
        row = {"variant": "electra" if name == PLAIN else name,
               "implementation": PLAIN_IMPLEMENTATION if name == PLAIN else SUITE,
               "compiled": compiled, "device": info["device"], "precision": precision, "batch_size": bs,
               "seq_len": seq, "tokens_per_s": tokens / step_s, "step_ms": step_s * 1e3,
               "paper_flops_per_s": paper / step_s, "measured_flops_per_s": flops / step_s,
               "mfu": flops / step_s / peak_flops if peak_flops else math.nan, "peak_mem_gb": timing["peak_mem_gb"],
               "warmup_s": timing["warmup_s"], "step_ms_spread": timing["spread"],
               "measured_flops_per_step": flops, "paper_flops_per_step": paper,
               "saved_bytes_per_token": saved / tokens, "kernels_per_step": prof.get("kernels_per_step", math.nan),
               "gpu_busy_ms": prof.get("gpu_busy_ms", math.nan), "compile_mode": used_mode, **dynamo,
               "top_kernels": ";".join(f"{n.replace(';', ',')}:{share:.4f}" for n, share in prof.get("top", [])),
               "step_graph": graphed}
        rows.append(row)
        if prof.get("text"):
            gpu = (f", GPU busy {prof['gpu_busy_ms']:.1f} ms, {prof['kernels_per_step']:.0f} kernels/step"
                   if "gpu_busy_ms" in prof else "")
            profiles.append(f"=== {label} ({used_mode or 'eager'}): {row['step_ms']:.1f} ms/step{gpu}, dynamo {dynamo}"
                            f"\n{prof['text']}\n")
            atomic_write_text(args.out / "profiles.txt", "\n".join(profiles))
        log.info(f"{label}{f' ({used_mode})' if used_mode else ''}: {row['tokens_per_s'] / 1e6:.3f}M "
                 f"tokens/s, {row['step_ms']:.1f} ms/step, warm-up {row['warmup_s']:.1f}s"
                 + (f", MFU {row['mfu']:.3f}" if peak_flops else "")
                 + (f", GPU busy {row['gpu_busy_ms'] / row['step_ms']:.0%}" if "gpu_busy_ms" in prof else "")
                 + (f", dynamo {dynamo}" if compiled else ""))
        write_benchmark(rows, failures, info, args.out)  # each row as it comes: a stopped benchmark keeps the rest
    frame = write_benchmark(rows, failures, info, args.out)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(frame[COLUMNS[:13]].to_string(index=False), flush=True)
    return frame
