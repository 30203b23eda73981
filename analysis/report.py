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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lightning_electra.config import GLUE_TASKS  # noqa: E402
from lightning_electra.io import atomic, atomic_write_text  # noqa: E402
from lightning_electra.results import ResultsError, glue_scores, read_table, write_table  # noqa: E402

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


def glue_label(tasks: list[str]) -> str:
    return f"GLUE-{len(tasks)}" if len(tasks) < len(SCORED) else "GLUE"


def paper_rows(experiment: str | None) -> pd.DataFrame:
    if not experiment or not PAPER.exists():
        return pd.DataFrame()
    paper = pd.read_csv(PAPER)
    paper = paper[paper["experiment"] == experiment]
    return paper.assign(variant=paper["variant"].str.replace("_", "-"))  # one name per variant: ours (two-stage)


def palette(variants: list[str]) -> dict[str, str]:
    """One colour per variant in both panels, from the suite's list of variants (sweep.json): the same variant has
    the same colour in every report."""
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    return colors


def draw_paper(ax, paper: pd.DataFrame, colors: dict[str, str]) -> None:
    """The paper's numbers for one experiment, in the form its figure or table has."""
    experiment = paper["experiment"].iloc[0]
    if experiment == "generator_size":
        for d, g in paper.groupby("disc_hidden"):
            learned = g[g["variant"] == "learned"].sort_values("gen_hidden")
            line = ax.plot(learned["gen_hidden"], learned["glue_dev"], marker="s", linestyle="--", label=f"D {int(d)}")[0]
            unigram = g[g["variant"] == "unigram"]
            ax.scatter([8] * len(unigram), unigram["glue_dev"], marker="x", color=line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_xlabel("generator hidden size (x at left: unigram)")
        ax.legend(fontsize=8)
    elif paper["pretrain_flops"].notna().all() and paper["pretrain_flops"].nunique() > 1:
        for variant, g in paper.groupby("variant", sort=False):
            ax.plot(g["pretrain_flops"], g["glue_dev"], marker="s", linestyle="--", label=variant, color=colors.get(variant))
        ax.set_xscale("log")
        readable_log_ticks(ax, paper["pretrain_flops"])
        ax.set_xlabel("the paper's pre-train FLOPs (paper convention)")
        ax.legend(fontsize=8)
    else:
        ax.bar(range(len(paper)), paper["glue_dev"], color="grey")
        ax.set_xticks(range(len(paper)), paper["variant"], fontsize=7, rotation=20)
        ax.set_ylim(paper["glue_dev"].min() - 3, paper["glue_dev"].max() + 1)
    ax.set_ylabel("the paper's GLUE dev score (8 tasks)")
    ax.set_title("the paper's numbers, on their own axes (ELECTRA-Base scale\nunless noted; "
                 "analysis/paper/paper_results.csv)", fontsize=9)
    ax.grid(alpha=0.3)


def save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


# What a scale's numbers cannot say, on its figures, its summaries and the reports' index.
CAVEATS = {"smoke": "Scale smoke is a pipeline check (2-layer, 64-wide models, a few hundred steps and fine-tuning "
                    "examples): its differences are noise, not findings"}


def figure(paper: pd.DataFrame, colors: dict[str, str], scale: str):
    """Our panel, and the paper's beside it on its own axes (its FLOPs and GLUE are another scale's); the scale's
    caveat across the top."""
    with_paper = not paper.empty
    fig, axes = plt.subplots(1, 2 if with_paper else 1, figsize=(11 if with_paper else 6, 4.6), squeeze=False)
    if with_paper:
        draw_paper(axes[0][1], paper, colors)
    if scale in CAVEATS:
        fig.suptitle(CAVEATS[scale], fontsize=9, color="firebrick")
    return fig, axes[0][0]


def readable_log_ticks(ax, values) -> None:
    """Ticks at the points drawn, compactly labelled, at most six and none within 30% of another: a log axis over
    less than a decade prints its minor ticks' labels over one another."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    points: list[float] = []
    for v in sorted({float(v) for v in values if v == v and v > 0}):
        if not points or v > points[-1] * 1.3:
            points.append(v)
    if len(points) > 6:
        points = [points[round(i * (len(points) - 1) / 5)] for i in range(6)]
    ax.xaxis.set_major_locator(FixedLocator(points))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: compact(x)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def compact(x: float) -> str:
    """1.7e12 for 1.7 x 10^12, 64 for 64."""
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2g}".replace("e+", "e")


def plot_glue_vs_flops(glue: pd.DataFrame, tasks: list[str], paper: pd.DataFrame, title: str, path: Path,
                       colors: dict[str, str], scale: str) -> None:
    fig, ax = figure(paper if paper.empty or paper["experiment"].ne("generator_size").all() else paper.iloc[:0],
                     colors, scale)
    several_per_variant = glue.groupby("variant")["run"].nunique().max() > 1
    for run, g in glue.groupby("run", sort=False):
        variant = g["variant"].iloc[0]
        label = run if run == variant else f"{run} ({variant})"
        line = ax.plot(g["flops_paper"], g["GLUE"], marker="o", label=label,
                       color=None if several_per_variant else colors.get(variant))[0]
        ax.fill_between(g["flops_paper"], g["glue_min"], g["glue_max"], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    readable_log_ticks(ax, glue["flops_paper"])
    finish(fig, ax, "our pre-train FLOPs (paper convention)", tasks, f"{title}\n(median over fine-tuning seeds; "
           "band: min-max)", path)


def finish(fig, ax, xlabel: str, tasks: list[str], title: str, path: Path) -> None:
    """Labels of our panel, then save the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{glue_label(tasks)} dev score")
    ax.set_title(f"ours: {title}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(fig, path)


def plot_glue_vs_width(final: pd.DataFrame, widths: dict, tasks: list[str], paper: pd.DataFrame, title: str,
                       path: Path, scale: str) -> None:
    """Paper Fig. 3 left: final GLUE against generator width; a unigram generator (width 0) as its own marker."""
    fig, ax = figure(paper, {}, scale)
    final = final.assign(width=final["run"].map(widths)).dropna(subset=["width"]).sort_values("width")
    learned, unigram = final[final["width"] > 0], final[final["width"] == 0]
    ax.errorbar(learned["width"], learned["GLUE"], yerr=[learned["GLUE"] - learned["glue_min"],
                learned["glue_max"] - learned["GLUE"]], marker="o", capsize=3, label="learned generator")
    if not unigram.empty:
        ax.errorbar([learned["width"].min() / 2] * len(unigram), unigram["GLUE"], marker="x", linestyle="none",
                    yerr=[unigram["GLUE"] - unigram["glue_min"], unigram["glue_max"] - unigram["GLUE"]],
                    capsize=3, label="unigram (drawn at left)")
    ax.set_xscale("log", base=2)
    readable_log_ticks(ax, [*learned["width"], *([learned["width"].min() / 2] if not unigram.empty else [])])
    finish(fig, ax, "our generator's hidden size", tasks, f"{title}\n(median over fine-tuning seeds; bars: min-max)", path)


def exit_weights(runs: dict) -> dict[str, pd.DataFrame]:
    """AMOS runs' mixture weight of each exit along training (from pretrain.json via sweep.json): run -> frame with
    a `step` column and one column per exit."""
    frames = {}
    for run, info in runs.items():
        if info.get("exit_weights"):
            frames[run] = pd.DataFrame(info["exit_weights"], columns=["step"] + [f"exit {e}" for e in info["exits"]])
    return frames


def plot_exit_weights(frames: dict[str, pd.DataFrame], title: str, path: Path) -> None:
    """One panel per run: each exit's mean mixture weight over the masked positions, along pre-training."""
    cols = min(3, len(frames))
    rows = -(-len(frames) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False, sharey=True)
    for ax, (run, frame) in zip(axes.flat, frames.items()):
        for exit_ in frame.columns[1:]:
            ax.plot(frame["step"], frame[exit_], label=exit_)
        ax.set_title(run, fontsize=9)
        ax.set_xlabel("pre-training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(frames):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("mixture weight")
    fig.suptitle(f"{title}: mixture weight of each generator exit (the AMOS paper: the deepest rises)", fontsize=9)
    save(fig, path)


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


def check_claim(claim: str, final: pd.DataFrame) -> str:
    """'a > b' on final-checkpoint GLUE: agrees or disagrees when the seed ranges are apart and neither side is
    degenerate (one class predicted on at least half the tasks); undecided otherwise, saying why."""
    left, right = (s.strip() for s in claim.split(">"))
    rows = {r["run"]: r for _, r in final.iterrows()}
    if left not in rows or right not in rows:
        return f"| {claim} | not tested (runs missing) | |"
    a, b = rows[left], rows[right]
    degenerate = [r["run"] for r in (a, b) if r["degenerate"]]
    overlap = a["glue_min"] <= b["glue_max"] and b["glue_min"] <= a["glue_max"]
    if degenerate:
        verdict = f"undecided ({' and '.join(degenerate)} predict one class on most tasks)"
    elif overlap:
        verdict = "undecided (the seed ranges overlap)"
    else:
        verdict = "agrees" if a["GLUE"] > b["GLUE"] else "disagrees"
    return (f"| {claim} | {verdict} | {a['GLUE']:.1f} [{a['glue_min']:.1f}, {a['glue_max']:.1f}] vs "
            f"{b['GLUE']:.1f} [{b['glue_min']:.1f}, {b['glue_max']:.1f}] |")


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
    plot_glue_vs_flops(glue, tasks, paper, f"{sweep}, scale {scale}", out / "glue_vs_flops.png", colors, scale)
    final = glue.sort_values("step").groupby("run", sort=False).tail(1)
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
    if mixtures:
        lines += ["", "## Mixture weights of the generator's exits", "",
                  "Mean over masked positions of each exit's weight (learned: the mixture's softmax; random, equal: "
                  "1/k; layer switch: the exit in use), logged every `train.log_every_n_steps` steps.", "",
                  *exit_weight_lines(mixtures)]
    if meta.get("claims"):
        lines += ["", "## The paper's claims, on our numbers", "", "| claim | ours | GLUE [min, max over seeds] |",
                  "|---|---|---|", *[check_claim(c, final) for c in meta["claims"]]]
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
        runs = ", ".join(i["runs"]) if "runs" in i else "not recorded"
        lines.append(f"| `{i['command']}` | {runs} | {i['commit']} | {i['hardware']} | {i['finished']} | "
                     f"{i['seconds']} |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")


def finding(out: Path) -> str:
    """One line for the index: final GLUE of each run (best first) and how many of the paper's claims agree."""
    results = read_table(out / "results.csv")
    meta = json.loads((out / "sweep.json").read_text())
    glue, tasks = glue_table(results)
    final = glue.sort_values("step").groupby("run", sort=False).tail(1).sort_values("GLUE", ascending=False)
    scores = ", ".join(f"{r['run']} {r['GLUE']:.1f}" for _, r in final.iterrows())
    line = f"final {glue_label(tasks)}: {scores}"
    claims = [check_claim(c, final) for c in meta.get("claims", [])]
    tested = [c for c in claims if "not tested" not in c]
    if claims:
        counts = {v: sum(f"| {v}" in c for c in tested) for v in ("agrees", "disagrees", "undecided")}
        line += (f"; the paper's claims, of {len(tested)} tested: {counts['agrees']} agree, {counts['disagrees']} "
                 f"disagree, {counts['undecided']} undecided (degenerate or within the seed spread)")
        if len(tested) < len(claims):
            line += f", {len(claims) - len(tested)} not tested (runs missing)"
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
    benchmarks = [f"- [{title}](benchmark/{file}): {what}" for file, title, what in [
        ("benchmark.md", "benchmark", "pre-training tokens/s of every variant against a plain transformers baseline "
         "(`make benchmark`)."),
        ("finetune.md", "fine-tuning", "GLUE fine-tuning time, a task's seeds one by one against one batched "
         "ensemble (`make benchmark-finetune`).")] if (reports / "benchmark" / file).exists()]
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
