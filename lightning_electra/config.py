"""The typed configuration schema: dataclasses with the paper's defaults, a comment on every field, and the checks
of each field's own values. Loading, layering and hashing configs is the runner's (lightning_electra/runner/).

Nothing here imports torch, so a config is checked in a fraction of a second, before any heavy import.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, Optional

from omegaconf import OmegaConf

from lightning_electra.errors import SuiteError
from lightning_electra.objectives import OBJECTIVES

GLUE_TASKS = ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE"]  # the eight scored tasks (no WNLI)


class ConfigError(SuiteError, ValueError):
    """A configuration the suite cannot run, with what is wrong and how to fix it."""


def env_count(variable: str, key: str, default: int = 1) -> int:
    """A count a launcher sets in the environment (NUM_NODES under SLURM), read when a config is made."""
    raw = os.environ.get(variable, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{variable}='{raw}' in the environment sets '{key}', which takes a whole number (e.g. "
                          f"{variable}=2); fix or unset {variable}.") from None


class Choice(str, Enum):
    """A string option of the schema (its members' names are its values): any other value is refused when a config
    is composed, with the valid ones named. It is its plain string everywhere else: compared, printed, written to
    YAML and hashed as one, so typing a key moves no result."""

    __str__, __format__, __repr__ = str.__str__, str.__format__, str.__repr__

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


def choice(name: str, values: list[str], module: str = __name__) -> type[Choice]:
    """A Choice named `name` in `module` (where pickle finds it), whose values need not be Python names."""
    return Choice(name, [(value, value) for value in values], module=module)  # type: ignore[return-value]


GeneratorKind = choice("GeneratorKind", ["learned", "unigram", "uniform"])
Tie = choice("Tie", ["none", "embeddings", "all", "gdes"])
HeadInit = choice("HeadInit", ["glorot", "normal"])
GlueSource = choice("GlueSource", ["files", "hub"])
Logger = choice("Logger", ["csv", "tensorboard", "wandb"])

# A numeric key's valid range, beside its field (`ranged`): an interval (low, high, brackets); None: unbounded. A null
# value of an Optional key is always allowed.
COUNT, SHARE, POSITIVE, NON_NEGATIVE = (1, None, "[)"), (0, 1, "[)"), (0, None, "()"), (0, None, "[)")
PROBABILITY, SEQUENCE, FRACTION = (0, 1, "[]"), (5, None, "[)"), (0, 1, "(]")  # SEQUENCE: [CLS] A [SEP] B [SEP]


def ranged(default: Any, bounds: tuple[float | None, float | None, str], factory: bool = False) -> Any:
    """A field whose values must lie in `bounds` (checked by `check`, listed in RANGES); `factory`: `default` is
    called for the value when a config is made."""
    if factory:
        return field(default_factory=default, metadata={"range": bounds})
    return field(default=default, metadata={"range": bounds})


@dataclass
class ModelConfig:
    """Discriminator shape (the generator's is derived from it) and how G and D share weights."""

    hidden_size: int = ranged(256, COUNT)
    num_layers: int = ranged(12, COUNT)
    num_heads: int = ranged(4, COUNT)
    intermediate_size: int = ranged(1024, COUNT)
    embedding_size: int = ranged(128, COUNT)
    # G has D's depth and this fraction of its width (hidden, FFN = 4 x hidden, heads = max(1, hidden / 64)).
    generator_fraction: float = ranged(0.25, FRACTION)
    # learned: an MLM transformer; unigram: corpus token frequencies; uniform: the official code's uniform sampler.
    generator: GeneratorKind = GeneratorKind("learned")
    # none | embeddings (token, position, type embeddings + their LayerNorm) | all (every encoder weight) |
    # gdes (beyond the paper, DeBERTa-v3's gradient-disentangled sharing: each of D's embedding weights is
    # stop_gradient(G's) + a zero-initialised residual that only D's loss trains; G's learn from the MLM loss alone)
    tie: Tie = Tie("embeddings")
    dropout: float = ranged(0.1, SHARE)
    attention_dropout: float = ranged(0.1, SHARE)
    max_position_embeddings: int = ranged(512, COUNT)

    def check(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads="
                              f"{self.num_heads}; pick heads that divide the hidden size (the paper uses hidden / 64).")
        if self.tie == "all" and self.generator_fraction != 1.0:
            raise ConfigError(f"model.tie=all shares every encoder weight, so G and D must be the same size; got "
                              f"model.generator_fraction={self.generator_fraction}. Set model.generator_fraction=1.0 "
                              "or model.tie=embeddings.")


@dataclass
class DataConfig:
    """Where the corpus and vocabulary are, how examples are packed and masked."""

    data_dir: str = "${oc.env:DATA_DIR,data}"
    # Paths relative to data_dir (plain, .xz or .gz text: one paragraph a line, blank line between documents),
    # or `hub:<dataset>[:<config>]` for a Hugging Face dataset with a `text` column (needs network).
    corpus: list[str] = field(default_factory=lambda: ["corpus/sample-20mb.txt.xz"])
    # Read at most this many bytes of raw text from the corpus (null: all of it). Small scales read a prefix.
    max_corpus_bytes: Optional[int] = ranged(None, COUNT)
    # bert-base-uncased: BERT's uncased WordPiece vocabulary (30,522 tokens), shipped with the package (Apache-2.0);
    # or a vocab.txt path, relative to data_dir or absolute. Its contents, not its path, are part of the run's hash.
    vocab: str = "bert-base-uncased"
    max_seq_length: int = ranged(128, SEQUENCE)
    single_segment_prob: float = ranged(0.1, PROBABILITY)  # official: 10% of examples keep every sentence in segment A
    short_seq_prob: float = ranged(0.05, PROBABILITY)  # official: 5% of examples aim at a random shorter length
    mask_prob: float = 0.15
    mask_token_prob: float = 0.85  # of the chosen positions, the share set to [MASK] (official code: 85%)
    # of the chosen positions, the share set to a random token (the rest stay unchanged). The official code has
    # none; BERT's own masking (80% [MASK], 10% random, 10% kept) is set in variants/bert.yaml, as the paper states
    random_token_prob: float = 0.0
    cache_dir: str = ".cache"  # packed corpora and tokenised GLUE splits, keyed by what they are made from
    num_workers: int = ranged(0, NON_NEGATIVE)
    seed: int = 0  # packing randomness (sentence split points, short targets)

    def check(self) -> None:
        if not self.corpus:
            raise ConfigError("data.corpus must name at least one corpus file (or hub:<dataset>).")
        if not 0 < self.mask_prob < 1 or not 0 <= self.mask_token_prob <= 1 or not 0 <= self.random_token_prob <= 1 \
                or self.mask_token_prob + self.random_token_prob > 1:
            raise ConfigError(f"data.mask_prob must be in (0, 1), and data.mask_token_prob and "
                              "data.random_token_prob shares of the chosen positions in [0, 1] with a sum of at most "
                              f"1; got {self.mask_prob}, {self.mask_token_prob} and {self.random_token_prob}.")


@dataclass
class TrainConfig:
    """Pre-training optimisation (paper section 7 defaults) and the budget."""

    # Global: split over devices x nodes (each gets batch_size / (devices * num_nodes)), so a sweep means the same
    # on 1 or 8 GPUs. When that share exceeds max_device_batch, gradients accumulate over equal micro-batches.
    batch_size: int = ranged(128, COUNT)
    # the most examples one device takes per forward (null: no limit)
    max_device_batch: Optional[int] = ranged(None, COUNT)
    # The budget: paper-convention FLOPs from which each variant derives its own steps (so BERT takes more steps than
    # ELECTRA for the same compute, as in the paper), or, when set, a fixed step count that overrides it (split
    # evenly over the stages of a multi-stage variant). Scales set a FLOPs budget; set train.steps to override it.
    steps: Optional[int] = ranged(None, COUNT)
    flops_budget: Optional[float] = ranged(None, POSITIVE)
    lr: float = ranged(5e-4, POSITIVE)
    warmup_fraction: float = ranged(0.01, SHARE)  # the paper's 10k of 1M steps, for scales shorter than the paper's
    # a fixed warm-up instead of the fraction (official: 10,000; small, base)
    warmup_steps: Optional[int] = ranged(None, NON_NEGATIVE)
    # false: the official optimiser, Adam without bias correction (update = m / (sqrt(v) + eps)); true: torch's AdamW
    adam_bias_correction: bool = False
    weight_decay: float = ranged(0.01, NON_NEGATIVE)
    adam_eps: float = ranged(1e-6, POSITIVE)
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = ranged(1.0, NON_NEGATIVE)
    disc_weight: float = ranged(50.0, NON_NEGATIVE)  # lambda in L_MLM + lambda * L_Disc
    temperature: float = ranged(1.0, POSITIVE)  # generator sampling temperature
    checkpoint_fractions: list[float] = field(default_factory=lambda: [0.0625, 0.125, 0.25, 0.5, 1.0])
    precision: str = "32-true"
    compile: bool = False
    # a speed switch on one GPU: the whole step (masking, forward, backward, clipping, the update) replayed as one
    # CUDA graph, for small models whose step the host's launches would otherwise pace (lightning_electra/step_graph.py)
    step_graph: bool = False
    seed: int = 0
    accelerator: str = "auto"
    devices: str = "${oc.env:DEVICES,auto}"  # per node: a count, a list (0,1) or auto (every GPU; 1 on CPU)
    num_nodes: int = ranged(lambda: env_count("NUM_NODES", "train.num_nodes"), COUNT, factory=True)  # machines
    strategy: str = "auto"  # Lightning's: auto (ddp when more than one device), ddp, fsdp (GPU only), ...
    log_every_n_steps: int = ranged(25, COUNT)
    # Where pre-training metrics go: csv (pretrain/logs/metrics.csv) is always written, whatever this says;
    # tensorboard (pretrain/tensorboard/); wandb (opt-in: needs `pip install wandb` and a login or WANDB_MODE=offline).
    loggers: list[Logger] = field(default_factory=lambda: [Logger("csv"), Logger("tensorboard")])

    def check(self) -> None:
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f"train.adam_betas must be two values in [0, 1); got {self.adam_betas}.")
        if self.steps is None and self.flops_budget is None:
            raise ConfigError("Set a pre-training budget: train.steps=N or train.flops_budget=F (paper-convention "
                              "FLOPs).")
        if not self.checkpoint_fractions or any(not 0 < f <= 1 for f in self.checkpoint_fractions):
            raise ConfigError("train.checkpoint_fractions must hold at least one fraction of the budget to fine-tune "
                              f"at, each in (0, 1]; got {self.checkpoint_fractions}.")
        check_step_graph("train", self)
        if "wandb" in self.loggers and importlib.util.find_spec("wandb") is None:  # before any work, not at fit
            raise ConfigError("train.loggers includes wandb, which is not installed: `pip install wandb`, or leave it "
                              "out (train.loggers=[csv,tensorboard]).")


@dataclass
class FinetuneConfig:
    """GLUE fine-tuning under the paper's protocol (notes section 5; Small defaults)."""

    tasks: list[str] = field(default_factory=lambda: list(GLUE_TASKS))
    # files: <data_dir>/glue/<TASK>/*.tsv; hub: nyu-mll/glue through `datasets` (online)
    source: GlueSource = GlueSource("files")
    seeds: int = ranged(3, COUNT)  # fine-tuning seeds per checkpoint; the median is kept (the paper uses 10)
    lr: float = ranged(3e-4, POSITIVE)
    # layer k of L gets lr * decay^(L + 1 - k); embeddings lowest, head full lr
    layer_decay: float = ranged(0.8, FRACTION)
    # true: the official code's off-by-one, which ran the paper (every layer one step lower: the top layer gets
    # lr * decay^2; google-research/electra issue 51); false: the intended decay (top layer lr * decay, embeddings
    # lr * decay^(L + 1))
    official_layer_decay: bool = True
    warmup_fraction: float = ranged(0.1, SHARE)
    # true: the official lr * min(1, step / warmup) * (1 - step / total), peaking at 0.9 x lr; false: the decay starts
    # after the warm-up
    warmup_overlaps_decay: bool = True
    # 0, as the paper's fine-tuning table gives it (the official configure_finetuning.py sets 0.01)
    weight_decay: float = ranged(0.0, NON_NEGATIVE)
    adam_eps: float = ranged(1e-6, POSITIVE)
    adam_bias_correction: bool = False  # false: the official optimiser (no bias correction); true: torch's AdamW
    # MRPC and STS-B train on both sentence orders (official double_unordered: the train split doubled, swapped)
    double_unordered: bool = True
    # STS-B's 0-5 scores divided by 5 for the regression loss, as the official reader does (Spearman and Pearson
    # are unchanged by the scale)
    scale_regression_targets: bool = True
    # the classifier's initialisation: glorot (tf.layers.dense's default, which the official head uses) | normal
    # (transformers' initializer_range, 0.02)
    head_init: HeadInit = HeadInit("glorot")
    batch_size: int = ranged(32, COUNT)
    # dev sets in batches of this many (null: finetune.batch_size); a GPU evaluates far more at once
    eval_batch_size: Optional[int] = ranged(None, COUNT)
    max_seq_length: int = ranged(128, SEQUENCE)
    # [] : batches drawn at random and padded to their longest. Widths (e.g. [16, 32, 64]): each example goes to the
    # smallest that holds it (finetune.max_seq_length always last), each training batch is drawn from one such
    # bucket and padded to its width: a few static shapes and little padding (SST-2's sentences are ~13 tokens);
    # dev sets in length order. Other batches than the official random ones (lightning_electra/finetune/data.py)
    length_buckets: list[int] = field(default_factory=list)
    epochs: int = ranged(3, COUNT)
    task_epochs: dict[str, int] = field(default_factory=lambda: {"RTE": 10, "STS-B": 10})
    dropout: float = ranged(0.1, SHARE)
    max_train_examples: Optional[int] = ranged(None, COUNT)  # cap per task (small scales)
    max_eval_examples: Optional[int] = ranged(None, COUNT)
    precision: str = "32-true"
    # Train the seeds of a task together as one batched ensemble (torch.func.vmap over stacked weights): the same
    # protocol, S times larger matmuls; other random draws than one-by-one fine-tunes (see lightning_electra/finetune/ensemble.py)
    batched_seeds: bool = False
    # a speed switch on a GPU: the batched seeds' whole step (forward, backward, per-seed clipping, the update) as one
    # CUDA graph per batch shape (lightning_electra/step_graph.py); needs batched_seeds and length_buckets
    step_graph: bool = False

    def check(self) -> None:
        known = GLUE_TASKS + ["WNLI"]
        if not self.tasks:
            raise ConfigError("finetune.tasks must name at least one GLUE task.")
        unknown = [t for t in [*self.tasks, *self.task_epochs] if t not in known]
        if unknown:
            raise ConfigError(f"Unknown GLUE task(s) {unknown}. Known: {', '.join(known)}.")
        bad_epochs = {task: n for task, n in self.task_epochs.items() if n < 1}
        if bad_epochs:
            raise ConfigError(f"finetune.task_epochs must give each task at least 1 epoch; got {bad_epochs}.")
        if any(w < 1 for w in self.length_buckets) or self.length_buckets != sorted(set(self.length_buckets)):
            raise ConfigError("finetune.length_buckets must be increasing positive widths, e.g. [16, 32, 64]; got "
                              f"{self.length_buckets}.")
        check_step_graph("finetune", self)
        if self.step_graph and not (self.batched_seeds and self.length_buckets):
            raise ConfigError("finetune.step_graph replays the batched seeds' step over a few shapes: it needs "
                              "finetune.batched_seeds=true and finetune.length_buckets (e.g. [16,32,64]); got "
                              f"batched_seeds={self.batched_seeds}, length_buckets={self.length_buckets}. Set those, "
                              "or finetune.step_graph=false.")


@dataclass
class Config:
    name: str = "run"  # the run's name inside its sweep
    # the pre-training objective (lightning_electra/objectives/); its own options are the section named after it, which
    # the runner's schema adds (lightning_electra/runner/configs.py: `schema`)
    variant: str = "electra"
    scale: str = "auto"  # configs/scales/<scale>.yaml (smoke, cpu, tiny, ...); auto: smoke without a GPU, tiny with one
    results_dir: str = "results"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def ranges(schema: type = Config) -> dict[str, tuple[float | None, float | None, str]]:
    """Every ranged key of a schema (its sections' `ranged` fields), e.g. "train.lr": POSITIVE."""
    sections = {f.name: f.default_factory for f in fields(schema) if is_dataclass(f.default_factory)}
    return {f"{name}.{f.name}": f.metadata["range"] for name, cls in sections.items() for f in fields(cls)
            if "range" in f.metadata}


RANGES = ranges()  # the core schema's; an objective's options add their own (`ranges` of the runner's schema)


def out_of_range(key: str, value: Any, bounds: dict | None = None) -> str | None:
    """What is wrong with `value` for `key` (None: nothing), naming the valid range (`bounds`: RANGES)."""
    bounds = RANGES if bounds is None else bounds
    if key not in bounds or value is None or isinstance(value, bool):
        return None
    low, high, (left, right) = bounds[key]
    inside = ((low is None or value > low or (value == low and left == "["))
              and (high is None or value < high or (value == high and right == "]")))
    if inside:
        return None
    if high is None:
        return f"{key} must be {'at least' if left == '[' else 'above'} {low:g}; got {value}"
    return f"{key} must lie in {left}{low:g}, {high:g}{right}; got {value}"


def check(cfg: Config) -> None:
    """Checks that types alone cannot express (a variant's own are its `check_config`): the variant among the known
    ones, every value in its range, then each section's own rules (its `check`) and the rules across sections."""
    if cfg.variant not in OBJECTIVES:
        close = difflib.get_close_matches(cfg.variant, OBJECTIVES, n=3)
        raise ConfigError(f"Unknown variant '{cfg.variant}'. Known: {', '.join(OBJECTIVES)}."
                          + (f" Did you mean {close[0]}?" if close else ""))
    flat, bounds = flatten(to_dict(cfg)), ranges(type(cfg))
    wrong = [problem for key, value in flat.items() if (problem := out_of_range(key, value, bounds))]
    if wrong:
        raise ConfigError("Out-of-range config value(s): " + "; ".join(wrong) + ".")
    for section in (cfg.model, cfg.data, cfg.train, cfg.finetune):
        section.check()
    if cfg.data.max_seq_length > cfg.model.max_position_embeddings:  # else an index error deep in the embeddings
        raise ConfigError(f"data.max_seq_length={cfg.data.max_seq_length} exceeds model.max_position_embeddings="
                          f"{cfg.model.max_position_embeddings}: raise the latter or shorten the sequences.")


def check_step_graph(section: str, c: TrainConfig | FinetuneConfig) -> None:
    """A step graph replays the official optimiser (no bias correction) without a gradient scaler."""
    if c.step_graph and (c.adam_bias_correction or str(c.precision).startswith("16")):
        why = (f"{section}.adam_bias_correction=true takes torch's AdamW instead" if c.adam_bias_correction
               else f"{section}.precision={c.precision} needs a gradient scaler between backward and update")
        fix = f"{section}." + ("adam_bias_correction=false" if c.adam_bias_correction else "precision=bf16-mixed")
        raise ConfigError(f"{section}.step_graph replays the official optimiser under bf16 or fp32, but {why}. "
                          f"Set {section}.step_graph=false, or {fix}.")


def to_dict(cfg: Config) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and prefix + k != "finetune.task_epochs":
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out
