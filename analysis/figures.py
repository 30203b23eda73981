"""The reports' figures: our panel beside the paper's numbers on their own axes, GLUE against FLOPs or generator
width, AMOS's mixture weights; the same colour for a variant in every report, the scale's caveat across the top."""

from __future__ import annotations

import textwrap

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lightning_electra.config import GLUE_TASKS  # noqa: E402
from lightning_electra.io import atomic  # noqa: E402


def glue_label(tasks: list[str]) -> str:
    return f"GLUE-{len(tasks)}" if len(tasks) < len(GLUE_TASKS) else "GLUE"


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
                    "examples): its differences are noise, not findings",
           "cpu": "Scale cpu: 4 x 128 models, ~2,400 steps on 15M tokens on 2 CPU cores (~1/5,000 of ELECTRA-Small's "
                  "compute), GLUE capped at 2,000 examples a task; the MLM has barely begun to use the context "
                  "(calibration.md): what holds here need not hold at the paper's scale"}


def figure(paper: pd.DataFrame, colors: dict[str, str], scale: str):
    """Our panel, and the paper's beside it on its own axes (its FLOPs and GLUE are another scale's); the scale's
    caveat across the top."""
    with_paper = not paper.empty
    fig, axes = plt.subplots(1, 2 if with_paper else 1, figsize=(11 if with_paper else 6, 4.6), squeeze=False)
    if with_paper:
        draw_paper(axes[0][1], paper, colors)
    if scale in CAVEATS:
        fig.suptitle(textwrap.fill(CAVEATS[scale], 160), fontsize=9, color="firebrick")
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
    untrained = glue["flops_paper"] <= 0  # the no-pre-training control: no FLOPs to place it at, a level to beat
    for run, g in glue[untrained].groupby("run", sort=False):
        line = ax.axhline(g["GLUE"].iloc[0], linestyle=":", color="grey", label=f"{run} (no pre-training)")
        ax.axhspan(g["glue_min"].iloc[0], g["glue_max"].iloc[0], color=line.get_color(), alpha=0.15)
    glue = glue[~untrained]
    at = side_by_side(glue)
    for run, g in glue.groupby("run", sort=False):
        variant = g["variant"].iloc[0]
        label = run if run == variant else f"{run} ({variant})"
        color = None if several_per_variant else colors.get(variant)
        if at:  # one point a run: its fine-tuning spread as an error bar
            ax.errorbar([at[run]], g["GLUE"], yerr=[g["GLUE"] - g["glue_min"], g["glue_max"] - g["GLUE"]],
                        marker="o", capsize=3, label=label, color=color)
            continue
        line = ax.plot(g["flops_paper"], g["GLUE"], marker="o", label=label, color=color)[0]
        ax.fill_between(g["flops_paper"], g["glue_min"], g["glue_max"], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    readable_log_ticks(ax, [(min(at.values()) * max(at.values())) ** 0.5] if at else glue["flops_paper"])
    if at:
        ax.set_xlim(min(at.values()) / 1.1, max(at.values()) * 1.1)
    finish(fig, ax, "our pre-train FLOPs (paper convention)" + (", runs side by side at one budget" if at else ""),
           tasks, f"{title}\n(median over fine-tuning seeds; " + ("bar" if at else "band") + ": min-max)", path)


def side_by_side(glue: pd.DataFrame) -> dict[str, float]:
    """Where to draw each run when every run has one point and all share one budget (within 10%): side by side
    around it, in the table's order, rather than spread by differences in the last digits of their FLOPs."""
    flops = glue["flops_paper"]
    if glue.empty or glue.groupby("run")["step"].nunique().max() > 1 or flops.max() > 1.1 * flops.min():
        return {}
    runs, budget = list(dict.fromkeys(glue["run"])), (flops.min() * flops.max()) ** 0.5
    return {run: budget * 1.04 ** (i - (len(runs) - 1) / 2) for i, run in enumerate(runs)}


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
