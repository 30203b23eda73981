"""Measured rates behind a plan's times: a short timed fit of each run's module on the device at hand, and a GLUE
fine-tuning rate, each cached per device and code version (`<data.cache_dir>/rates.json`), so a plan measures once.

Estimates, not promises: a run's pre-training is its steps times the measured step plus the measured warm-up
(compilation), its GLUE the fine-tunes' examples times the measured rate plus a measured per-fine-tune overhead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from lightning_electra.config import Config
from lightning_electra.data.files import vocab_path
from lightning_electra.data.glue import GlueDataset
from lightning_electra.data.glue_tasks import TASKS, available_tasks, load_examples, reported_dev_splits
from lightning_electra.data.datamodule import batch_layout
from lightning_electra.data.packing import batch_from_ids, synthetic_ids
from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.finetune import train_one
from lightning_electra.finetune.classifier import quiet
from lightning_electra.finetune.ensemble import finetune_seeds
from lightning_electra.io import ROOT, write_json
from lightning_electra.models import save_random_encoder
from lightning_electra.module import lightning_gradient_clip
from lightning_electra.objectives import objective, section
from lightning_electra.runner.pretrain import build_module
from lightning_electra.timing import timed_fit

EVAL_COST = 1 / 3  # a dev example costs about a third of a training one (a forward, no backward)


@functools.cache
def code_version() -> str:
    """A digest of the package's sources: a rate measured by other code is measured again."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "lightning_electra").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def device() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__})"


class Rates:
    """The cache of measured rates, one file per cache directory."""

    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir) / "rates.json"
        self.entries = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.prefix = f"{device()}|{code_version()}"

    def get(self, key: str, measure) -> dict:
        full = f"{self.prefix}|{key}"
        if full not in self.entries:
            with quiet():
                self.entries[full] = measure()
            write_json(self.path, self.entries)
        return self.entries[full]


def step_key(cfg: Config, stage: int) -> str:
    m, d, t = cfg.model, cfg.data, cfg.train
    shape = (cfg.variant, stage, m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size, m.embedding_size,
             m.generator_fraction, m.generator, m.tie, d.max_seq_length, d.mask_prob, d.vocab, t.batch_size,
             t.max_device_batch, t.precision, t.compile, t.step_graph,
             repr(getattr(cfg, section(cfg.variant), "")))  # the objective's own options
    return "step|" + "|".join(map(str, shape))


def measure_steps(cfg: Config, stage: int, warmup: int, steps: int) -> dict:
    """Seconds a training step takes (median of synchronised windows) and the warm-up (compilation included), from
    a fit of random ids shaped like packed examples, on the device at hand."""
    accelerator = "cuda" if torch.cuda.is_available() and cfg.train.accelerator != "cpu" else "cpu"
    on = torch.device(accelerator)
    if accelerator == "cuda":
        torch.set_float32_matmul_precision("high")  # as pre-training sets it (runner.pretrain)
    if cfg.train.compile:
        torch._dynamo.reset()  # a fresh compile each measurement: no recompile limit, its warm-up measured whole
    # one device's micro-batch, as the run takes it (train.max_device_batch), times the micro-batches of a step
    micro, accumulate = batch_layout(cfg.train.batch_size, 1, cfg.train.max_device_batch)
    torch.manual_seed(0)
    module = build_module(replace(cfg, train=replace(cfg.train, batch_size=micro, max_device_batch=None)), stage=stage)
    special = module.special
    batches = [{k: v.to(on) for k, v in batch_from_ids(synthetic_ids(micro, cfg.data.max_seq_length, special,
                                                                      seed=i), special).items()} for i in range(2)]
    timing = timed_fit(module, batches, on, cfg.train.precision, lightning_gradient_clip(cfg), warmup, steps,
                       log_every_n_steps=cfg.train.log_every_n_steps).timing()
    return {"step_s": timing["step_s"] * accumulate, "warmup_s": timing["warmup_s"]}


def measure_finetune(cfg: Config) -> dict:
    """Seconds per training example of a GLUE fine-tune (train and dev) and per fine-tune besides (building the
    model and Trainer), from two short fine-tunes of a random encoder of D's shape on random sentence pairs. With
    `finetune.batched_seeds`, a fine-tune is the seeds' one ensemble, and its rates are the whole group's."""
    tokenizer = build_tokenizer(vocab_path(cfg.data))
    words = [w for w in tokenizer.get_vocab() if w.isalpha()][:2000]
    # uncaptured (finetune.step_graph off): two short fits time mostly a graph's warm-up and capture, not its
    # replays, so a graphed fine-tune's plan is this upper bound
    ft = replace(cfg.finetune, epochs=1, task_epochs={}, step_graph=False)
    spec = TASKS["RTE"]
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        save_random_encoder(cfg.model, len(tokenizer), tmp)
        for n in (ft.batch_size, 4 * ft.batch_size):
            pairs = [(" ".join(words[(i * 7 + j) % len(words)] for j in range(20)),
                      " ".join(words[(i * 11 + j) % len(words)] for j in range(20)), i % 2) for i in range(n)]
            train = GlueDataset(pairs, tokenizer, ft.max_seq_length, False)
            dev = GlueDataset(pairs[:ft.batch_size], tokenizer, ft.max_seq_length, False)
            start = time.perf_counter()
            if ft.batched_seeds:
                finetune_seeds(tmp, spec, ft, list(range(ft.seeds)), train, [dev], ["dev"], tokenizer.pad_token_id,
                               cfg.train.accelerator)
            else:
                train_one(tmp, spec, ft, 0, {"train": train, "dev": dev}, tokenizer.pad_token_id,
                          cfg.train.accelerator, 1, False)
            seconds[n] = time.perf_counter() - start
    small, large = ft.batch_size, 4 * ft.batch_size
    per_example = max(1e-6, (seconds[large] - seconds[small]) / (large - small))
    return {"per_example_s": per_example, "batched_seeds": ft.seeds if ft.batched_seeds else 0,
            "overhead_s": max(0.0, seconds[small] - small * (1 + EVAL_COST) * per_example)}


def finetune_key(cfg: Config) -> str:
    m, f = cfg.model, cfg.finetune
    return "finetune|" + "|".join(map(str, (m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size,
                                            m.embedding_size, cfg.data.vocab, f.batch_size, f.max_seq_length,
                                            f.precision, f.seeds if f.batched_seeds else 0, f.length_buckets,
                                            f.eval_batch_size)))


def estimate(cfg: Config, budget: dict, rates: Rates) -> dict:
    """A run's estimated pre-training and GLUE seconds, from its budget (runner.pretrain.budget) and measured rates."""
    cuda = torch.cuda.is_available()
    warmup, steps = (3, 10) if cuda else (2, 6)
    stages = objective(cfg.variant).stages
    pretrain = 0.0
    for stage in range(1, stages + 1):
        r = rates.get(step_key(cfg, stage), lambda: measure_steps(cfg, stage, warmup, steps))
        pretrain += budget["steps"] / stages * r["step_s"] + r["warmup_s"]
    glue = None
    if cfg.finetune.source == "files":
        tasks, _ = available_tasks(cfg.data.data_dir, cfg.finetune.tasks)
        if tasks:
            f = rates.get(finetune_key(cfg), lambda: measure_finetune(cfg))
            glue = len(budget["checkpoints"]) * sum(task_seconds(cfg, task, f) for task in tasks)
    return {"pretrain_s": pretrain, "glue_s": glue}


def task_seconds(cfg: Config, task: str, rate: dict) -> float:
    """One checkpoint's fine-tunes of one task, every seed (a batched ensemble: its seeds as one group)."""
    f, spec = cfg.finetune, TASKS[task]
    train = len(load_examples(cfg.data.data_dir, spec, "train", f.max_train_examples))
    train *= 2 if f.double_unordered and spec.unordered else 1
    dev = sum(len(load_examples(cfg.data.data_dir, spec, s, f.max_eval_examples))
              for s in reported_dev_splits(cfg.data.data_dir, spec))
    epochs = f.task_epochs.get(spec.name, f.epochs)
    work = rate["per_example_s"] * (train * epochs + EVAL_COST * dev)
    groups = 1 if rate.get("batched_seeds") else f.seeds  # a batched rate is already the seeds' group's
    return groups * (work + rate["overhead_s"])
