"""The suite's one command line: `python -m lightning_electra <command> ... [key=value ...]`.

    sweep <sweep> [--scale S] [--runs a,b] [--parallel N]  pre-train, fine-tune and report every run of a sweep
    run <sweep> <run> [--scale S]                          one run of a sweep, alone (a parallel sweep's child)
    plan <sweep> [--scale S] [--csv] [--budget-minutes M]  what a sweep's runs would do and how long, no training
    pretrain [--scale S] [--name N] variant=bert ...       pre-train one config (no fine-tuning)
    data [--corpus wikitext-103] [--out DIR]               the corpus and GLUE from the hub, as the readers read them
    vocab <corpus files> [--size 8192] [--out vocab.txt]   a WordPiece fitted to a corpus (the packaged wiki-uncased-8k)
    finetune <model dir> [--tasks RTE,MRPC] [--seeds N]    GLUE from any transformers ELECTRA directory
    export <run dir | last.ckpt | step dir> <out dir>      a run's models in transformers' format
    benchmark [flags]                                      pre-training throughput vs a plain transformers baseline
    benchmark-finetune [flags]                             GLUE fine-tuning time, seeds one by one vs batched
    report [<sweep> --scale S]                             re-render reports from their own results tables

Every command takes `key=value` config overrides (e.g. train.steps=100 data.data_dir=../shared/data). This file is
the top of the house: it imports the runner (lightning_electra/runner/), the tools (lightning_electra/tools/) and
the reports (analysis/); they import the library below them, never this.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from lightning_electra.errors import SuiteError
from lightning_electra.log import logger
from lightning_electra.provenance import command_line

# Errors in what the user gave (config, data, files, a diverged run), whose messages say what to do: printed alone.
INPUT_ERRORS = (SuiteError,)


# --- sweep, plan, pretrain -------------------------------------------------------------------------------------------
def sweep_command(args: argparse.Namespace, overrides: list[str]) -> None:
    from lightning_electra.config import ConfigError
    from lightning_electra.runner.configs import check_sweep, check_sweep_data

    if args.collect and args.plan:
        raise ConfigError("--collect trains nothing and --plan shows what would be trained: ask for one of them.")
    if args.budget_minutes is not None and not args.plan:
        raise ConfigError("--budget-minutes (BUDGET_MINUTES) is a plan's question: add --plan (PLAN=1) to see whether "
                          "the sweep fits and which RUNS= pieces do.")
    if args.csv and not args.plan:
        raise ConfigError("--csv is a plan's format: add --plan (PLAN=csv).")
    if args.budget_minutes is not None and (args.csv or args.no_time):
        raise ConfigError("--budget-minutes is answered from the plan's times, in its table: drop "
                          f"{'--csv (PLAN=csv)' if args.csv else '--no-time'}.")
    checked = check_sweep(args.sweep, args.scale, overrides)  # in seconds, no torch
    if not args.plan:
        check_sweep_data(checked)
    elif args.plan and not args.csv:  # a plan needs no data but its sweep does: say so (a csv plan's stdout is a table)
        try:  # (quietly: the plan's own header says which GLUE tasks it fine-tunes)
            check_sweep_data(checked, announce=False)
        except ConfigError as missing:
            logger("plan").info(f"the sweep would stop before its first run here: {missing}")
    from lightning_electra.runner.plan import plan_sweep
    from lightning_electra.runner.store import not_finished
    from lightning_electra.runner.sweep import run_sweep, select, sweep_runs

    sweep, runs = sweep_runs(args.sweep, args.scale, overrides, announce=not args.csv)
    name, configs = sweep["name"], [run.cfg for run in runs]
    selected = [] if args.collect else select(runs, args.runs, name)
    if args.plan:  # what would run: not the runs whose rows a results table already holds
        selected = not_finished(name, runs, selected, announce=not args.csv)
        plan = plan_sweep(name, selected, times=not args.no_time, parallel=args.parallel,
                          budget_minutes=args.budget_minutes)
        print(plan.csv() if args.csv else plan.text(), end="" if args.csv else "\n", flush=True)
        return plan
    failed = []
    if args.parallel > 1:
        from lightning_electra.runner.parallel import run_parallel

        table, failed = run_parallel(name, sweep, args.sweep, runs, selected, overrides, args.parallel,
                                     command_line(args.argv))
    else:
        table = run_sweep(name, sweep, runs, selected, command_line(args.argv))
    if table is not None and not args.no_report:
        from analysis.report import REPORTS, NothingToReport, build_report, write_index

        reports = Path(args.reports_dir) if args.reports_dir else REPORTS
        try:
            logger("sweep").info(f"report: {build_report(name, configs[0].scale, table.parent.parent, reports)}")
            write_index(reports)
        except NothingToReport as nothing:  # e.g. --collect before any run finished: the table is all there is
            logger("sweep").info(f"no report: {nothing}")
    if failed:
        from lightning_electra.runner.parallel import RunsFailed, failure_message

        raise RunsFailed(failure_message(name, failed, Path(configs[0].results_dir) / name / configs[0].scale / "logs"))


def plan_command(args: argparse.Namespace, overrides: list[str]) -> None:
    args.plan, args.no_report, args.reports_dir = True, True, None
    args.collect = False
    sweep_command(args, overrides)


def pretrain_command(args: argparse.Namespace, overrides: list[str]) -> None:
    from lightning_electra.runner.configs import load_config

    load_config(args.scale, overrides=[f"name={args.name}", *overrides], full=False)  # a typo costs no imports
    from lightning_electra.runner.resolved import ResolvedRun
    from lightning_electra.runner.run import pretrain_run

    run = ResolvedRun.of(load_config(args.scale, overrides=[f"name={args.name}", *overrides], announce=True),
                         args.sweep)
    pretrain_run(run)
    out = run.layout.root
    logger("pretrain").info(f"{out}: fine-tune a checkpoint with `python -m lightning_electra finetune "
                            f"{out}/checkpoints/step-...`, export it with `python -m lightning_electra export {out} "
                            "<dir>`")


def scale_help() -> str:
    from lightning_electra.runner.configs import scale_names

    return f"{' | '.join(scale_names())} (default: $SCALE, else auto: smoke without a GPU, tiny with one)"


def parallel_count(text: str) -> int:
    """--parallel N (or $PARALLEL): a whole number of runs at once, at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of runs at once: use a whole number, 1 or more "
                                         "(PARALLEL=2, --parallel 2)")
    return int(text)


def _sweep_args(p: argparse.ArgumentParser, plan: bool = False) -> None:
    p.add_argument("sweep", help="a sweep under lightning_electra/configs/sweeps/ (its name, without .yaml), "
                   "or the path of a sweep file of one's own")
    p.add_argument("--scale", default=None, help=scale_help())
    p.add_argument("--runs", default=None, help="comma-separated run names: run only these now (a sweep in "
                   "pieces, e.g. one per command on a lent machine); the table and report take every finished run")
    p.add_argument("--parallel", type=parallel_count, default=os.environ.get("PARALLEL") or "1", metavar="N",
                   help="run N runs at once on this machine's device, each its own process (default: $PARALLEL, "
                   "else 1); with --plan, the estimate for N at once")
    p.add_argument("--no-time", action="store_true", help="plan without the time estimates (no measured steps)")
    p.add_argument("--budget-minutes", type=float, metavar="M", help="with a plan: whether the sweep fits M minutes, "
                   "and if not, RUNS= pieces that each do")
    p.add_argument("--csv", action="store_true", help="the plan's rows as CSV, for scripts")
    if plan:
        return
    p.add_argument("--plan", action="store_true", help="print what each run would do (steps, FLOPs, checkpoints, "
                   "fine-tunes, estimated minutes) and stop")
    p.add_argument("--no-report", action="store_true", help="only run and collect; skip the report")
    p.add_argument("--collect", action="store_true", help="train nothing: the table and report of the runs finished "
                   "so far (e.g. after a sweep was stopped)")
    p.add_argument("--reports-dir", default=None, help="where reports go (default: analysis/reports)")


def run_command(args: argparse.Namespace, overrides: list[str]) -> None:
    if args.child:
        from lightning_electra.runner.parallel import die_with_parent

        die_with_parent()
    from lightning_electra.runner.configs import check_sweep, check_sweep_data

    check_sweep_data([c for c in check_sweep(args.sweep, args.scale, overrides) if c.name == args.run])  # no torch
    from lightning_electra.runner.sweep import run_alone

    table = run_alone(args.sweep, args.scale, args.run, overrides)
    if table is not None:
        logger("run").info(f"{args.run}: its rows are in {table}; the sweep's table and report: `python -m "
                           f"lightning_electra sweep {args.sweep} --collect`")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="a sweep under lightning_electra/configs/sweeps/, or the path of a sweep file")
    p.add_argument("run", help="the name of one of its runs (e.g. electra-seed1)")
    p.add_argument("--scale", default=None, help=scale_help())
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # a parallel sweep's: dies with it


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", default=None, help=scale_help())
    p.add_argument("--name", default="run", help="the run's name (its directory: <results>/<sweep>/<scale>/<name>-...)")
    p.add_argument("--sweep", default="runs", help="the folder under results_dir it goes in (default: runs)")


# --- data ---------------------------------------------------------------------------------------------------------
def data_command(args: argparse.Namespace, overrides: list[str]) -> None:
    from lightning_electra.data.download import download

    out = Path(args.out or os.environ.get("DATA_DIR") or "data")
    download(out, corpus=args.corpus, tasks=args.tasks, source_dir=Path(args.source_dir) if args.source_dir else None,
             max_corpus_bytes=int(args.max_corpus_mb * 1e6) if args.max_corpus_mb else None)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="the data directory to fill (default: $DATA_DIR, else ./data)")
    p.add_argument("--corpus", default="wikitext-103", help="wikitext-103 (default, a laptop's worth) or wikipedia")
    p.add_argument("--tasks", type=lambda s: s.split(","), help="comma-separated GLUE tasks (default: all nine)")
    p.add_argument("--max-corpus-mb", type=float, help="stop the corpus after this many MB of text")
    p.add_argument("--source-dir", help="read datasets saved with save_to_disk here instead of the hub (a mirror)")


def vocab_command(args: argparse.Namespace, overrides: list[str]) -> None:
    from lightning_electra.data.vocab import fit_wordpiece

    data_dir = Path(os.environ.get("DATA_DIR") or "data")
    vocab = fit_wordpiece(data_dir, args.corpus, args.size, Path(args.out))
    logger("vocab").info(f"{vocab}: {args.size} tokens fitted to {', '.join(args.corpus)}; use it with "
                         "data.vocab=<its path>")


def _vocab_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", nargs="+", help="corpus files under $DATA_DIR (e.g. corpus/wiki-train-00.txt.xz)")
    p.add_argument("--size", type=int, default=8192, help="tokens in the vocabulary (default 8192)")
    p.add_argument("--out", default="vocab.txt", help="where to write it (default ./vocab.txt)")


# --- finetune, export ------------------------------------------------------------------------------------------------
def finetune_command(args: argparse.Namespace, overrides: list[str]) -> None:
    """GLUE from any transformers ELECTRA directory (lightning_electra/finetune/model.py), written beside it."""
    from lightning_electra.finetune.model import finetune_model
    from lightning_electra.io import write_json
    from lightning_electra.runner.configs import load_config, load_run_config
    from lightning_electra.runner.identity import finetune_hash

    overrides = list(overrides) + ([f"finetune.tasks=[{','.join(args.tasks)}]"] if args.tasks else []) \
        + ([f"finetune.seeds={args.seeds}"] if args.seeds else [])
    # No scale: the schema's fine-tuning defaults, the paper's protocol (a scale's caps are for its own runs).
    cfg = load_config(args.scale, overrides=overrides) if args.scale else load_run_config(None, overrides)
    record = finetune_model(args.model, cfg, args.tokenizer, progress_bar=sys.stderr.isatty(),
                            on_seed=lambda task, seed, scores: logger("finetune").info(f"{task} seed {seed}: "
                                                                                       f"{scores['score']:.2f}"))
    tasks = record["tasks"]
    out = Path(args.out) if args.out else (Path(args.model) if Path(args.model).is_dir() else Path.cwd()) \
        / f"glue-{finetune_hash(cfg)}-{'-'.join(tasks)}-seeds{cfg.finetune.seeds}.json"  # other tasks, seeds: a file
    write_json(out, record)
    print("\n".join(f"  {task:6s} {r['score']:6.2f}  (median of {len(r['seeds'])})" for task, r in tasks.items()))
    logger("finetune").info(f"GLUE-{len(tasks)} {record['glue']:.2f} -> {out}")


def export_command(args: argparse.Namespace, overrides: list[str]) -> None:
    from lightning_electra.runner.export import export

    meta = export(args.checkpoint, args.out, overrides, config=args.config)
    logger("export").info(f"{meta['variant']} step {meta.get('step')}: {', '.join(meta['models'])} -> {args.out}"
                          + (f"; not exported: {', '.join(meta['not_exported'])}" if meta.get("not_exported") else ""))


def _finetune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a transformers ELECTRA directory (ElectraModel, ElectraForPreTraining, ...)")
    p.add_argument("--tasks", type=lambda s: s.split(","), help="comma-separated GLUE tasks (default: "
                   "finetune.tasks, those present under DATA_DIR)")
    p.add_argument("--seeds", type=int, help="fine-tuning seeds per task (default: finetune.seeds)")
    p.add_argument("--scale", help="take fine-tuning settings from a scale (e.g. smoke: capped examples); "
                   "default: the schema's, the paper's protocol")
    p.add_argument("--tokenizer", help="a vocab.txt or tokenizer directory (default: the model's own, else data.vocab)")
    p.add_argument("--out", help="the JSON file to write (default: <model dir>/glue-<fine-tuning hash>.json)")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a pre-training last.ckpt, a run directory, or a checkpoints/step-* directory")
    p.add_argument("out", help="the directory to write discriminator/, generator/, mlm/ or encoder/ into")
    p.add_argument("--config", help="the run's config.yaml (default: two levels above the checkpoint)")


# --- tools and reports: their own flags, passed through -----------------------------------------------------------
def benchmark_command(args: argparse.Namespace, rest: list[str]) -> None:
    """Measure (the tool writes the table and its provenance), then render its Markdown (`--render DIR`: only that)."""
    from analysis.benchmark import render
    from lightning_electra.tools.benchmark import main, parse_args

    main(rest)
    options = parse_args(rest)
    logger("benchmark").info(f"wrote {render(options.render or options.out)}")


def finetune_benchmark_command(args: argparse.Namespace, rest: list[str]) -> None:
    """Measure (the tool writes the table and its provenance), then render its Markdown (`--render DIR`: only that)."""
    from analysis.finetune_benchmark import render
    from lightning_electra.tools.finetune_benchmark import main, parse_args

    main(rest)
    options = parse_args(rest)
    logger("benchmark-finetune").info(f"wrote {render(options.render or options.out)}")


def report_command(args: argparse.Namespace, rest: list[str]) -> None:
    from analysis.report import main

    main(rest)


# name: (summary, arguments, what it runs, whether its own parser takes the rest, the errors shown as messages)
COMMANDS: dict[str, tuple[str, Callable | None, Callable, bool, tuple]] = {
    "sweep": ("pre-train, fine-tune and report every run of a sweep (resumable)", _sweep_args, sweep_command,
              False, INPUT_ERRORS),
    "plan": ("print what a sweep's runs would do, without training", lambda p: _sweep_args(p, plan=True),
             plan_command, False, INPUT_ERRORS),
    "run": ("pre-train and fine-tune one run of a sweep, alone (its run table; the sweep's is a --collect away)",
            _run_args, run_command, False, INPUT_ERRORS),
    "pretrain": ("pre-train one config (variant=... and any key=value)", _pretrain_args, pretrain_command, False,
                 INPUT_ERRORS),
    "data": ("fetch the corpus and GLUE from the Hugging Face hub into the data directory (resumable)", _data_args,
             data_command, False, INPUT_ERRORS),
    "vocab": ("fit a WordPiece vocabulary to corpus files (as the packaged wiki-uncased-8k was)", _vocab_args,
              vocab_command, False, INPUT_ERRORS),
    "finetune": ("fine-tune a transformers ELECTRA directory on GLUE and write the scores", _finetune_args,
                 finetune_command, False, (*INPUT_ERRORS, ValueError, OSError)),
    "export": ("write a run's models in transformers' format (from_pretrained)", _export_args, export_command, False,
               (*INPUT_ERRORS, ValueError, OSError)),
    "benchmark": ("pre-training throughput of every variant vs a plain transformers baseline", None,
                  benchmark_command, True, INPUT_ERRORS),
    "benchmark-finetune": ("GLUE fine-tuning time: a task's seeds one by one vs one batched ensemble", None,
                           finetune_benchmark_command, True, INPUT_ERRORS),
    "report": ("re-render reports from their own results tables (no training)", None, report_command, True,
               INPUT_ERRORS),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m lightning_electra", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n")[1])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (summary, add_args, handler, passthrough, _) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary, add_help=not passthrough)
        if add_args:
            add_args(sub)
        if not passthrough:
            sub.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.steps=100")
        sub.set_defaults(handler=handler)
    command = next((a for a in argv if a in COMMANDS), None)
    if command and COMMANDS[command][3]:  # the tool's own parser takes every argument after the command
        args, rest = parser.parse_args(argv[:argv.index(command) + 1]), argv[argv.index(command) + 1:]
    else:
        args, extra = parser.parse_known_args(argv)  # overrides may follow options: argparse leaves them over
        rest = list(getattr(args, "overrides", [])) + extra
        if any("=" not in o for o in rest):
            parser.error(f"unrecognized arguments: {' '.join(o for o in rest if '=' not in o)}")
    args.argv = argv
    try:
        args.handler(args, rest)
    except COMMANDS[args.command][4] as err:
        sys.exit(f"error: {err}")


def stop_at_once(signum, frame) -> None:
    """SIGTERM stops at once, as SIGKILL would (every file is written whole, so the same command resumes). Lightning's
    own handler only sets a flag its loops read between batches, and misses one sent after their last check (e.g.
    during a validation's last batch): the sweep would go on. os._exit, not sys.exit: a SystemExit raised wherever
    the signal lands can be caught and re-raised as another error by the library running there (OmegaConf does)."""
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(128 + signum)


def run() -> None:
    signal.signal(signal.SIGTERM, stop_at_once)
    main()
