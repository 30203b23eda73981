"""Export a pre-training run as transformers models that anyone can load with `from_pretrained`.

    python -m lightning_electra export <checkpoint | run dir | checkpoints/step-XXXXXXX> <out dir> [key=value ...]

What is written, one directory per model, each with its tokenizer (ElectraTokenizerFast from the run's vocab):

    discriminator/  ElectraForPreTraining (encoder + replaced-token head): ELECTRA-like variants
    generator/      ElectraForMaskedLM, the small G: variants with a learned generator (two-stage's stage 1 too)
    mlm/            ElectraForMaskedLM at D's size: BERT's model, Replace-MLM's D, All-Tokens MLM's D with its MLM
                    head (its discriminator head, the copy gate, goes to discriminator/)
    encoder/        ElectraModel only: the source was a checkpoints/step-* directory, which holds no heads
    export.json     where it came from (variant, stage, step, FLOPs) and which weights were left out

Roles are named for what a model is, not for where a variant uses it: BERT's MLM is not a "generator", and a
user loading discriminator/ always gets a trained replaced-token head. A step directory is written as encoder/,
not discriminator/, since ElectraForPreTraining.from_pretrained would otherwise initialise the head at random
with only a warning. Weights with no transformers home (the adversarial baseline, a unigram sampler's
probabilities) are listed in export.json, not written.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from lightning_electra.config import Config, ConfigError, _merge, parse_overrides, pretrain_hash, vocab_path
from lightning_electra.results import write_json

ROLES = ("discriminator", "generator", "mlm", "encoder")


class ExportError(ValueError):
    """A source that cannot be exported, with what it is and what to pass instead."""


def find_source(path: Path) -> Path:
    """The file or directory to export from a checkpoint, a step directory, or a run directory.

    A run directory gives its last stage's `last.ckpt` (run.py keeps it after the run, and it is saved at the
    final step), else its latest `checkpoints/step-*` (encoder only).
    """
    if path.is_file() or (path / "config.json").is_file():
        return path
    if not (path / "config.yaml").is_file():
        raise ExportError(f"{path} is neither a Lightning checkpoint, a run directory (with config.yaml) nor a "
                          "transformers directory (with config.json).")
    stages = sorted(path.glob("pretrain*/last.ckpt"), key=lambda p: stage_of(p))
    if stages:
        return stages[-1]
    steps = sorted(p for p in (path / "checkpoints").glob("step-*") if p.name[5:].isdigit())
    if not steps:
        raise ExportError(f"Run directory {path} has no pretrain*/last.ckpt and no checkpoints/step-*: nothing "
                          "was trained yet.")
    print(f"[export] {path} has no last.ckpt; exporting the encoder of {steps[-1].name} (no heads)", flush=True)
    return steps[-1]


def stage_of(ckpt: Path) -> int:
    """A checkpoint's stage from its directory (run.py: pretrain/ for one stage, pretrain-stage<k>/ for more)."""
    match = re.fullmatch(r"pretrain-stage(\d+)", ckpt.parent.name)
    return int(match.group(1)) if match else 1


def load_run_config(path: Path | None, overrides: list[str] | None = None) -> Config:
    """A run's config.yaml over the schema (keys added since default), then overrides.

    data.data_dir is where, not what: when the saved one is gone (another machine, a relative path from another
    working directory) and no override names one, $DATA_DIR is used.
    """
    cfg = OmegaConf.structured(Config)
    if path is not None:
        cfg = _merge(cfg, OmegaConf.load(path), str(path))
    cli = parse_overrides(overrides)
    cfg = _merge(cfg, cli, "command-line overrides")
    resolved: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    moved = not Path(resolved.data.data_dir).is_dir() and "data_dir" not in cli.get("data", {})
    if moved and os.environ.get("DATA_DIR"):
        resolved.data.data_dir = os.environ["DATA_DIR"]
    return resolved


def build_tokenizer(vocab_path: Path, max_length: int) -> Any:
    """ElectraTokenizerFast (uncased WordPiece) from a vocab.txt: what `AutoTokenizer` gives back for ELECTRA."""
    from transformers import ElectraTokenizerFast

    from lightning_electra.data import glue

    return glue.build_tokenizer(vocab_path, ElectraTokenizerFast, model_max_length=max_length)


def build_module(cfg: Config, stage: int, device: str | torch.device = "cpu"):
    from lightning_electra.data.tokenizer import special_ids
    from lightning_electra.variants import VARIANTS

    if cfg.variant not in VARIANTS:
        raise ExportError(f"Unknown variant '{cfg.variant}' in the run's config. Known: {', '.join(VARIANTS)}.")
    special = special_ids(vocab_path(cfg.data))
    with torch.device(device):
        return VARIANTS[cfg.variant](cfg, special, stage=stage)


def variants_fitting(cfg: Config, state: dict[str, torch.Tensor]) -> list[str]:
    """Which variants' modules (this config's shapes otherwise) have exactly these weight names and shapes.

    Built on the meta device: no memory and no init time, even at base scale.
    """
    from dataclasses import replace

    from lightning_electra.variants import VARIANTS

    shapes = {k: tuple(v.shape) for k, v in state.items()}
    fits = []
    for name, cls in VARIANTS.items():
        for stage in range(1, cls.stages + 1):
            try:
                module = build_module(replace(cfg, variant=name), stage, device="meta")
            except (ConfigError, ValueError):
                continue
            if {k: tuple(v.shape) for k, v in module.state_dict().items()} == shapes:
                fits.append(name if cls.stages == 1 else f"{name} (stage {stage})")
    return fits


def load_module(ckpt: Path, cfg: Config, config_path: Path | None):
    """The run's module with the checkpoint's weights, strictly: a mismatch names the variant that fits."""
    stage = stage_of(ckpt)
    module = build_module(cfg, stage)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)  # a Lightning checkpoint is plain tensors/dicts
    state = saved["state_dict"]
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        fits = variants_fitting(cfg, state)
        hint = (f" Its weights fit {', '.join(fits)} with this config: it was saved by another variant than the "
                f"config names. Pass the run's own config.yaml (--config) or variant=<one of those>." if fits else
                " No variant fits it with this config: was config.yaml edited, or is it another run's?")
        raise ExportError(
            f"{ckpt} does not fit variant '{cfg.variant}'" + (f" stage {stage}" if module.stages > 1 else "")
            + f" as configured in {config_path or 'the overrides'}: {len(missing)} weight(s) missing"
            + (f" (e.g. {', '.join(missing[:2])})" if missing else "") + f", {len(unexpected)} unexpected"
            + (f" (e.g. {', '.join(unexpected[:2])})" if unexpected else "") + f", {len(reshaped)} of another shape"
            + (f" (e.g. {reshaped[0]}: {tuple(state[reshaped[0]].shape)} saved, "
               f"{tuple(expected[reshaped[0]].shape)} expected)" if reshaped else "") + "." + hint)
    module.load_state_dict(state, strict=True)
    return module.eval(), saved


def models_of(module) -> dict[str, Any]:
    """The module's transformers models, by role (see the module docstring). They share the module's tensors."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    models: dict[str, Any] = {}
    d = getattr(module, "discriminator", None)
    if isinstance(d, ElectraForPreTraining):
        models["discriminator"] = d
    elif isinstance(d, ElectraForMaskedLM):  # Replace-MLM: D predicts tokens
        models["mlm"] = d
    if isinstance(getattr(module, "mlm", None), ElectraForMaskedLM):  # BERT
        models["mlm"] = module.mlm
    if hasattr(module, "mlm_predictions"):  # All-Tokens MLM: D's encoder with its own MLM head, as one model
        mlm = ElectraForMaskedLM(copy.deepcopy(d.config))  # a copy: save_pretrained records its class in it
        mlm.electra, mlm.generator_predictions = d.electra, module.mlm_predictions
        mlm.generator_lm_head.weight = d.electra.embeddings.word_embeddings.weight
        mlm.generator_lm_head.bias = module.mlm_bias
        models["mlm"] = mlm.eval()
    if getattr(module, "generator", None) is not None:
        models["generator"] = module.generator
    return models


def left_out(module, models: dict[str, Any]) -> list[str]:
    """The module's weights that no exported model holds (by top-level name)."""
    kept = {t.data_ptr() for m in models.values() for t in m.state_dict().values()}
    return sorted({name.split(".")[0] for name, t in module.state_dict().items() if t.data_ptr() not in kept})


def prepare_out(out: Path) -> None:
    """Refuse to write into a non-empty directory that is not an earlier export; clear an earlier export's roles."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / "export.json").is_file():
            raise ExportError(f"{out} exists and is not an earlier export (no export.json); pick a new or empty "
                              "directory.")
        for role in ROLES:
            if (out / role).is_dir():
                shutil.rmtree(out / role)
    out.mkdir(parents=True, exist_ok=True)


def export(source: Path | str, out: Path | str, overrides: list[str] | None = None,
           config: Path | str | None = None) -> dict[str, Any]:
    """Write the models of a checkpoint, run directory or step directory under `out`; returns export.json's data.

    `config` defaults to the run's config.yaml: two levels above a last.ckpt or a step directory.
    """
    from transformers.utils import logging as hf_logging

    from lightning_electra.finetune import load_backbone
    from lightning_electra.models import saveable

    hf_logging.disable_progress_bar()  # a bar per shard written: noise beside the one line per model
    source, out = find_source(Path(source)), Path(out)
    config_path = Path(config) if config else source.parent.parent / "config.yaml"
    if not config_path.is_file():
        if source.is_file() or config:
            raise ExportError(f"No run config at {config_path}: a checkpoint needs the config it was trained with "
                              "(pass --config <run dir>/config.yaml).")
        config_path = None  # a bare transformers directory: only the vocabulary is needed, from the overrides
    cfg = load_run_config(config_path, overrides)
    meta: dict[str, Any] = {"source": str(source), "variant": cfg.variant, "scale": cfg.scale, "run": cfg.name,
                            "pretrain_hash": pretrain_hash(cfg) if config_path else None}
    if source.is_file():
        module, saved = load_module(source, cfg, config_path)
        models = models_of(module)
        meta.update(stage=module.stage, **(saved.get("flops") or {"step": saved.get("global_step")}),
                    not_exported=left_out(module, models))
    else:
        models = {"encoder": load_backbone(source)}
        step_meta = source / "meta.json"
        if step_meta.is_file():
            meta.update(json.loads(step_meta.read_text()))
        meta["not_exported"] = ["every head: a step directory holds the encoder only (export last.ckpt for them)"]
    tokenizer = build_tokenizer(vocab_path(cfg.data), cfg.model.max_position_embeddings)
    prepare_out(out)
    for role, model in models.items():
        saveable(model).save_pretrained(out / role)
        tokenizer.save_pretrained(out / role)
        print(f"[export] {role}/: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} "
              f"parameters -> {out / role}", flush=True)
    meta["models"] = {role: type(model).__name__ for role, model in models.items()}
    write_json(out / "export.json", meta)
    return meta


__all__ = ["export", "ExportError", "find_source", "load_run_config", "load_module", "models_of", "build_tokenizer"]
