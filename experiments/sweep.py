"""Run a sweep: expand experiments/configs/sweeps/<sweep>.yaml into runs, run each, collect one table, report.

    python -m experiments.sweep training-algorithms [SCALE] [key=value ...]

A sweep file names its runs; each run is a variant plus keys that override the scale's config:

    name: weight-sharing
    paper_experiment: weight_sharing        # rows of analysis/paper/paper_results.csv drawn beside ours
    common: {model: {generator_fraction: 1.0}}
    runs:
      - {name: tie-none, variant: electra, model: {tie: none}}

Runs already finished are skipped, so an interrupted sweep resumes by running the same command again.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from lightning_electra.config import CONFIG_ROOT, ConfigError, config_hash, load_config, pick_scale
from lightning_electra.pretrain import NonFiniteLossError
from lightning_electra.data.corpus import CorpusError
from lightning_electra.data.glue import GlueDataError
from lightning_electra.data.tokenizer import VocabError
from lightning_electra.results import COLUMNS, ResultsError, git_commit, hardware, read_table, write_json, write_table
from lightning_electra.run import budget, generator_width, run, run_dir
from lightning_electra.trainer import global_rank, leave_process_group

# Errors in what the user gave (config, data, files), whose messages say what to do: printed without a traceback.
INPUT_ERRORS = (ConfigError, CorpusError, GlueDataError, VocabError, ResultsError, NonFiniteLossError)

SWEEP_KEYS = {"name", "paper_experiment", "claims", "figure", "budget", "common", "runs"}
# flops: each run derives its steps from train.flops_budget (BERT more than ELECTRA for the same compute);
# electra-steps: every run trains the steps the scale's default ELECTRA gets from it (the paper's generator sizes)
BUDGETS = ("flops", "electra-steps")


def load_sweep(name: str) -> dict:
    path = CONFIG_ROOT / "sweeps" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"No sweep '{name}' ({path} does not exist). Known sweeps: {', '.join(known)}.")
    sweep = OmegaConf.to_container(OmegaConf.load(path))
    unknown = set(sweep) - SWEEP_KEYS
    if unknown:
        raise ConfigError(f"Unknown key(s) {sorted(unknown)} in {path}; a sweep file holds {sorted(SWEEP_KEYS)}.")
    names = [r.get("name") for r in sweep.get("runs", [])]
    if not names or None in names or len(set(names)) != len(names):
        raise ConfigError(f"{path}: every run needs a unique `name`; got {names}.")
    if sweep.get("budget", "flops") not in BUDGETS:
        raise ConfigError(f"{path}: budget must be one of {', '.join(BUDGETS)}; got {sweep['budget']}.")
    return sweep


def sweep_configs(name: str, scale: str | None, overrides: list[str], announce: bool = False):
    """The sweep file and one config per run: scale <- variant <- the sweep's common keys <- (with `budget:
    electra-steps`, the reference step count) <- the run's keys <- its keys for this scale (`at_scale`) <- overrides."""
    sweep = load_sweep(name)
    scale = pick_scale(scale, overrides, announce)
    common = [(sweep.get("common") or {}, f"sweep {name} common")]
    if sweep.get("budget") == "electra-steps":
        reference = budget(load_config(scale, variant="electra", layers=common, overrides=overrides))["steps"]
        common.append(({"train": {"steps": reference}}, f"sweep {name}: the steps of the scale's ELECTRA"))
    configs = []
    for r in sweep["runs"]:
        keys = {k: v for k, v in r.items() if k != "at_scale"}
        own = (r.get("at_scale") or {}).get(scale) or {}
        configs.append(load_config(scale, layers=[*common, (keys, f"sweep {name} run {r['name']}"),
                                                  (own, f"sweep {name} run {r['name']} at scale {scale}")],
                                   overrides=overrides))
    return sweep, configs


PLAN_COLUMNS = ["run", "variant", "generator", "tie", "steps", "batch_size", "paper_flops", "checkpoints", "tasks",
                "seeds", "finetunes"]


def plan_rows(configs) -> list[dict]:
    """What each run will do, from its config and the vocabulary alone (no training, no data read)."""
    from lightning_electra.data.glue_tasks import available_tasks, glue_root

    rows = []
    for cfg in configs:
        b = budget(cfg)
        files = cfg.finetune.source == "files" and glue_root(cfg.data.data_dir).is_dir()
        tasks = available_tasks(cfg.data.data_dir, cfg.finetune.tasks)[0] if files else list(cfg.finetune.tasks)
        width = generator_width(cfg)
        rows.append({"run": cfg.name, "variant": cfg.variant,
                     "generator": "-" if width is None else cfg.model.generator if width == 0 else width,
                     "tie": "-" if width is None else cfg.model.tie, "steps": b["steps"], "batch_size": cfg.train.batch_size,
                     "paper_flops": b["paper_flops"], "checkpoints": " ".join(map(str, b["checkpoints"])),
                     "tasks": ",".join(tasks), "seeds": cfg.finetune.seeds,
                     "finetunes": len(b["checkpoints"]) * len(tasks) * cfg.finetune.seeds})
    return rows


def print_plan(sweep: str, configs, style: str) -> None:
    rows = plan_rows(configs)
    frame = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    if style == "csv":
        print(frame.to_csv(index=False), end="")
        return
    from lightning_electra.data.glue_tasks import glue_root

    cfg = configs[0]
    root = glue_root(cfg.data.data_dir)
    where = ("GLUE from the hub" if cfg.finetune.source == "hub" else f"the GLUE tasks with files under {root}"
             if root.is_dir() else f"no GLUE files under {root} (set DATA_DIR): every task of finetune.tasks listed")
    print(f"[plan] {sweep} at scale {cfg.scale}: {len(rows)} runs; {where}")
    shown = frame.assign(paper_flops=frame["paper_flops"].map(lambda f: f"{f:.3g}"),
                         steps=frame["steps"].map(lambda n: f"{n:,}"))
    print(shown.to_string(index=False))
    print(f"[plan] total: {frame['steps'].sum():,} steps, {frame['paper_flops'].sum():.3g} paper FLOPs, "
          f"{frame['finetunes'].sum():,} fine-tunes")


def collect(name: str, scale: str, tables: list[Path], results_dir: Path) -> Path:
    """The sweep's table: this scale's runs as now configured, plus rows of other scales already there."""
    path = results_dir / name / "results.csv"
    frames = [read_table(t, sweep=name) for t in tables]
    if path.exists():
        frames.insert(0, read_table(path, sweep=name).query("scale != @scale"))
    write_table(pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS), path)
    return path


def record_invocation(meta_path: Path, sweep: dict, runs: dict, command: str, seconds: float) -> None:
    """Provenance for the report: each invocation's command, commit, hardware, time, and each run's budget."""
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"invocations": []}
    meta.update({"paper_experiment": sweep.get("paper_experiment"), "claims": sweep.get("claims", []),
                 "figure": sweep.get("figure"), "runs": runs})
    meta["invocations"].append({"command": command, "commit": git_commit(), "hardware": hardware(),
                                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                "seconds": round(seconds, 1)})
    write_json(meta_path, meta)


def select(configs, runs: str | None, sweep: str):
    """The runs named in `runs` (comma-separated), in the sweep's order; all of them when None."""
    wanted = [name.strip() for name in runs.split(",")] if runs else [c.name for c in configs]
    unknown = sorted(set(wanted) - {c.name for c in configs})
    if unknown:
        raise ConfigError(f"no run named {', '.join(unknown)} in sweep {sweep}; its runs: "
                          f"{', '.join(c.name for c in configs)}.")
    return [c for c in configs if c.name in wanted]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a file name under experiments/configs/sweeps/ (without .yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.steps=100")
    parser.add_argument("--scale", default=None, help="smoke | tiny | small | base (default: $SCALE, else auto)")
    parser.add_argument("--no-report", action="store_true", help="only run and collect; skip the report")
    parser.add_argument("--reports-dir", default=None, help="where reports go (default: analysis/reports)")
    parser.add_argument("--runs", default=None, help="comma-separated run names: run only these now (a sweep in "
                        "pieces, e.g. one per command on a lent machine); the table and report take every finished run")
    parser.add_argument("--plan", nargs="?", const="table", choices=["table", "csv"], default=None,
                        help="print what each run would do (steps, FLOPs, checkpoints, fine-tunes) and stop; csv: as "
                        "CSV for scripts")
    args = parser.parse_intermixed_args(argv)
    start = time.time()
    try:
        sweep, configs = sweep_configs(args.sweep, args.scale, args.overrides, announce=args.plan != "csv")
        if args.plan:
            return print_plan(args.sweep, select(configs, args.runs, args.sweep), args.plan)
    except INPUT_ERRORS as err:
        sys.exit(f"error: {err}")
    scale, results_dir = configs[0].scale, Path(configs[0].results_dir)
    try:
        selected = select(configs, args.runs, args.sweep)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    print(f"[sweep] {args.sweep} at scale {scale}: {len(selected)} of {len(configs)} runs "
          f"({', '.join(c.name for c in selected)})", flush=True)
    table_path, current = results_dir / args.sweep / "results.csv", None
    try:
        if table_path.exists():  # another sweep's table in this one's place: say so before any training
            read_table(table_path, sweep=args.sweep)
        # Pre-train every run first, then fine-tune each. Under a distributed launch every rank runs this and takes
        # part in each pre-training, then only rank 0 fine-tunes and writes: fine-tuning between pre-trainings
        # would leave the other ranks waiting in the next run's first collective, which times out (30 minutes).
        for current in selected:
            run(current, args.sweep, finetune=False)
        leave_process_group()
        if global_rank() != 0:
            return
        for current in selected:
            run(current, args.sweep)
    except BaseException as err:
        # Nothing is lost: every finished stage of every run is on disk, and the sweep's table is only written below
        if current is not None:
            print(f"[sweep] stopped at run {current.name}. Finished pre-trainings, fine-tunes and run tables are "
                  f"kept ({results_dir / args.sweep / scale}) and {table_path} is as it was; running the same "
                  "command again skips what is done.", file=sys.stderr, flush=True)
        if isinstance(err, INPUT_ERRORS):  # a diverged run, bad data or config: the message says what to do
            sys.exit(f"error: {err}")
        raise
    # every run of the sweep finished so far (this command's and earlier pieces'), in the sweep file's order
    finished = [(cfg, run_dir(cfg, args.sweep) / f"results-{config_hash(cfg)}.csv") for cfg in configs]
    finished = [(cfg, table) for cfg, table in finished if table.exists()]
    missing = [cfg.name for cfg in configs if cfg.name not in {c.name for c, _ in finished}]
    if missing:  # a sweep in pieces, or pieces run with other settings (which make other runs)
        print(f"[sweep] the table holds {len(finished)} of {len(configs)} runs; not finished with these settings: "
              f"{', '.join(missing)}", flush=True)
    try:
        table_path = collect(args.sweep, scale, [table for _, table in finished], results_dir)
    except INPUT_ERRORS as err:
        sys.exit(f"error: {err}")
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "experiments.sweep", *(argv or sys.argv[1:])])
    if os.environ.get("DATA_DIR"):
        command = f"DATA_DIR={shlex.quote(os.environ['DATA_DIR'])} {command}"
    runs = {cfg.name: json.loads((table.parent / "pretrain.json").read_text()) for cfg, table in finished}
    record_invocation(results_dir / args.sweep / scale / "sweep.json", sweep, runs, command, time.time() - start)
    print(f"[sweep] results: {table_path}", flush=True)
    if not args.no_report:
        from analysis.report import REPORTS, build_report, write_index

        reports = Path(args.reports_dir) if args.reports_dir else REPORTS
        print(f"[sweep] report: {build_report(args.sweep, scale, results_dir, reports)}", flush=True)
        write_index(reports)


if __name__ == "__main__":
    # SIGTERM stops at once, as SIGKILL would (every file is written whole, so the same command resumes). Lightning's
    # own handler only sets a flag its loops read between batches, and misses one sent after their last check (e.g.
    # during a validation's last batch): the sweep would go on. os._exit, not sys.exit: a SystemExit raised wherever
    # the signal lands can be caught and re-raised as another error by the library running there (OmegaConf does).
    def stop(signum, frame):
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    main()
