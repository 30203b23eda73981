"""Pre-training throughput: every variant of the suite, eager and compiled, beside a plain transformers baseline.

    python -m experiments.benchmark                        # GPU: ELECTRA-Small shapes (scale `tiny`), batch 128, 512
    python -m experiments.benchmark --device cpu           # CPU: small shapes (2 x 64, seq 64, batch 8), seconds
    make benchmark OVERRIDES="--variants electra,plain --batch-sizes 512 --compile on"

Each row times `--steps` optimizer steps after `--warmup` steps (compilation happens inside the warm-up), with the
device synchronised around the timed window. A step is what Lightning's automatic optimisation does in the suite:
the forward (`PretrainModule.loss_step`: masking on the device + the variant's objective, through torch.compile
when `train.compile`) under the run's precision (bf16-mixed = autocast to bfloat16, fp32 weights), backward,
gradient clipping at `train.grad_clip`, AdamW (fused on CUDA) and the LR schedule. Batches are built before timing
and sit on the device, as a DataLoader with workers and pinned memory keeps them ready during training: rows of the
packed corpus when DATA_DIR is set (the project's DataModule on a prefix of the corpus), else random ids with the
same [CLS] A [SEP] B [SEP] structure, 5% of rows shorter and padded.

The plain baseline (`--variants ...,plain`) is what one writes with transformers alone: `ElectraForMaskedLM` (G)
and `ElectraForPreTraining` (D) at the same sizes with tied embeddings, G's logits over the whole vocabulary at
every position and `labels=-100` off the masked ones, D's loss from its own `labels`. Same masking, same sampling,
same losses (tests/test_equivalence.py checks that); only where the work is done differs.

Columns: tokens_per_s counts every position of every row (B x L); paper_flops_per_s uses the paper's convention
(lightning_electra.flops), the same for the plain baseline as for the suite's ELECTRA since the algorithm is the
same; measured_flops_per_s is torch's FlopCounterMode count of one eager step (matmul-type ops, forward + backward)
times steps/s, so the plain baseline's full-vocabulary head counts there; mfu is measured FLOPs/s over the
device's dense bf16 peak (blank on CPU or an unknown GPU).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import math
import os
import platform
import shlex
import statistics
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from lightning_electra.config import Config, load_config, vocab_path
from lightning_electra.corruption import Masked, mask_tokens, replace_at, sample_tokens
from lightning_electra.data.packing import token_type_ids
from lightning_electra.data.tokenizer import SpecialIds, special_ids
from lightning_electra.flops import electra_train_flops
from lightning_electra.models import build_discriminator, build_mlm, discriminator_shape, generator_shape, share_weights

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "analysis" / "reports" / "benchmark"
COLUMNS = ["variant", "implementation", "compiled", "device", "precision", "batch_size", "seq_len", "tokens_per_s",
           "step_ms", "paper_flops_per_s", "measured_flops_per_s", "mfu", "peak_mem_gb",
           # beyond the required columns: how long warm-up (compilation included) took, the step-time spread over
           # the timed windows, and what the profiler and the saved-tensor count say (see "What bounds it")
           "warmup_s", "step_ms_spread", "measured_flops_per_step", "paper_flops_per_step", "saved_bytes_per_token",
           "kernels_per_step", "gpu_busy_ms", "compile_mode", "graphs", "graph_breaks", "cudagraph_skips",
           "top_kernels"]
PLAIN = "plain"  # the name of the plain-transformers baseline in --variants
SMALL_MODEL = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=1", "model.intermediate_size=256",
               "model.embedding_size=64", "amos.exits=[1,2]"]  # AMOS's 4, 6, 8 of 12 collide at 2 layers


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


# --- the plain transformers path: also what tests/test_equivalence.py compares the suite against ---------------
def plain_mlm_labels(input_ids: torch.Tensor, masked: Masked) -> torch.Tensor:
    """transformers' MLM labels: the original id at each real masked slot, -100 everywhere else."""
    labels = torch.full_like(input_ids, -100)
    return labels.scatter(1, masked.positions, torch.where(masked.weights.bool(), masked.labels, -100))


def plain_electra_objective(generator, discriminator, batch: dict[str, torch.Tensor], masked: Masked,
                            temperature: float = 1.0, disc_weight: float = 50.0) -> dict[str, torch.Tensor]:
    """ELECTRA as a plain transformers user writes it: full-vocabulary G logits, the models' own losses."""
    inputs = {"attention_mask": batch["attention_mask"], "token_type_ids": batch["token_type_ids"]}
    g = generator(input_ids=masked.input_ids, labels=plain_mlm_labels(batch["input_ids"], masked), **inputs)
    vocab = g.logits.shape[-1]
    with torch.no_grad():
        at_masked = g.logits.gather(1, masked.positions[..., None].expand(-1, -1, vocab))
        sampled = sample_tokens(at_masked, temperature)
        corrupted = replace_at(batch["input_ids"], masked.positions, sampled, masked.weights)
    d = discriminator(input_ids=corrupted, labels=(corrupted != batch["input_ids"]).long(), **inputs)
    return {"loss": g.loss + disc_weight * d.loss, "mlm_loss": g.loss, "disc_loss": d.loss,
            "corrupted": corrupted}


def plain_mlm_objective(mlm, batch: dict[str, torch.Tensor], masked: Masked) -> dict[str, torch.Tensor]:
    """BERT's MLM with transformers' own loss over full-vocabulary logits."""
    out = mlm(input_ids=masked.input_ids, attention_mask=batch["attention_mask"],
              token_type_ids=batch["token_type_ids"], labels=plain_mlm_labels(batch["input_ids"], masked))
    return {"loss": out.loss, "mlm_loss": out.loss}


# --- batches ---------------------------------------------------------------------------------------------------
def batch_from_ids(input_ids: torch.Tensor, special: SpecialIds) -> dict[str, torch.Tensor]:
    """The DataModule's collate: ids, segment ids, attention mask."""
    return {"input_ids": input_ids, "token_type_ids": token_type_ids(input_ids, special.sep, special.pad),
            "attention_mask": (input_ids != special.pad).long()}


def synthetic_ids(rows: int, seq: int, special: SpecialIds, seed: int = 0) -> torch.Tensor:
    """Random word ids shaped like packed examples: [CLS] A [SEP] B [SEP], 5% of rows shorter and padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(999, special.vocab_size // 2), special.vocab_size, (rows, seq), generator=g)  # past [unused]
    lengths = torch.full((rows,), seq)
    short = torch.rand(rows, generator=g) < 0.05
    lengths[short] = torch.randint(8, seq, (int(short.sum()),), generator=g)
    split = (lengths * (0.25 + 0.5 * torch.rand(rows, generator=g))).long()
    pos = torch.arange(seq)[None]
    ids[:, 0] = special.cls
    ids = torch.where(pos == split[:, None], special.sep, ids)
    ids = torch.where(pos == lengths[:, None] - 1, special.sep, ids)
    return torch.where(pos >= lengths[:, None], special.pad, ids)


def corpus_ids(cfg: Config, rows: int, corpus_bytes: int) -> tuple[torch.Tensor, object, str]:
    """Rows of the packed corpus (a prefix of the run's corpus, or the 20 MB sample), via the project's DataModule."""
    from lightning_electra.data.datamodule import PretrainDataModule

    root = Path(cfg.data.data_dir)
    sources = [s for s in [*cfg.data.corpus, "corpus/sample-20mb.txt.xz"] if (root / s).exists()]
    if not sources:
        raise FileNotFoundError(f"No corpus under {root}: looked for {cfg.data.corpus} and corpus/sample-20mb.txt.xz")
    cfg = replace(cfg, data=replace(cfg.data, corpus=[sources[0]], max_corpus_bytes=corpus_bytes))
    dm = PretrainDataModule(cfg)
    dm.prepare_data()
    dm.setup()
    n = len(dm.train_set)
    g = torch.Generator().manual_seed(0)
    index = torch.randperm(n, generator=g)[:rows] if n >= rows else torch.randint(n, (rows,), generator=g)
    ids = torch.stack([dm.train_set[int(i)] for i in index])
    return ids, dm, f"{n:,} packed examples from the first {corpus_bytes / 1e6:g} MB of {sources[0]}"


# --- what one timed step does ---------------------------------------------------------------------------------
def autocast(device: torch.device, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def adamw(named_parameters, cfg: Config, device: torch.device, steps: int):
    """The suite's optimiser and schedule (PretrainModule.configure_optimizers), for the plain baseline."""
    t = cfg.train
    decay, no_decay = [], []
    for name, p in named_parameters:
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=t.lr, eps=t.adam_eps,
                                  betas=tuple(t.adam_betas), fused=device.type == "cuda")
    warmup = max(1, round(t.warmup_fraction * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, step / warmup) * max(0.0, 1.0 - step / steps))
    return optimizer, schedule


class Runner:
    """One configuration's training step; subclasses say how the loss is computed."""

    implementation = ""

    def __init__(self, cfg: Config, device: torch.device, precision: str):
        self.cfg, self.device, self.precision = cfg, device, precision

    def setup_optimizer(self, optimizer, schedule, params) -> None:
        self.optimizer, self.schedule, self.params = optimizer, schedule, [p for p in params if p.requires_grad]

    def loss(self, batch):  # the (possibly compiled) forward; returns the metrics dict
        raise NotImplementedError

    def eager_loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def paper_flops_per_step(self) -> float:
        raise NotImplementedError

    def step(self, batch) -> None:
        with autocast(self.device, self.precision):
            metrics = self.loss(batch)
        metrics["loss"].backward()
        if self.cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)


class SuiteRunner(Runner):
    implementation = "suite"

    def __init__(self, name: str, cfg: Config, special: SpecialIds, device: torch.device, precision: str, data=None,
                 compile_mode: str | None = None):
        super().__init__(cfg, device, precision)
        from lightning_electra.variants import VARIANTS

        torch.manual_seed(cfg.train.seed)
        self.module = VARIANTS[name](cfg, special)
        if compile_mode:
            self.module.compile_mode = compile_mode
        default = "reduce-overhead" if device.type == "cuda" else "default"
        self.compile_mode = (self.module.compile_mode or default) if cfg.train.compile else ""
        if data is not None and hasattr(self.module, "on_data"):
            self.module.on_data(data)
        if not getattr(self.module, "automatic_optimization", True):
            raise NotImplementedError(f"variant {name} optimises manually; the benchmark drives automatic ones")
        self.module.to(device).train()
        opt = self.module.configure_optimizers()
        optimizer = opt["optimizer"] if isinstance(opt, dict) else opt
        schedule = opt.get("lr_scheduler") if isinstance(opt, dict) else None
        schedule = schedule["scheduler"] if isinstance(schedule, dict) else schedule
        self.setup_optimizer(optimizer, schedule, self.module.parameters())

    def loss(self, batch):
        return self.module.loss_step(batch)

    def eager_loss(self, batch):
        return self.module.masked_objective(batch)["loss"]

    def paper_flops_per_step(self) -> float:
        return self.module.paper_flops_per_step()


class PlainRunner(Runner):
    implementation = "plain-transformers"

    def __init__(self, cfg: Config, special: SpecialIds, device: torch.device, precision: str,
                 compile_mode: str | None = None):
        super().__init__(cfg, device, precision)
        m, vocab = cfg.model, special.vocab_size
        self.special = special
        torch.manual_seed(cfg.train.seed)
        self.discriminator = build_discriminator(m, vocab)
        self.generator = build_mlm(generator_shape(m), m, vocab)
        share_weights(self.generator, self.discriminator, "embeddings")
        self.model = torch.nn.ModuleDict({"generator": self.generator, "discriminator": self.discriminator})
        self.model.to(device).train()
        self.paper = electra_train_flops(self.shape(discriminator_shape(m)), self.shape(generator_shape(m)),
                                         cfg.train.batch_size, 1)
        self.setup_optimizer(*adamw(self.model.named_parameters(), cfg, device, 10**6), self.model.parameters())
        self.compile_mode = (compile_mode or "default") if cfg.train.compile else ""
        self._forward = (torch.compile(self.eager_objective, mode=self.compile_mode) if cfg.train.compile
                         else self.eager_objective)

    def shape(self, shape):
        return replace(shape, seq=self.cfg.data.max_seq_length, vocab=self.special.vocab_size)

    def eager_objective(self, batch):
        d = self.cfg.data
        masked = mask_tokens(batch["input_ids"], self.special, d.mask_prob, d.mask_token_prob)
        return plain_electra_objective(self.generator, self.discriminator, batch, masked,
                                       self.cfg.train.temperature, self.cfg.train.disc_weight)

    def loss(self, batch):
        return self._forward(batch)

    def eager_loss(self, batch):
        return self.eager_objective(batch)["loss"]

    def paper_flops_per_step(self) -> float:
        return self.paper


# --- measuring ---------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_step(runner: Runner, batch) -> tuple[float, float]:
    """(FLOPs torch counts for one eager forward + backward, bytes of tensors autograd saves for backward)."""
    params = {p.untyped_storage().data_ptr() for p in runner.params}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast(runner.device, runner.precision):
            loss = runner.eager_loss(batch)
        loss.backward()
    runner.optimizer.zero_grad(set_to_none=True)
    return float(counter.get_total_flops()), float(sum(saved.values()))


def time_steps(runner: Runner, batches: list, warmup: int, steps: int, windows: int = 3) -> dict[str, float]:
    """Warm-up (compilation included), then `steps` steps in `windows` synchronised windows: median step time.

    Peak memory is the peak allocated over warm-up and timed steps (the eager FLOP-counting step before excluded).
    """
    device = runner.device
    synchronize(device)
    if device.type == "cuda":  # the peak over warm-up too: CUDA graphs take their memory pool while recording
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(warmup):
        runner.step(batches[i % len(batches)])
    synchronize(device)
    warmup_s = time.perf_counter() - start
    windows = max(1, min(windows, steps))
    per_window = [steps // windows + (w < steps % windows) for w in range(windows)]
    step_s, done = [], warmup
    for n in per_window:
        start = time.perf_counter()
        for _ in range(n):
            runner.step(batches[done % len(batches)])
            done += 1
        synchronize(device)
        step_s.append((time.perf_counter() - start) / n)
    median = statistics.median(step_s)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    return {"step_s": median, "spread": (max(step_s) - min(step_s)) / median, "warmup_s": warmup_s,
            "peak_mem_gb": peak}


def profile_steps(runner: Runner, batches: list, steps: int = 3) -> dict:
    """Kernels per step, GPU-busy time per step (union of kernel intervals) and the kernels that take the most."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    synchronize(runner.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            runner.step(batches[i % len(batches)])
        synchronize(runner.device)
    annotations = ("Optimizer.", "## ", "ProfilerStep", "Torch-Compiled", "CompiledFunction")  # GPU-side ranges
    kernels = [e for e in prof.events() if getattr(e, "device_type", None) == DeviceType.CUDA
               and not e.name.startswith(annotations)]
    spans = sorted((e.time_range.start, e.time_range.end) for e in kernels)
    busy, end = 0.0, -math.inf
    for a, b in spans:
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


# --- the run -----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
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
                   help="profile a few steps per row for kernel counts and GPU-busy time (default on CUDA)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for benchmark.csv and benchmark.md")
    p.add_argument("--render", type=Path, default=None,
                   help="only re-render DIR/benchmark.md from DIR/benchmark.csv and DIR/provenance.json")
    p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. model.num_layers=4)")
    return p.parse_args(argv)


def ints(text: str | None) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text and text.lower() != "none" else []


def modes(choice: str) -> list[bool]:
    return {"both": [False, True], "on": [True], "off": [False]}[choice]


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.render:
        print(f"[benchmark] wrote {render(args.render)}")
        return None
    from lightning_electra.variants import VARIANTS

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
    profile = cuda if args.profile is None else args.profile
    names = [v.strip() for v in args.variants.split(",")] if args.variants else [*VARIANTS, PLAIN]
    unknown = [v for v in names if v not in VARIANTS and v != PLAIN]
    if unknown:
        raise SystemExit(f"Unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}, {PLAIN}")
    overrides = [*(SMALL_MODEL if small else []), f"data.max_seq_length={seq}", f"train.precision={precision}",
                 *args.overrides]

    data_dir = os.environ.get("DATA_DIR")
    use_corpus = args.data == "corpus" or (args.data == "auto" and bool(data_dir))
    special = special_ids(vocab_path(base.data))
    rows_needed = args.pool * max(batch_sizes + plain_sizes)
    dm = None
    if use_corpus:
        corpus_bytes = args.corpus_bytes or (500_000 if small else 4_000_000)
        cfg = load_config(args.scale, variant="electra", overrides=overrides)
        ids, dm, data_note = corpus_ids(cfg, rows_needed, corpus_bytes)
    else:
        ids, data_note = synthetic_ids(rows_needed, seq, special), "synthetic ids ([CLS] A [SEP] B [SEP], 5% padded)"

    plan = [(name, bs, compiled) for name in names if name != PLAIN for bs in batch_sizes
            for compiled in modes(compile_choice)]
    plan += [(PLAIN, bs, compiled) for bs in plain_sizes for compiled in modes(plain_compile)] if PLAIN in names \
        else []
    from lightning_electra.results import atomic_write_text, git_commit

    info = {"command": "python -m experiments.benchmark " + shlex.join(argv), "data": data_note,
            "steps": steps, "warmup": warmup, "small": small, "scale": args.scale, "seq_len": seq,
            "precision": precision, "device": device_name(device), "host": platform.machine(),
            "cpu_count": os.cpu_count(), "commit": git_commit(), "versions": versions(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    print(f"[benchmark] {len(plan)} rows on {info['device']} ({precision}, seq {seq}); data: {data_note}", flush=True)
    rows, failures, profiles = [], [], []
    for name, bs, compiled in plan:
        cfg = load_config(args.scale, variant="electra" if name == PLAIN else name,
                          overrides=[*overrides, f"train.batch_size={bs}", f"train.compile={compiled}"])
        label = f"{name} batch {bs} {'compiled' if compiled else 'eager'}"
        mode = args.plain_compile_mode if name == PLAIN else args.compile_mode
        result = measure_row(name, cfg, special, device, precision, dm, ids, bs, args.pool, warmup, steps,
                             profile and cuda, mode, failures, label)
        if result is None and compiled and name != PLAIN and (mode or "reduce-overhead") == "reduce-overhead" \
                and cuda:  # CUDA graphs failed: measure the plain compiled step instead, and say so
            result = measure_row(name, cfg, special, device, precision, dm, ids, bs, args.pool, warmup, steps,
                                 profile and cuda, "default", failures, label + " (mode default)")
        if result is None:
            continue
        flops, saved, timing, prof, paper, used_mode, dynamo = result
        tokens = bs * seq
        step_s = timing["step_s"]
        peak_flops, _ = device_peaks(info["device"]) if cuda else (None, None)
        row = {"variant": "electra" if name == PLAIN else name,
               "implementation": PlainRunner.implementation if name == PLAIN else SuiteRunner.implementation,
               "compiled": compiled, "device": info["device"], "precision": precision, "batch_size": bs,
               "seq_len": seq, "tokens_per_s": tokens / step_s, "step_ms": step_s * 1e3,
               "paper_flops_per_s": paper / step_s, "measured_flops_per_s": flops / step_s,
               "mfu": flops / step_s / peak_flops if peak_flops else math.nan, "peak_mem_gb": timing["peak_mem_gb"],
               "warmup_s": timing["warmup_s"], "step_ms_spread": timing["spread"],
               "measured_flops_per_step": flops, "paper_flops_per_step": paper,
               "saved_bytes_per_token": saved / tokens, "kernels_per_step": prof.get("kernels_per_step", math.nan),
               "gpu_busy_ms": prof.get("gpu_busy_ms", math.nan), "compile_mode": used_mode, **dynamo,
               "top_kernels": ";".join(f"{n.replace(';', ',')}:{share:.4f}" for n, share in prof.get("top", []))}
        rows.append(row)
        if prof.get("text"):
            profiles.append(f"=== {label} ({used_mode or 'eager'}): {row['step_ms']:.1f} ms/step, GPU busy "
                            f"{prof['gpu_busy_ms']:.1f} ms, {prof['kernels_per_step']:.0f} kernels/step, dynamo {dynamo}"
                            f"\n{prof['text']}\n")
            atomic_write_text(args.out / "profiles.txt", "\n".join(profiles))
        print(f"[benchmark] {label}{f' ({used_mode})' if used_mode else ''}: {row['tokens_per_s'] / 1e6:.3f}M "
              f"tokens/s, {row['step_ms']:.1f} ms/step, warm-up {row['warmup_s']:.1f}s"
              + (f", MFU {row['mfu']:.3f}" if peak_flops else "")
              + (f", GPU busy {row['gpu_busy_ms'] / row['step_ms']:.0%}" if prof else "")
              + (f", dynamo {dynamo}" if compiled else ""), flush=True)
        write_outputs(rows, failures, info, args.out)
    frame = write_outputs(rows, failures, info, args.out)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(frame[COLUMNS[:13]].to_string(index=False), flush=True)
    return frame


def measure_row(name, cfg, special, device, precision, dm, ids, bs, pool, warmup, steps, profile, mode, failures,
                label):
    """(FLOPs, saved bytes, timing, profile, paper FLOPs, compile mode, dynamo counts) of one row; None if it failed."""
    from torch._dynamo.utils import counters

    runner = None
    try:
        torch._dynamo.reset()  # each row compiles afresh: no cache limits, no dynamic-shape recompiles
        counters.clear()
        runner = (PlainRunner(cfg, special, device, precision, mode) if name == PLAIN
                  else SuiteRunner(name, cfg, special, device, precision, data=dm, compile_mode=mode))
        batches = [{k: v.to(device) for k, v in batch_from_ids(ids[i * bs:(i + 1) * bs], special).items()}
                   for i in range(pool)]
        flops, saved = count_step(runner, batches[0])
        timing = time_steps(runner, batches, warmup, steps)
        dynamo = {"graphs": counters["stats"]["unique_graphs"],
                  "graph_breaks": sum(counters["graph_break"].values()),
                  "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}
        prof = profile_steps(runner, batches) if profile else {}
        return flops, saved, timing, prof, runner.paper_flops_per_step(), runner.compile_mode, dynamo
    except Exception as err:  # a row that fails (out of memory, a compiler error) leaves the others standing
        traceback.print_exc()
        failures.append(f"{label}: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}")
        return None
    finally:
        del runner
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


# --- the report --------------------------------------------------------------------------------------------------
def versions() -> str:
    import lightning
    import transformers

    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    return (f"python {platform.python_version()}, torch {torch.__version__}{cuda}, transformers "
            f"{transformers.__version__}, lightning {lightning.__version__}")


def fmt(x, spec: str, scale: float = 1.0) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x / scale, spec)


def busy_share(r) -> float:
    return r.gpu_busy_ms / r.step_ms if r.gpu_busy_ms == r.gpu_busy_ms else math.nan


def table(frame: pd.DataFrame) -> list[str]:
    lines = ["| variant | implementation | compiled | batch | tokens/s | step ms | paper TFLOP/s | measured TFLOP/s "
             "| MFU | peak GB | warm-up s | GPU busy | vs plain eager |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    plain = frame[(frame.implementation == PlainRunner.implementation) & ~frame.compiled.astype(bool)]
    for r in frame.itertuples():
        same = plain[plain.batch_size == r.batch_size]
        ref = same if len(same) else plain
        ratio = f"{r.tokens_per_s / ref.tokens_per_s.iloc[0]:.2f}x" if len(ref) else ""
        busy = fmt(100 * busy_share(r), ".0f") + ("%" if busy_share(r) == busy_share(r) else "")
        compiled = f"yes ({r.compile_mode})" if r.compiled else "no"
        lines.append(f"| {r.variant} | {r.implementation} | {compiled} | {r.batch_size} "
                     f"| {fmt(r.tokens_per_s, ',.0f')} | {fmt(r.step_ms, '.1f')} "
                     f"| {fmt(r.paper_flops_per_s, '.3g', 1e12)} | {fmt(r.measured_flops_per_s, '.3g', 1e12)} "
                     f"| {fmt(r.mfu, '.3f')} | {fmt(r.peak_mem_gb, '.2f')} | {fmt(r.warmup_s, '.1f')} | {busy} "
                     f"| {ratio} |")
    return lines


def bounds(frame: pd.DataFrame, device: str) -> list[str]:
    """Per-token work and traffic of the fastest suite ELECTRA row (or the fastest row), against the device."""
    suite = frame[(frame.variant == "electra") & (frame.implementation == SuiteRunner.implementation)]
    r = frame.loc[(suite if len(suite) else frame).tokens_per_s.idxmax()]
    tokens = r.batch_size * r.seq_len
    peak_flops, bandwidth = device_peaks(device) if "cpu" not in device else (None, None)
    m_tok, p_tok = r.measured_flops_per_step / tokens, r.paper_flops_per_step / tokens
    act = 2 * r.saved_bytes_per_token  # written by the forward, read back by the backward
    how = f"compiled, {r.compile_mode}" if r.compiled else "eager"
    lines = [f"Fastest suite row of `{r.variant}`: batch {r.batch_size}, {how}: {r.tokens_per_s:,.0f} tokens/s, "
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
                ", ".join(f"{h.variant}/{h.implementation} batch {h.batch_size} "
                          f"{('compiled ' + h.compile_mode) if h.compiled else 'eager'} ({busy_share(h):.0%})"
                          for h in host.itertuples()) or "none") + ".")
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


def render(out: Path) -> Path:
    """benchmark.md from benchmark.csv and provenance.json in `out` (no measuring)."""
    import json

    from lightning_electra.results import atomic_write_text

    frame = pd.read_csv(out / "benchmark.csv")
    info = json.loads((out / "provenance.json").read_text())
    md = ["# Pre-training throughput", "",
          f"ELECTRA-Small shapes (scale `{info['scale']}`)" + (" shrunk to 2 x 64 (--small)" if info["small"] else "")
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
           "* Step: masking on the device + the objective (through torch.compile when compiled), backward, "
           "gradient clipping, AdamW (fused on CUDA) and the schedule, as Lightning's automatic optimisation runs "
           "them; batches already on the device. The plain baseline: transformers' ElectraForMaskedLM + "
           "ElectraForPreTraining, tied embeddings, full-vocabulary generator logits, the models' own losses.",
           "* benchmark.csv also holds: measured and paper FLOPs per step, saved-tensor bytes per token (autograd's "
           "saved tensors in one eager step), kernels and GPU-busy ms per step (profiler), the compile mode, "
           "dynamo's graph and graph-break counts and CUDA-graph skips, step_ms_spread ((max - min) / median over "
           "the windows); profiles.txt (GPU runs) the kernels and host-side ops of each row.", ""]
    atomic_write_text(out / "benchmark.md", "\n".join(md))
    return out / "benchmark.md"


def write_outputs(rows: list[dict], failures: list[str], info: dict, out: Path) -> pd.DataFrame:
    import json

    from lightning_electra.results import atomic_write_text

    frame = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write_text(out / "benchmark.csv", frame.to_csv(index=False))
    atomic_write_text(out / "provenance.json", json.dumps({**info, "failures": failures, "notes": []}, indent=1))
    render(out)
    return frame


if __name__ == "__main__":
    main()
