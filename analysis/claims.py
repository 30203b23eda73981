"""A sweep's arms over their pre-training seeds, and the paper's claims judged on them.

A run trained with pre-training seed k > 0 is named `<arm>-seed<k>` (lightning_electra/runner/configs.py expands a
sweep's `seeds:`); the arm is the name without it. A run's GLUE is the mean over tasks of each task's median over
fine-tuning seeds; an arm's is the median of its runs' GLUE. Two spreads are kept apart: over pre-training seeds
(min-max of the runs' GLUE) and over fine-tuning seeds (the median, over the arm's runs, of each run's min-max width).
A claim is decided only by the pre-training spread: pre-training itself moves GLUE (0.57 std over 14 seeds of
ELECTRA-Small in the best public reproduction), more than several of the paper's gaps.
"""

from __future__ import annotations

import re

import pandas as pd

from lightning_electra.results import over_pretraining_seeds

SEED_SUFFIX = re.compile(r"-seed\d+$")
MIN_SEEDS = 2  # a pre-training spread needs two runs at least


def arm_of(run: str) -> str:
    return SEED_SUFFIX.sub("", run)


def arms(final: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """One row per arm from the runs' final checkpoints (`final`: report.glue_table's rows): seeds, GLUE (median
    over runs), pt_min / pt_max (over pre-training seeds), ft_spread (the fine-tuning seeds' spread, median over
    runs), each task's median over runs, and degenerate (most runs predict one class on most tasks)."""
    final = final.assign(arm=final["run"].map(arm_of), ft_spread=final["glue_max"] - final["glue_min"],
                         degenerate=final["degenerate"].astype(float))
    table = over_pretraining_seeds(final, ["arm", "variant"], ["GLUE", "ft_spread", "degenerate", "step", *tasks])
    return table.assign(degenerate=table["degenerate"] > 0.5)


def arm_curves(glue: pd.DataFrame) -> pd.DataFrame:
    """report.glue_table's rows folded over pre-training seeds, per (arm, checkpoint index): GLUE the median, the
    band the pre-training seeds' min-max for an arm of several seeds (else the run's fine-tuning seeds' min-max)."""
    glue = glue.assign(arm=glue["run"].map(arm_of))
    if (glue.groupby("arm")["run"].nunique() <= 1).all():
        return glue
    glue = glue.assign(point=glue.groupby("run").cumcount())
    folded = over_pretraining_seeds(glue, ["arm", "variant", "point"], ["GLUE", "step", "flops_paper", "glue_min",
                                                                         "glue_max"])
    several = folded["seeds"] > 1
    folded.loc[several, "glue_min"], folded.loc[several, "glue_max"] = folded["pt_min"], folded["pt_max"]
    return folded.rename(columns={"arm": "run"})


def sides(claim: str, table: pd.DataFrame) -> tuple | None:
    """The two arms of 'a > b' (their rows of `arms`' table), or None where either has no runs."""
    left, right = (s.strip() for s in claim.split(">"))
    rows = {r["arm"]: r for _, r in table.iterrows()}
    return (rows[left], rows[right]) if left in rows and right in rows else None


PAPER_WORDS = ("agrees", "disagrees")  # what a decided claim is said to do, where it holds and where it is reversed


def verdict(claim: str, table: pd.DataFrame, words: tuple[str, str] = PAPER_WORDS) -> str:
    """'a > b' on the arms' final GLUE: agrees or disagrees (`words`) only when each side has at least MIN_SEEDS
    pre-training seeds, their ranges are apart and neither side is degenerate; otherwise why not."""
    if (pair := sides(claim, table)) is None:
        return "not tested (runs missing)"
    a, b = pair
    degenerate = [r["arm"] for r in (a, b) if r["degenerate"]]
    seeds = min(a["seeds"], b["seeds"])
    if degenerate:
        return f"undecided ({' and '.join(degenerate)} predict one class on most tasks)"
    if seeds < MIN_SEEDS:
        return f"not decided with {seeds} pre-training seed{'s' if seeds > 1 else ''}"
    if a["pt_min"] <= b["pt_max"] and b["pt_min"] <= a["pt_max"]:
        return f"not decided with {seeds} pre-training seeds (their ranges overlap)"
    return words[0] if a["GLUE"] > b["GLUE"] else words[1]


def check_claim(claim: str, table: pd.DataFrame, words: tuple[str, str] = PAPER_WORDS) -> str:
    """The claim's row of a report's table: its verdict, with both sides' GLUE and spreads and the gap."""
    said = verdict(claim, table, words)
    if (pair := sides(claim, table)) is None:
        return f"| {claim} | {said} | | |"
    a, b = pair
    return f"| {claim} | {said} | {side(a)} vs {side(b)} | {a['GLUE'] - b['GLUE']:+.1f} |"


def reading(claims: list[str], table: pd.DataFrame) -> str:
    """The claims grouped by what our numbers say of them, in one sentence."""
    verdicts = {claim: verdict(claim, table) for claim in claims}
    groups = [("hold here", lambda v: v == PAPER_WORDS[0]),
              ("reversed here, beyond the spread", lambda v: v == PAPER_WORDS[1]),
              ("not decided", lambda v: v.startswith(("not decided", "undecided"))),
              ("not tested (runs missing)", lambda v: v.startswith("not tested"))]
    said = [f"{label}: {', '.join(f'`{c}`' for c, v in verdicts.items() if test(v))}" for label, test in groups
            if any(test(v) for v in verdicts.values())]
    return "Of the paper's orderings, " + "; ".join(said) + "."


CONTROL_WORDS = ("above it, beyond the spread", "below it, beyond the spread")


def control_arm(table: pd.DataFrame) -> str | None:
    """The arm fine-tuned without pre-training (variant no-pretraining), the floor pre-training must beat."""
    controls = table.loc[table["variant"] == "no-pretraining", "arm"]
    return controls.iloc[0] if len(controls) else None


def control_lines(table: pd.DataFrame) -> list[str]:
    """Each pre-trained arm against the control, judged as a claim is: what pre-training bought, beyond the spread."""
    if (control := control_arm(table)) is None or len(table) < 2:
        return []
    claims = [f"{arm} > {control}" for arm in table["arm"] if arm != control]
    return ["", "## Against the control", "",
            "Each arm against the same discriminator fine-tuned from random initialisation under the same protocol "
            "and seeds: decided, as the paper's claims are, only by several pre-training (initialisation) seeds a side "
            "whose ranges are apart.", "", *CLAIMS_HEADER, *[check_claim(c, table, CONTROL_WORDS) for c in claims]]


def side(r) -> str:
    spread = f"pre-training [{r['pt_min']:.1f}, {r['pt_max']:.1f}], " if r["seeds"] > 1 else ""
    seeds = f"{r['seeds']} seed{'s' if r['seeds'] > 1 else ''}"
    return f"{r['GLUE']:.1f} ({seeds}; {spread}fine-tuning {r['ft_spread']:.1f})"


CLAIMS_HEADER = ["| claim | ours | GLUE (pre-training seeds; spreads: pre-training min-max, fine-tuning width) | gap |",
                 "|---|---|---|---|"]


def arm_lines(table: pd.DataFrame, tasks: list[str], label: str) -> list[str]:
    """The arms over their pre-training seeds, per task too (only where some arm has several seeds)."""
    if (table["seeds"] <= 1).all():
        return []
    fmt = lambda x: f"{x:.1f}"  # noqa: E731
    lines = ["", "## Over pre-training seeds (final checkpoints)", "",
             f"Each run's {label} is the mean over tasks of each task's median over fine-tuning seeds; an arm's is the "
             "median over its pre-training seeds, beside the range over them and the fine-tuning seeds' spread "
             "(the median over its runs of each run's min-max width).", "",
             f"| arm | variant | pre-training seeds | {label} | range over pre-training seeds | fine-tuning spread | "
             + " | ".join(tasks) + " |", "|---|---|---|---|---|---|" + "---|" * len(tasks)]
    for _, r in table.iterrows():
        lines.append(f"| {r['arm']} | {r['variant']} | {r['seeds']} | {fmt(r['GLUE'])} | {fmt(r['pt_min'])}-"
                     f"{fmt(r['pt_max'])} | {fmt(r['ft_spread'])} | " + " | ".join(fmt(r[t]) for t in tasks) + " |")
    return lines
