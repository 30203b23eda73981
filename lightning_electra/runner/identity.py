"""A run's identity: the hashes that key its directory and results, and the layout of that directory.

    <results_dir>/<sweep>/<scale>/<run>-<pre-training hash>/
        config.yaml  pretrain/{last.ckpt,logs/,tensorboard/}  pretrain.json  (two-stage: pretrain-stage1/, -stage2/)
        checkpoints/step-0000123/{config.json,model.safetensors,meta.json}
        finetune/<fine-tuning hash>/step-0000123/<task>-<data digest>-seed<k>.json   results-<config hash>.csv

The directory is keyed by what pre-training depends on, and fine-tunes by what they depend on, so changing a
fine-tuning setting never re-trains and asking for more seeds or tasks re-uses the fine-tunes already done. What a
file holds, not where it lies, is part of the key: the vocabulary's and the corpus's contents, each GLUE task's
files.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_electra.config import Config, ConfigError, flatten, to_dict
from lightning_electra.data.files import corpus_sources, data_file, vocab_path
from lightning_electra.data.glue_tasks import TASKS, task_file
from lightning_electra.io import file_digest
from lightning_electra.objectives import OBJECTIVES, section

# Keys that change where or how fast a run goes, not what it computes: left out of the config hash.
RUNTIME_KEYS = {"results_dir", "data.data_dir", "data.cache_dir", "data.num_workers", "train.accelerator",
                "train.devices", "train.num_nodes", "train.strategy", "train.max_device_batch",
                "train.log_every_n_steps", "train.compile", "train.step_graph", "train.loggers",
                "finetune.eval_batch_size", "finetune.step_graph"}

# Fine-tuning keys that choose which results exist, not what any one of them is: more seeds or tasks reuse the rest.
SELECTION_KEYS = {"finetune.seeds", "finetune.tasks"}


def _hash(flat: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:10]

# Switches added after results existed: out of the hashes while they keep this value (the behaviour before they
# existed), so adding one never moves existing runs. Emptied when the paper-fidelity protocol moved every hash.
LATER_SWITCHES: dict[str, Any] = {"finetune.length_buckets": []}


def protocol_fixes(cfg: Config) -> dict[str, str]:
    """Fixes of the protocol made after results existed, keyed into the hashes of exactly the runs whose computation
    they change (a `finetune.` key moves only fine-tuning), so those re-run and no other result moves."""
    fixes = {}
    if cfg.model.tie == "none" and cfg.model.generator_fraction == 1.0 and cfg.model.generator == "learned":
        fixes["model.untied_generator_embedding"] = "own-width"  # was D's embedding size (issue 31)
    if not cfg.finetune.official_layer_decay:
        fixes["finetune.layer_decay_scheme"] = "top-layer-decayed"  # the top layer had the head's full lr (issue 31)
    return fixes


def _results_keys(cfg: Config) -> dict[str, Any]:
    # an objective's options are out of every other objective's hashes, so changing one never moves other runs
    others = {section(variant) for variant in OBJECTIVES} - {section(cfg.variant)}
    keys = {k: v for k, v in flatten(to_dict(cfg)).items() if k not in RUNTIME_KEYS
            and k.split(".")[0] not in others and not (k in LATER_SWITCHES and v == LATER_SWITCHES[k])}
    keys.update(protocol_fixes(cfg))
    # what the vocabulary and the corpus hold, not where they lie; a file not there is named instead (a run refuses
    # it before any work)
    keys["data.vocab"] = contents(lambda: vocab_path(cfg.data), cfg.data.vocab)
    try:
        sources = corpus_sources(cfg.data)
    except ConfigError:
        sources = cfg.data.corpus
    keys["data.corpus"] = [source if source.startswith("hub:") else contents(lambda: data_file(cfg.data, source),
                                                                             source) for source in sources]
    return keys


def contents(locate, name: str) -> str:
    try:
        return "sha256:" + file_digest(locate())
    except (ConfigError, OSError):
        return name


def config_hash(cfg: Config) -> str:
    """A short hash of everything that changes a run's results (not where it runs or where files go), the contents of
    the vocabulary, the corpus and the GLUE files fine-tuned on included."""
    return run_hashes(cfg)[2]


def pretrain_hash(cfg: Config) -> str:
    """What pre-training depends on: the run directory's key, so fine-tuning changes never re-train."""
    return run_hashes(cfg)[0]


def finetune_hash(cfg: Config) -> str:
    """What one fine-tuning result depends on (the protocol), not which seeds or tasks are asked for."""
    return run_hashes(cfg)[1]


def run_hashes(cfg: Config) -> tuple[str, str, str, dict[str, str]]:
    """(pre-training hash, fine-tuning hash, config hash, each GLUE task's digest), from one reading of the config and
    the files. Seeds trained as one batched ensemble share their random draws, so there the number of seeds is
    protocol too."""
    keys = _results_keys(cfg)
    glue = {task: glue_digest(cfg, task) for task in cfg.finetune.tasks}
    selection = SELECTION_KEYS - ({"finetune.seeds"} if cfg.finetune.batched_seeds else set())
    return (_hash({k: v for k, v in keys.items() if not k.startswith("finetune.")}),
            _hash({k: v for k, v in keys.items() if k.startswith("finetune.") and k not in selection}),
            _hash({**keys, **{f"glue.{task}": digest for task, digest in glue.items()}}), glue)


def glue_digest(cfg: Config, task: str) -> str:
    """What a GLUE task's results depend on beyond the config: its files' contents (from the hub: 'hub')."""
    if cfg.finetune.source == "hub":
        return "hub"
    files = [task_file(cfg.data.data_dir, TASKS[task], split) for split in ("train", *TASKS[task].dev_splits)]
    return hashlib.sha256(" ".join(file_digest(f) if f.is_file() else "-" for f in files).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunLayout:
    """Where one run keeps what it makes (see the module docstring)."""

    root: Path

    @classmethod
    def of(cls, cfg: Config, sweep: str, pretrain_key: str | None = None) -> "RunLayout":
        return cls(Path(cfg.results_dir) / sweep / cfg.scale / f"{cfg.name}-{pretrain_key or pretrain_hash(cfg)}")

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def summary(self) -> Path:
        """pretrain.json: written once pre-training is over, it marks it done."""
        return self.root / "pretrain.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def stage_dir(self, stage: int, stages: int) -> Path:
        return self.root / ("pretrain" if stages == 1 else f"pretrain-stage{stage}")

    @staticmethod
    def stage_of(stage_dir: Path) -> int:
        """The stage a stage directory belongs to (the inverse of `stage_dir`)."""
        match = re.fullmatch(r"pretrain-stage(\d+)", stage_dir.name)
        return int(match.group(1)) if match else 1

    def fit_label(self, stage_dir: Path) -> str:
        """A fit's name for loggers that name runs (W&B): <sweep>/<run>-<hash>[/pretrain-stage<k>]."""
        return f"{self.root.parent.parent.name}/{self.root.name}" + ("" if stage_dir.name == "pretrain"
                                                                      else f"/{stage_dir.name}")

    def last_checkpoints(self) -> list[Path]:
        """Every stage's last.ckpt, first stage first."""
        return sorted(self.root.glob("pretrain*/last.ckpt"), key=lambda p: self.stage_of(p.parent))

    @staticmethod
    def step_name(step: int) -> str:
        return f"step-{step:07d}"

    def step_dirs(self) -> list[Path]:
        """The saved encoders, in step order."""
        return sorted(p for p in self.checkpoints.glob("step-*") if p.name[5:].isdigit())
