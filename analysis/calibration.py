"""Learning curves of calibration probes: pre-training runs read back from their directories alone (config.yaml,
pretrain.json, pretrain/logs/metrics.csv), drawn and tabulated so a scale's choices show the probe behind each.

    python -m analysis.calibration OUT_DIR [RUN_DIR ...]   # OUT_DIR/probes.png, probes.csv (end figures), curves.csv

OUT_DIR keeps every probe's curves (curves.csv) beside its end figures, so the figure is re-drawn, and grown by
later probes, without the run directories: a run given replaces its own probe's rows, the others are kept.

What shows learning early: D's AUROC for replaced tokens (0.5: D at its prior) and D's loss below its prior's
entropy (the binary entropy of the replaced rate), an MLM's accuracy above the unigram plateau (the batch's most
frequent masked token), all logged by every objective (lightning_electra/objectives/losses.py). Over every chosen
position that accuracy includes the tokens left unchanged, which an MLM learns to copy: its use of the context shows
only where the input hides the answer (the last panel).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from lightning_electra.io import atomic, atomic_write_text  # noqa: E402

CURVES = [("train/disc_auroc", "D's AUROC (replaced vs original)"),
          ("train/disc_gap", "D's loss below its prior's entropy (nats)"),
          ("train/mlm_gap", "MLM accuracy above the unigram plateau"),
          ("train/mlm_context_gap", "the same where the input hides the answer ([MASK])")]
TAIL = 100  # steps averaged for a probe's end figures


def probe_name(run: Path) -> str:
    return run.name.rsplit("-", 1)[0]  # the run directory less its config hash


def curves(run: Path) -> pd.DataFrame:
    """The run's logged training metrics per step, with the two gaps (prior - loss, accuracy - unigram). Each stage
    of a two-stage run counts its steps from 0: they follow on from the stages before (equal stages: pretrain.json's
    steps split evenly; a stage unfinished, from its last logged step)."""
    frames = [pd.read_csv(p) for p in sorted(run.glob("pretrain*/logs/metrics.csv"))]
    done = json.loads((run / "pretrain.json").read_text()) if (run / "pretrain.json").exists() else {}
    offset = 0
    for frame in frames:
        frame["step"] += offset
        offset = offset + done["step"] // len(frames) if done else int(frame["step"].max()) + 1
    metrics = pd.concat(frames).dropna(subset=["train/loss"]).groupby("step").last().reset_index()
    if "train/disc_loss" in metrics:
        metrics["train/disc_gap"] = metrics["train/disc_prior_loss"] - metrics["train/disc_loss"]
    if "train/mlm_accuracy" in metrics:
        metrics["train/mlm_gap"] = metrics["train/mlm_accuracy"] - metrics["train/mlm_unigram_accuracy"]
    if "train/mlm_context_accuracy" in metrics:  # what copying the kept tokens cannot lift (older logs lack it)
        metrics["train/mlm_context_gap"] = (metrics["train/mlm_context_accuracy"]
                                            - metrics["train/mlm_context_unigram_accuracy"])
    return metrics


def describe(run: Path, m: pd.DataFrame) -> dict:
    """A probe's settings and its end figures (mean over its last TAIL logged steps of `m`, its curves)."""
    cfg = OmegaConf.load(run / "config.yaml")
    done = json.loads((run / "pretrain.json").read_text()) if (run / "pretrain.json").exists() else {}
    end = m[m["step"] > m["step"].max() - TAIL]
    figure = lambda key: round(float(end[key].mean()), 4) if key in end else None  # noqa: E731
    return {"probe": probe_name(run), "variant": cfg.variant, "layers": cfg.model.num_layers,
            "hidden": cfg.model.hidden_size, "vocab": cfg.data.vocab, "dropout": cfg.model.dropout,
            "batch": cfg.train.batch_size, "lr": cfg.train.lr, "warmup": cfg.train.warmup_steps,
            "bias_correction": cfg.train.adam_bias_correction,
            "steps": done.get("step") or int(m["step"].max()) + 1,
            "finished": bool(done), "seconds": done.get("seconds"), "tokens": done.get("tokens"),
            "mlm_accuracy": figure("train/mlm_accuracy"), "unigram": figure("train/mlm_unigram_accuracy"),
            "context_accuracy": figure("train/mlm_context_accuracy"),
            "context_unigram": figure("train/mlm_context_unigram_accuracy"),
            "disc_auroc": figure("train/disc_auroc"), "disc_loss": figure("train/disc_loss"),
            "prior_loss": figure("train/disc_prior_loss")}


def draw(runs: dict[str, pd.DataFrame], path: Path) -> None:
    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 4))
    for i, (probe, m) in enumerate(runs.items()):
        for ax, (key, title) in zip(axes, CURVES):
            if key in m and m[key].notna().any():
                smooth = m[key].rolling(4, min_periods=1).mean()  # 4 logged steps: the curves' batch noise
                ax.plot(m["step"], smooth, label=probe, color=f"C{i % 10}")
    for ax, (_, title) in zip(axes, CURVES):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].axhline(0.5, color="grey", linestyle=":")
    for ax in axes[1:]:
        ax.axhline(0, color="grey", linestyle=":")
    lines = {line.get_label(): line for ax in axes for line in ax.get_lines() if not line.get_label().startswith("_")}
    axes[-1].legend(lines.values(), lines.keys(), fontsize=7)  # every probe, whichever curves it has
    fig.tight_layout()
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def kept(out: Path, name: str, replaced: set[str]) -> pd.DataFrame:
    """OUT's earlier rows of `name` (curves.csv, probes.csv) less those of the probes given again."""
    if not (out / name).exists():
        return pd.DataFrame()
    table = pd.read_csv(out / name)
    return table[~table["probe"].isin(replaced)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m analysis.calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", type=Path, nargs="*")
    args = parser.parse_args(argv)
    runs = [r for r in args.runs if list(r.glob("pretrain*/logs/metrics.csv"))]
    if missing := [str(r) for r in args.runs if r not in runs]:
        raise SystemExit(f"No pretrain*/logs/metrics.csv under {', '.join(missing)}: give pre-training run "
                         "directories (<results>/<sweep>/<scale>/<run>-<hash>).")
    new = {probe_name(r): (r, curves(r)) for r in runs}
    old_curves, old_table = kept(args.out, "curves.csv", set(new)), kept(args.out, "probes.csv", set(new))
    if not new and old_curves.empty:
        raise SystemExit(f"Nothing to draw: {args.out} holds no curves.csv yet; give run directories.")
    every = pd.concat([old_curves, *(m.assign(probe=p) for p, (_, m) in new.items())], ignore_index=True)
    table = pd.concat([old_table, pd.DataFrame([describe(r, m) for r, m in new.values()])], ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    draw(dict(tuple(every.groupby("probe", sort=False))), args.out / "probes.png")
    atomic_write_text(args.out / "curves.csv",
                      every[["probe", "step", *sorted(set(every) - {"probe", "step"})]].to_csv(index=False))
    atomic_write_text(args.out / "probes.csv", table.to_csv(index=False))
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
