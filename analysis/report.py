"""Reports from results tables alone: a figure of GLUE against pre-training FLOPs and a summary in Markdown.

    python -m lightning_electra report                     # re-render every report under analysis/reports/
    python -m lightning_electra report training-algorithms --scale smoke   # refresh one from results/, render it

A report directory `analysis/reports/<scale>/<sweep>/` holds its own inputs (`results.csv`, `sweep.json`), so it
can be re-plotted anywhere without re-running anything and without the run directories.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from analysis.claims import (CLAIMS_HEADER, PAPER_WORDS, arm_curves, arm_lines, arms, check_claim, control_arm,
                             control_lines, reading, verdict)
from analysis.figures import CAVEATS, glue_label, palette, plot_exit_weights, plot_glue_vs_flops, plot_glue_vs_width
from lightning_electra.config import GLUE_TASKS
from lightning_electra.io import atomic_write_text
from lightning_electra.results import ResultsError, glue_scores, read_table, write_table

HERE = Path(__file__).resolve().parent
REPORTS = HERE / "reports"
PAPER = HERE / "paper" / "paper_results.csv"
SCORED = GLUE_TASKS  # the eight scored tasks (WNLI left out, as in the paper)


class NothingToReport(ResultsError):
    """A sweep's table with no GLUE score at a scale yet: no run of it has finished there."""


def build_report(sweep: str, scale: str, results_dir: Path, reports: Path = REPORTS) -> Path:
    """Copy this scale's rows and provenance of a sweep into its report directory, then render it. All is checked
    first, so a report is never replaced by a report of nothing."""
    table_path, meta_path = results_dir / sweep / "results.csv", results_dir / sweep / scale / "sweep.json"
    for path in (table_path, meta_path):
        if not path.exists():
            raise ResultsError(f"no {path.name} at {path}: no run of {sweep} has finished at scale {scale} under "
                               f"{results_dir}. Run the sweep (make {sweep} SCALE={scale}) or give the results "
                               "directory it wrote (--results-dir).")
    table = read_table(table_path, sweep=sweep)
    table = table[table["scale"] == scale]
    out = reports / scale / sweep
    if not (table["metric"] == "score").any():
        raise NothingToReport(f"{table_path} holds no GLUE score at scale {scale} yet (no run of {sweep} has "
                              f"finished there): nothing to report, {out} is left as it was.")
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / "results.csv")
    atomic_write_text(out / "sweep.json", meta_path.read_text())
    render(out)
    return out


def glue_table(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per (run, step): each task's median over fine-tuning seeds, their mean (GLUE: lightning_electra.results'
    aggregate), and the spread of GLUE over seeds (min / max of the per-seed GLUE). Returns (glue, tasks averaged)."""
    scores = results[(results["metric"] == "score") & results["task"].isin(SCORED)]
    tasks = [t for t in SCORED if t in set(scores["task"])]
    keys = ["run", "variant", "step", "tokens", "flops_paper", "flops_measured"]
    wide = glue_scores(scores, keys, tasks)
    per_seed = scores.groupby(keys + ["finetune_seed"], dropna=False)["value"].mean().reset_index()
    spread = per_seed.groupby(keys, dropna=False)["value"].agg(glue_min="min", glue_max="max").reset_index()
    glue = wide.merge(spread, on=keys).merge(constant_tasks(results, keys, tasks), on=keys, how="left")
    glue["constant_tasks"] = glue["constant_tasks"].apply(lambda t: t if isinstance(t, tuple) else ())
    glue["degenerate"] = glue["constant_tasks"].apply(len) * 2 >= len(tasks)
    return glue.sort_values(["run", "step"]), tasks


def constant_tasks(results: pd.DataFrame, keys: list[str], tasks: list[str]) -> pd.DataFrame:
    """Per (run, step): the tasks whose every fine-tuning seed predicted one class (or one score) on dev: a score
    that is the majority class's, not something learnt. Results without the `constant` metric mark none."""
    flags = results[(results["metric"] == "constant") & results["task"].isin(tasks)]
    every_seed = flags.groupby(keys + ["task"], dropna=False)["value"].min().reset_index()
    constant = every_seed[every_seed["value"] > 0]
    return constant.groupby(keys, dropna=False)["task"].agg(lambda t: tuple(sorted(t))).reset_index().rename(
        columns={"task": "constant_tasks"}) if len(constant) else pd.DataFrame(columns=[*keys, "constant_tasks"])


def paper_rows(experiment: str | None) -> pd.DataFrame:
    if not experiment or not PAPER.exists():
        return pd.DataFrame()
    paper = pd.read_csv(PAPER)
    paper = paper[paper["experiment"] == experiment]
    return paper.assign(variant=paper["variant"].str.replace("_", "-"))  # one name per variant: ours (two-stage)


def exit_weights(runs: dict) -> dict[str, pd.DataFrame]:
    """AMOS runs' mixture weight of each exit along training (from pretrain.json via sweep.json): run -> frame with
    a `step` column and one column per exit."""
    frames = {}
    for run, info in runs.items():
        if info.get("exit_weights"):
            frames[run] = pd.DataFrame(info["exit_weights"], columns=["step"] + [f"exit {e}" for e in info["exits"]])
    return frames


def exit_weight_lines(frames: dict[str, pd.DataFrame]) -> list[str]:
    """A table of each exit's weight at the first and last logged step, and whether the deepest exit rose."""
    lines = ["| run | exit | weight at first log | weight at end | deepest exit rose |", "|---|---|---|---|---|"]
    for run, frame in frames.items():
        first, last = frame.iloc[0], frame.iloc[-1]
        deepest = frame.columns[-1]
        rose = ("yes" if last[deepest] > first[deepest] else "no") if len(frame.columns) > 2 else "(one exit)"
        for exit_ in frame.columns[1:]:
            lines.append(f"| {run} | {exit_} | {first[exit_]:.3f} (step {int(first['step'])}) | "
                         f"{last[exit_]:.3f} (step {int(last['step'])}) | {rose if exit_ == deepest else ''} |")
    return lines


def steps_lines(by_arm: pd.DataFrame) -> list[str]:
    """How many steps each arm trained against ELECTRA's, where they differ: at one FLOPs budget a costlier step buys
    fewer of them (All-Tokens MLM's full-vocabulary softmax), a cheaper one more (BERT)."""
    trained = by_arm[by_arm["step"] > 0].set_index("arm")["step"]
    if "electra" not in trained or trained.nunique() <= 1:
        return []
    ref = trained["electra"]
    other = [f"{arm} {abs(1 - steps / ref):.0%} {'fewer' if steps < ref else 'more'}" for arm, steps in trained.items()
             if arm != "electra" and steps != ref]
    return ["", f"Steps against ELECTRA's {int(ref):,} (each run's own from the sweep's budget): {', '.join(other)}."]


def paper_table(paper: pd.DataFrame) -> list[str]:
    """The paper's GLUE as a compact Markdown table: one row per variant, one column per FLOPs or G width."""
    size = lambda x: "" if pd.isna(x) else f"{int(x)}"  # noqa: E731
    several = paper.groupby("variant").size().max() > 1  # a curve per variant: one column per point
    if several and paper["pretrain_flops"].nunique() > 1:
        key, heading = "pretrain_flops", lambda c: f"{c:.2g}"
    elif several and paper["gen_hidden"].nunique() > 1:
        paper = paper.assign(variant=paper["variant"] + " D " + paper["disc_hidden"].map(size))
        key, heading = "gen_hidden", lambda c: f"G {size(c)}"
    else:
        return ["| variant | D hidden | G hidden | pre-train FLOPs | GLUE dev |", "|---|---|---|---|---|",
                *[f"| {p['variant']} | {size(p['disc_hidden'])} | {size(p['gen_hidden'])} | "
                  f"{'' if pd.isna(p['pretrain_flops']) else f'{p.pretrain_flops:.2g}'} | {p['glue_dev']} |"
                  for _, p in paper.iterrows()]]
    wide = paper.pivot_table(index="variant", columns=key, values="glue_dev", sort=False)
    lines = ["| variant | " + " | ".join(heading(c) for c in wide.columns) + " |", "|---|" + "---|" * len(wide.columns)]
    for variant, row in wide.iterrows():
        lines.append(f"| {variant} | " + " | ".join("" if pd.isna(v) else f"{v:.1f}" for v in row) + " |")
    return lines


def adopted_lines(adopted: dict[str, str]) -> list[str]:
    """The runs whose rows another sweep's table gave (the same run, by config hash): made by that sweep's
    invocations, not counted in this one's wall time."""
    if not adopted:
        return []
    runs = ", ".join(f"{run} (from [{source}](../{source}/summary.md))" for run, source in adopted.items())
    return ["", f"Not re-run, their rows those of the same runs (same config hash) in other sweeps, whose invocations "
            f"made them and whose wall time they are: {runs}."]


def render(out: Path) -> None:
    """Write glue_vs_flops.png and summary.md from out/results.csv and out/sweep.json alone."""
    if not (out / "sweep.json").exists():
        raise ResultsError(f"{out} has a results.csv but no sweep.json beside it: not a report (a copy cut short?). "
                           "Remove it, or write it again from its results (python -m lightning_electra report <sweep> "
                           "--scale S --results-dir DIR).")
    results = read_table(out / "results.csv")
    meta = json.loads((out / "sweep.json").read_text())
    sweep, scale = out.name, out.parent.name
    glue, tasks = glue_table(results)
    if glue.empty:
        raise NothingToReport(f"{out / 'results.csv'} has no GLUE scores to report.")
    paper = paper_rows(meta.get("paper_experiment"))
    colors = palette(meta.get("variants") or list(dict.fromkeys(results["variant"])))
    plot_glue_vs_flops(arm_curves(glue), tasks, paper, f"{sweep}, scale {scale}", out / "glue_vs_flops.png", colors,
                       scale)
    final = glue.sort_values("step").groupby("run", sort=False).tail(1)
    by_arm = arms(final, tasks)
    figures = ["![GLUE vs pre-train FLOPs](glue_vs_flops.png)"]
    if meta.get("figure") == "generator_width":
        widths = {run: info.get("generator_hidden") for run, info in meta.get("runs", {}).items()}
        plot_glue_vs_width(final, widths, tasks, paper, f"{sweep}, scale {scale}", out / "glue_vs_generator_width.png",
                           scale)
        figures.insert(0, "![GLUE vs generator width](glue_vs_generator_width.png)")
    mixtures = exit_weights(meta.get("runs", {}))
    if mixtures:
        plot_exit_weights(mixtures, f"{sweep}, scale {scale}", out / "exit_weights.png")
        figures.append("![Mixture weight of each exit](exit_weights.png)")
    label = glue_label(tasks)
    seeds = results["finetune_seed"].nunique()
    fmt = lambda x: f"{x:.1f}"  # noqa: E731
    lines = [f"# {sweep} ({scale})", "",
             f"{label} = mean over {', '.join(tasks)} of each task's median over {seeds} fine-tuning seed(s) "
             "(dev sets; CoLA: MCC, STS-B: Spearman, others: accuracy; x100). Spread: min-max over seeds of the "
             "per-seed GLUE.", "",
             *figures, "", *([f"**{CAVEATS[scale]}.**", ""] if scale in CAVEATS else []),
             "## Final checkpoints", "",
             f"| run | variant | steps | tokens | paper FLOPs | measured FLOPs | pre-train time | {label} | spread |",
             "|---|---|---|---|---|---|---|---|---|"]
    runs = meta.get("runs", {})
    for _, r in final.iterrows():
        seconds = runs.get(r["run"], {}).get("seconds")
        lines.append(f"| {r['run']} | {r['variant']} | {int(r['step'])} | {int(r['tokens']):,} | "
                     f"{r['flops_paper']:.3g} | {r['flops_measured']:.3g} | "
                     f"{'' if seconds is None else f'{seconds:.0f} s'} | {fmt(r['GLUE'])} | "
                     f"{fmt(r['glue_min'])}-{fmt(r['glue_max'])} |")
    lines += steps_lines(by_arm)
    lines += ["", "## Per task (final checkpoint, median over seeds)", "",
              "| run | " + " | ".join(tasks) + f" | {label} |", "|---|" + "---|" * (len(tasks) + 1)]
    for _, r in final.iterrows():
        lines.append(f"| {r['run']} | " + " | ".join(fmt(r[t]) + ("*" if t in r["constant_tasks"] else "")
                                                      for t in tasks) + f" | {fmt(r['GLUE'])} |")
    if any(len(t) for t in final["constant_tasks"]):
        lines += ["", "\\* every fine-tuning seed predicted one class (or one score) on dev: the majority class's "
                  "score, nothing learnt."]
    lines += ["", "## Along the pre-training budget", "", f"| run | step | paper FLOPs | {label} | spread |",
              "|---|---|---|---|---|"]
    for _, r in glue.iterrows():
        lines.append(f"| {r['run']} | {int(r['step'])} | {r['flops_paper']:.3g} | {fmt(r['GLUE'])} | "
                     f"{fmt(r['glue_min'])}-{fmt(r['glue_max'])} |")
    lines += arm_lines(by_arm, tasks, label)
    lines += control_lines(by_arm)
    if mixtures:
        lines += ["", "## Mixture weights of the generator's exits", "",
                  "Mean over masked positions of each exit's weight (learned: the mixture's softmax; random, equal: "
                  "1/k; layer switch: the exit in use), logged every `train.log_every_n_steps` steps.", "",
                  *exit_weight_lines(mixtures)]
    if meta.get("claims"):
        lines += ["", "## The paper's claims, on our numbers", "",
                  "Decided only where each side has several pre-training seeds whose ranges are apart: pre-training "
                  "itself moves GLUE, more than several of the paper's gaps.", "",
                  *CLAIMS_HEADER, *[check_claim(c, by_arm) for c in meta["claims"]], "",
                  reading(meta["claims"], by_arm)]
    if not paper.empty:
        lines += ["", f"## The paper's numbers ({meta.get('paper_experiment')}; {paper['source'].iloc[0]})", ""]
        lines += paper_table(paper)
    total = sum(i["seconds"] for i in meta["invocations"])
    lines += ["", "## How this was made", "",
              f"Wall time {total:.0f} s over {len(meta['invocations'])} invocation(s) (a re-run skips finished "
              "runs).", *adopted_lines(meta.get("adopted", {})), "",
              "| command | runs | commit | hardware | finished (UTC) | seconds |",
              "|---|---|---|---|---|---|"]
    for i in meta["invocations"]:  # runs: those it ran (a sweep in pieces: one piece each); not recorded before
        runs = (", ".join(i["runs"]) or "none (all done before)") if "runs" in i else "not recorded"
        lines.append(f"| `{i['command']}` | {runs} | {i['commit']} | {i['hardware']} | {i['finished']} | "
                     f"{i['seconds']} |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")


def finding(out: Path) -> str:
    """One line for the index: final GLUE of each run (best first) and how many of the paper's claims agree."""
    results = read_table(out / "results.csv")
    meta = json.loads((out / "sweep.json").read_text())
    glue, tasks = glue_table(results)
    final = glue.sort_values("step").groupby("run", sort=False).tail(1)
    by_arm = arms(final, tasks).sort_values("GLUE", ascending=False)
    scores = ", ".join(f"{r['arm']} {r['GLUE']:.1f}" + (f" ({r['seeds']} seeds)" if r["seeds"] > 1 else "")
                       for _, r in by_arm.iterrows())
    line = f"final {glue_label(tasks)}: {scores}"
    if (control := control_arm(by_arm)) is not None and len(by_arm) > 1:
        above = [arm for arm in by_arm["arm"]
                 if arm != control and verdict(f"{arm} > {control}", by_arm) == PAPER_WORDS[0]]
        line += f"; above the control beyond the spread: {', '.join(above) or 'none'}"
    verdicts = [verdict(c, by_arm) for c in meta.get("claims", [])]
    tested = [v for v in verdicts if not v.startswith("not tested")]
    if verdicts:
        count = lambda *starts: sum(v.startswith(starts) for v in tested)  # noqa: E731
        line += (f"; the paper's claims, of {len(tested)} tested: {count('agrees')} agree, {count('disagrees')} "
                 f"disagree, {count('not decided', 'undecided')} not decided (too few pre-training seeds, "
                 "ranges that overlap, or degenerate fine-tunes)")
        if len(tested) < len(verdicts):
            line += f", {len(verdicts) - len(tested)} not tested (runs missing)"
    return line


def write_index(reports: Path = REPORTS) -> Path:
    """analysis/reports/README.md: every report with its one-line finding, made from the reports themselves."""
    lines = ["# Reports", "", "Made by the suite's own commands (`make <sweep> SCALE=...`; each summary says which, "
             "with commit, hardware and wall time). `make reports` redraws every report and this index from the "
             "results tables alone.", ""]
    for scale in sorted({p.parent.parent.name for p in reports.glob("*/*/results.csv")}):
        lines += [f"## Scale `{scale}`", ""]
        if scale in CAVEATS:
            lines += [f"{CAVEATS[scale]}.", ""]
        for out in sorted(reports.glob(f"{scale}/*/results.csv")):
            lines.append(f"- [{out.parent.name}]({scale}/{out.parent.name}/summary.md): {finding(out.parent)}")
        lines.append("")
    calibrations = sorted(reports.glob("*/calibration.md"))
    if calibrations:
        lines += ["## Calibration", ""]
        lines += [f"- [{p.parent.name}]({p.parent.name}/calibration.md): the probes that sized scale "
                  f"`{p.parent.name}`, their learning curves and costs." for p in calibrations] + [""]
    benchmarks = [f"- [{title}](benchmark/{file}): {what}" for file, title, what in [
        ("benchmark.md", "benchmark", "pre-training tokens/s of every variant against a plain transformers baseline "
         "(`make benchmark`)."),
        ("finetune.md", "fine-tuning", "GLUE fine-tuning time, a task's seeds one by one against one batched "
         "ensemble (`make benchmark-finetune`).")] if (reports / "benchmark" / file).exists()]
    if (reports / "benchmark" / "cpu" / "README.md").exists():
        benchmarks.append("- [two CPU cores](benchmark/cpu/README.md): pre-training and GLUE against issue 32's targets, "
                          "with the code before beside them.")
    for window in sorted((reports / "benchmark" / "windows").glob("*/")):  # experiments/land_window.sh
        made = json.loads(p.read_text()) if (p := window / "provenance.json").exists() else {}
        on = f" on {made['device']}, commit {made.get('commit')}" if "device" in made else ""
        benchmarks += [f"- [{window.name}, {what}](benchmark/windows/{window.name}/{file}): a GPU window's {what}{on}."
                       for file, what in [("benchmark.md", "pre-training"), ("finetune.md", "fine-tuning")]
                       if (window / file).exists()]
    if benchmarks:
        lines += ["## Throughput", "", *benchmarks, ""]
    path = reports / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lightning_electra report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", nargs="?", help="refresh this sweep's report from results/ (default: re-render all)")
    parser.add_argument("--scale", default="smoke")
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args(argv)
    if args.sweep:
        print(build_report(args.sweep, args.scale, Path(args.results_dir)))
        write_index()
        return
    outs = sorted(p.parent for p in REPORTS.glob("*/*/results.csv"))
    for out in outs:
        render(out)
        print(f"rendered {out}")
    if not outs:
        print(f"no reports under {REPORTS} yet: run a sweep first (make help)")
        return
    print(f"index: {write_index()}")


if __name__ == "__main__":
    main()
