"""Export a pre-training run as transformers models that anyone can load with `from_pretrained`.

    python -m lightning_electra export <checkpoint | run dir | checkpoints/step-XXXXXXX> <out dir> [key=value ...]

What is written, one directory per model, each with its tokenizer (ElectraTokenizerFast from the run's vocab):

    discriminator/  ElectraForPreTraining (encoder + replaced-token head): ELECTRA-like variants
    generator/      ElectraForMaskedLM, the small G: variants with a learned generator (two-stage's stage 1 too)
    mlm/            ElectraForMaskedLM at D's size: BERT's model, Replace-MLM's D, All-Tokens MLM's D with its MLM
                    head (its discriminator head, the copy gate, goes to discriminator/)
    encoder/        ElectraModel only: the source was a checkpoints/step-* directory, which holds no heads
    export.json     where it came from (variant, stage, step, FLOPs) and which weights were left out
    README.md       a Hugging Face model card (also in each model's directory): what was trained, how long, on what,
                    the GLUE scores the suite measured for this checkpoint (when the run directory has them), and the
                    commits and commands that made it

Roles are named for what a model is, not for where a variant uses it: BERT's MLM is not a "generator", and a
user loading discriminator/ always gets a trained replaced-token head. A step directory is written as encoder/,
not discriminator/, since ElectraForPreTraining.from_pretrained would otherwise initialise the head at random
with only a warning. Weights with no transformers home (the adversarial baseline, a unigram sampler's
probabilities) are listed in export.json, not written.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import torch

from lightning_electra.config import Config, ConfigError
from lightning_electra.data.files import vocab_path
from lightning_electra.data.glue_tasks import TASKS
from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.errors import SuiteError
from lightning_electra.io import UnreadableFile, atomic_write_text, load_torch, write_json
from lightning_electra.log import logger
from lightning_electra.provenance import git_commit
from lightning_electra.models import saveable
from lightning_electra.objectives import OBJECTIVES, objective
from lightning_electra.results import glue_scores, read_table
from lightning_electra.runner.configs import load_run_config
from lightning_electra.runner.identity import RunLayout, pretrain_hash
from lightning_electra.runner.pretrain import build_module

log = logger("export")

ROLES = ("discriminator", "generator", "mlm", "encoder")


class ExportError(SuiteError, ValueError):
    """A source that cannot be exported, with what it is and what to pass instead."""


def find_source(path: Path) -> Path:
    """The file or directory to export from a checkpoint, a step directory, or a run directory.

    A run directory gives its last stage's `last.ckpt` (kept after the run, and it is saved at the
    final step), else its latest `checkpoints/step-*` (encoder only).
    """
    if path.is_file() or (path / "config.json").is_file():
        return path
    if not (path / "config.yaml").is_file():
        raise ExportError(f"{path} is neither a Lightning checkpoint, a run directory (with config.yaml) nor a "
                          "transformers directory (with config.json).")
    layout = RunLayout(path)
    stages = layout.last_checkpoints()
    if stages:
        return stages[-1]
    steps = layout.step_dirs()
    if not steps:
        raise ExportError(f"Run directory {path} has no pretrain*/last.ckpt and no checkpoints/step-*: nothing "
                          "was trained yet.")
    log.info(f"{path} has no last.ckpt; exporting the encoder of {steps[-1].name} (no heads)")
    return steps[-1]


def variants_fitting(cfg: Config, state: dict[str, torch.Tensor]) -> list[str]:
    """Which variants' modules (this config's shapes otherwise) have exactly these weight names and shapes.

    Built on the meta device: no memory and no init time, even at base scale.
    """
    from dataclasses import replace

    shapes = {k: tuple(v.shape) for k, v in state.items()}
    fits = []
    for name in OBJECTIVES:
        cls = objective(name)
        for stage in range(1, cls.stages + 1):
            try:
                module = build_module(replace(cfg, variant=name), stage=stage, device="meta")
            except (ConfigError, ValueError):
                continue
            if {k: tuple(v.shape) for k, v in module.state_dict().items()} == shapes:
                fits.append(name if cls.stages == 1 else f"{name} (stage {stage})")
    return fits


def load_module(ckpt: Path, cfg: Config, config_path: Path | None):
    """The run's module with the checkpoint's weights, strictly: a mismatch names the variant that fits."""
    stage = RunLayout.stage_of(ckpt.parent)
    module = build_module(cfg, stage=stage)
    try:
        saved = load_torch(ckpt)
    except UnreadableFile as err:
        raise ExportError(f"{err}: pass a run directory, a pretrain/last.ckpt or a checkpoints/step-* directory "
                          "of this suite.") from None
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise ExportError(f"{ckpt} is not a Lightning checkpoint (no state_dict): pass a run directory, a "
                          "pretrain/last.ckpt or a checkpoints/step-* directory of this suite.")
    state = saved["state_dict"]
    try:  # through the modules' own load hooks, which read checkpoints of earlier layouts (objectives/generator.py)
        module.load_state_dict(state, strict=True)
    except RuntimeError:
        expected = module.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        reshaped = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
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
               f"{tuple(expected[reshaped[0]].shape)} expected)" if reshaped else "") + "." + hint) from None
    return module.eval(), saved


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
    from transformers import ElectraTokenizerFast
    from transformers.utils import logging as hf_logging

    from lightning_electra.finetune import load_backbone

    hf_logging.disable_progress_bar()  # a bar per shard written: noise beside the one line per model
    given, out = Path(source), Path(out)
    source = find_source(given)
    config_path = Path(config) if config else source.parent.parent / "config.yaml"
    if not config_path.is_file():
        if source.is_file() or config:
            raise ExportError(f"No run config at {config_path}: a checkpoint needs the config it was trained with "
                              "(pass --config <run dir>/config.yaml).")
        config_path = None  # a bare transformers directory: only the vocabulary is needed, from the overrides
    cfg = load_run_config(config_path, overrides)
    if cfg.variant not in OBJECTIVES:
        raise ExportError(f"Unknown variant '{cfg.variant}' in the run's config. Known: {', '.join(OBJECTIVES)}.")
    meta: dict[str, Any] = {"source": str(source), "variant": cfg.variant, "scale": cfg.scale, "run": cfg.name,
                            "pretrain_hash": pretrain_hash(cfg) if config_path else None}
    if source.is_file():
        module, saved = load_module(source, cfg, config_path)
        models = module.exported_models()
        meta.update(stage=module.stage, **(saved.get("flops") or {"step": saved.get("global_step")}),
                    not_exported=left_out(module, models))
    else:
        models = {"encoder": load_backbone(source)}
        step_meta = source / "meta.json"
        if step_meta.is_file():
            meta.update(json.loads(step_meta.read_text()))
        meta["not_exported"] = ["every head: a step directory holds the encoder only (export last.ckpt for them)"]
    # ElectraTokenizerFast: what AutoTokenizer gives back for ELECTRA
    tokenizer = build_tokenizer(vocab_path(cfg.data), ElectraTokenizerFast,
                                model_max_length=cfg.model.max_position_embeddings)
    prepare_out(out)
    for role, model in models.items():
        saveable(model).save_pretrained(out / role)
        tokenizer.save_pretrained(out / role)
        log.info(f"{role}/: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} "
                 f"parameters -> {out / role}")
    meta["models"] = {role: type(model).__name__ for role, model in models.items()}
    write_json(out / "export.json", meta)
    run = source.parent.parent if config_path and (source.parent.parent / "config.yaml").is_file() else None
    command = "python -m lightning_electra export " + shlex.join([str(given), str(out), *(overrides or []),
                                                                   *(["--config", str(config)] if config else [])])
    card = model_card(cfg, meta, run, {role: m.config for role, m in models.items()}, command, tokenizer)
    for place in [out, *(out / role for role in models)]:  # a model directory uploaded alone keeps its card
        atomic_write_text(place / "README.md", card)
    return meta


# --- the model card --------------------------------------------------------------------------------------------------
ROLE_TEXT = {"discriminator": "the discriminator with its replaced-token head",
             "generator": "the generator (masked LM) that corrupted the discriminator's input",
             "mlm": "a masked LM at the discriminator's size", "encoder": "the encoder alone (no heads)"}


def measured_glue(run: Path, step: int) -> dict | None:
    """The GLUE dev scores the suite measured for the run's checkpoint at `step`, from its newest results table that
    has them: each task's median over the fine-tuning seeds and GLUE, their mean. None when there are none."""
    for path in sorted(run.glob("results-*.csv"), key=lambda p: p.stat().st_mtime, reverse=True):
        rows = read_table(path)
        rows = rows[(rows["metric"] == "score") & (rows["step"] == step)]
        if len(rows):
            tasks = [t for t in TASKS if t in set(rows["task"])]
            wide = glue_scores(rows, ["step"], tasks).iloc[0]
            return {"tasks": {t: float(wide[t]) for t in tasks}, "glue": float(wide["GLUE"]), "table": path.name,
                    "seeds": int(rows.groupby("task").size().max()), "commits": sorted(set(rows["commit"]))}
    return None


def training_provenance(run: Path, name: str) -> list[dict]:
    """The sweep invocations that ran this run (its sweep's sweep.json, beside the run directory)."""
    sweep_json = run.parent / "sweep.json"
    if not sweep_json.is_file():
        return []
    return [i for i in json.loads(sweep_json.read_text()).get("invocations", []) if name in i.get("runs", {})]


def model_card(cfg: Config, meta: dict, run: Path | None, configs: dict, command: str, tokenizer) -> str:
    """README.md in Hugging Face's format: YAML metadata, then what the model is, its training, its GLUE scores as
    measured by the suite (when the run directory holds them) and its provenance."""
    summary = json.loads((run / "pretrain.json").read_text()) if run and (run / "pretrain.json").is_file() else {}
    step = meta.get("step")
    glue = measured_glue(run, int(step)) if run and step is not None else None
    invocations = training_provenance(run, cfg.name) if run else []
    tags = ["electra", "lightning-electra", "pretraining", cfg.variant, f"{cfg.scale}-scale"]
    lines = ["---", "language: en", "license: apache-2.0", "library_name: transformers", "tags:",
             *[f"- {t}" for t in dict.fromkeys(tags)], *(["datasets:", "- nyu-mll/glue"] if glue else []), "---", "",
             f"# {cfg.name}: {cfg.variant} at the {cfg.scale} scale", "",
             f"Pre-trained with **lightning_electra**, a PyTorch Lightning suite for the pre-training ablations of "
             f"ELECTRA (Clark et al., ICLR 2020) and AMOS (Meng et al., ICLR 2022): variant `{cfg.variant}`, scale "
             f"`{cfg.scale}`, run `{cfg.name}`."]
    if cfg.scale == "smoke":
        lines += ["", "**A smoke-scale model**: a few minutes of CPU training that checks the pipeline. It is near "
                  "chance on GLUE and is not meant for use."]
    lines += ["", "| directory | class | what |", "|---|---|---|"]
    lines += [f"| `{role}/` | `{cls}` | {ROLE_TEXT[role]} |" for role, cls in meta["models"].items()]
    d = configs.get("discriminator") or configs.get("mlm") or configs.get("encoder")
    shape = (f"{d.num_hidden_layers} layers x {d.hidden_size} hidden, {d.num_attention_heads} attention head(s), "
             f"embeddings {d.embedding_size}" if d is not None else "")
    g = configs.get("generator")
    rows = [("variant", f"`{cfg.variant}`" + (f" (stage {meta['stage']})" if meta.get("stage", 1) > 1 else "")),
            ("scale", f"`{cfg.scale}`"), ("steps", f"{int(step):,}" if step is not None else "unknown"),
            ("tokens", f"{int(meta['tokens']):,}" if meta.get("tokens") else ""),
            ("pre-training FLOPs (paper convention)", f"{meta['flops_paper']:.3g}" if meta.get("flops_paper") else ""),
            ("FLOPs measured (torch, matmuls, forward + backward)",
             f"{meta['flops_measured']:.3g}" if meta.get("flops_measured") else ""),
            ("model", shape), ("generator", f"{g.num_hidden_layers} layers x {g.hidden_size} hidden" if g else ""),
            ("sequence length, batch", f"{cfg.data.max_seq_length}, {cfg.train.batch_size}"),
            ("pre-training wall time", f"{summary['seconds']:,.0f} s" if summary.get("seconds") else ""),
            ("corpus", ", ".join(f"`{c}`" for c in cfg.data.corpus)
             + (f" (first {cfg.data.max_corpus_bytes:,} bytes)" if cfg.data.max_corpus_bytes else "")),
            ("vocabulary", f"`{cfg.data.vocab}`, {tokenizer.vocab_size:,} WordPiece tokens, lower-cased")]
    lines += ["", "## Training", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows if v]]
    lines += ["", "## GLUE (dev sets, as the suite measured this checkpoint)", ""]
    if glue:
        tasks = glue["tasks"]
        lines += [f"Each task's main metric, the median of {glue['seeds']} fine-tuning seed(s) (the paper's "
                  f"protocol); GLUE-{len(tasks)} is their mean. From `{glue['table']}`.", "",
                  "| task | metric | score |", "|---|---|---|",
                  *[f"| {t} | {TASKS[t].main_metric} | {v:.2f} |" for t, v in tasks.items()],
                  f"| **GLUE-{len(tasks)}** | mean | **{glue['glue']:.2f}** |"]
    else:
        lines.append("None: the run directory holds no results table for this step (the run was pre-trained only, "
                     "or its fine-tuning has not finished). `python -m lightning_electra finetune <this directory>/"
                     f"{next(iter(meta['models']))}` measures them.")
    lines += ["", "## Provenance", "", f"- source: `{meta['source']}`"
              + (f", pre-training hash `{meta['pretrain_hash']}`" if meta.get("pretrain_hash") else "")]
    lines += [f"- trained: `{i['command']}` at commit `{i.get('commit', 'unknown')}` on {i.get('hardware', '?')}, "
              f"finished {i.get('finished', '?')}" for i in invocations]
    if run and not invocations:
        lines.append("- trained: the command is not recorded in the run directory (`pretrain` runs keep none); its "
                     "config is the run's `config.yaml`")
    if glue:
        lines.append(f"- fine-tuned at commit {', '.join(f'`{c}`' for c in glue['commits'])}")
    lines.append(f"- exported: `{command}` at commit `{git_commit()}`")
    if meta.get("not_exported"):
        lines.append(f"- not exported (no transformers home): {', '.join(meta['not_exported'])}")
    role = next(iter(meta["models"]))
    lines += ["", "## Use", "", "```python", f"from transformers import AutoTokenizer, {meta['models'][role]}", "",
              f'tokenizer = AutoTokenizer.from_pretrained("<export dir>/{role}")  # or the Hub repo it was put in',
              f'model = {meta["models"][role]}.from_pretrained("<export dir>/{role}")', "```", ""]
    return "\n".join(lines)


__all__ = ["export", "ExportError", "find_source", "load_module", "model_card"]
