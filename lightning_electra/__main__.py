"""The suite's command line: `python -m lightning_electra <command> ...` (sweeps run from `experiments.sweep`).

    python -m lightning_electra export <checkpoint | run dir | step dir> <out dir> [key=value ...]
    python -m lightning_electra finetune <model dir> [--tasks RTE,MRPC] [--seeds N] [--out F.json] [key=value ...]

A command is a subparser plus a function of (parsed arguments, key=value overrides); add one in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, Callable


def export_command(args: argparse.Namespace, overrides: list[str]) -> None:
    from lightning_electra.export import export

    meta = export(args.checkpoint, args.out, overrides, config=args.config)
    print(f"[export] {meta['variant']} step {meta.get('step')}: {', '.join(meta['models'])} -> {args.out}"
          + (f"; not exported: {', '.join(meta['not_exported'])}" if meta.get("not_exported") else ""))


def model_tokenizer(model: str, choice: str | None, cfg) -> tuple[Any, str]:
    """--tokenizer if given (a vocab.txt or a transformers directory), else the model's own tokenizer files, else
    data.vocab: the suite's step checkpoints are saved without a tokenizer."""
    from transformers import AutoTokenizer

    from lightning_electra.config import vocab_path
    from lightning_electra.data.glue import build_tokenizer

    if choice:
        return (build_tokenizer(choice) if Path(choice).is_file() else AutoTokenizer.from_pretrained(choice)), choice
    own = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    if not Path(model).is_dir() or any((Path(model) / f).is_file() for f in own):  # a hub name, or files beside it
        return AutoTokenizer.from_pretrained(model), model
    vocab = vocab_path(cfg.data)
    return build_tokenizer(vocab), str(vocab)


def finetune_command(args: argparse.Namespace, overrides: list[str]) -> None:
    """GLUE from any transformers ELECTRA directory, `finetune.seeds` seeds a task; the median per task is kept
    (the paper's protocol) and their mean is the GLUE score."""
    from lightning_electra.config import finetune_hash, load_config, to_dict
    from lightning_electra.data.glue import available_tasks
    from lightning_electra.export import load_run_config
    from lightning_electra.finetune import finetune_task, finetune_task_seeds
    from lightning_electra.results import write_json

    overrides = list(overrides) + ([f"finetune.tasks=[{','.join(args.tasks)}]"] if args.tasks else []) \
        + ([f"finetune.seeds={args.seeds}"] if args.seeds else [])
    # No scale: the schema's fine-tuning defaults, the paper's protocol (a scale's caps are for its own runs).
    cfg = load_config(args.scale, overrides=overrides) if args.scale else load_run_config(None, overrides)
    ft, data_dir = cfg.finetune, Path(cfg.data.data_dir)
    tasks, missing = (ft.tasks, []) if ft.source == "hub" else available_tasks(data_dir, ft.tasks)
    if missing:
        print(f"[finetune] skipping GLUE tasks without train and dev files under {data_dir / 'glue'}: "
              f"{', '.join(missing)}", flush=True)
    if not tasks:
        raise ValueError(f"No GLUE task to fine-tune under {data_dir / 'glue'}; set DATA_DIR or data.data_dir.")
    tokenizer, tokenizer_source = model_tokenizer(args.model, args.tokenizer, cfg)
    results: dict[str, Any] = {}
    for task in tasks:
        if ft.batched_seeds:  # all seeds at once, one batched ensemble
            runs = finetune_task_seeds(args.model, task, data_dir, ft, tokenizer, range(ft.seeds),
                                       accelerator=cfg.train.accelerator, source=ft.source)
        else:
            runs = [finetune_task(args.model, task, data_dir, ft, tokenizer, seed, accelerator=cfg.train.accelerator,
                                  source=ft.source, progress_bar=sys.stderr.isatty()) for seed in range(ft.seeds)]
        for seed, scores in enumerate(runs):
            print(f"[finetune] {task} seed {seed}: {scores['score']:.2f}", flush=True)
        results[task] = {"score": statistics.median(r["score"] for r in runs), "seeds": runs}
    glue = statistics.mean(r["score"] for r in results.values())
    out = Path(args.out) if args.out else (
        Path(args.model) if Path(args.model).is_dir() else Path.cwd()) \
        / f"glue-{finetune_hash(cfg)}-{'-'.join(tasks)}-seeds{ft.seeds}.json"  # other tasks or seeds: another file
    write_json(out, {"model": args.model, "tokenizer": tokenizer_source, "glue": glue, "tasks": results,
                     "missing_tasks": missing, "finetune": to_dict(cfg)["finetune"]})
    print("\n".join(f"  {task:6s} {r['score']:6.2f}  (median of {len(r['seeds'])})" for task, r in results.items()))
    print(f"[finetune] GLUE-{len(results)} {glue:.2f} -> {out}")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a pre-training last.ckpt, a run directory, or a checkpoints/step-* directory")
    p.add_argument("out", help="the directory to write discriminator/, generator/, mlm/ or encoder/ into")
    p.add_argument("--config", help="the run's config.yaml (default: two levels above the checkpoint)")


def _finetune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a transformers ELECTRA directory (ElectraModel, ElectraForPreTraining, ...)")
    p.add_argument("--tasks", type=lambda s: s.split(","), help="comma-separated GLUE tasks (default: "
                   "finetune.tasks, those present under DATA_DIR)")
    p.add_argument("--seeds", type=int, help="fine-tuning seeds per task (default: finetune.seeds)")
    p.add_argument("--scale", help="take fine-tuning settings from a scale (e.g. smoke: capped examples); "
                   "default: the schema's, the paper's protocol")
    p.add_argument("--tokenizer", help="a vocab.txt or tokenizer directory (default: the model's own, else data.vocab)")
    p.add_argument("--out", help="the JSON file to write (default: <model dir>/glue-<fine-tuning hash>.json)")


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "export": ("write a run's models in transformers' format (from_pretrained)", _export_args, export_command),
    "finetune": ("fine-tune a transformers ELECTRA directory on GLUE and write the scores", _finetune_args,
                 finetune_command),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lightning_electra", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (summary, add_args, run) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        add_args(sub)
        sub.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. data.data_dir=../shared/data")
        sub.set_defaults(run=run)
    # overrides may follow options too, where argparse leaves them unparsed
    args, extra = parser.parse_known_args(argv)
    overrides = list(args.overrides) + extra
    if any("=" not in o for o in overrides):
        parser.error(f"unrecognized arguments: {' '.join(o for o in overrides if '=' not in o)}")
    try:
        args.run(args, overrides)
    except (ValueError, OSError) as err:  # ours (config, data, export errors) and from_pretrained's missing files
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
