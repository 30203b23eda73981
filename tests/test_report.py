"""Reports a researcher can trust, from a results table made here: claims undecided when a side is degenerate or
the seed ranges overlap, constant-prediction fine-tunes marked, the scale's caveat on the figure, one name per
variant, ticks that do not overlap."""

import json

import pandas as pd
import pytest

from analysis.figures import figure, palette, readable_log_ticks
from analysis.claims import arms, check_claim, control_lines, reading
from analysis.report import glue_table, paper_rows, render
from lightning_electra.results import COLUMNS

TASKS = ["CoLA", "SST-2", "MRPC", "STS-B", "RTE"]


def rows(run, variant, scores, constant=()):
    """Two seeds per task: `scores` is the task's value for seed 0; seed 1 is one point above."""
    out = []
    for task, value in zip(TASKS, scores):
        for seed in (0, 1):
            base = {**dict.fromkeys(COLUMNS, 0), "sweep": "s", "run": run, "variant": variant, "scale": "smoke",
                    "step": 10, "tokens": 100, "flops_paper": 2e12, "flops_measured": 1e12, "task": task,
                    "finetune_seed": seed, "commit": "c", "config_hash": "h"}
            out += [{**base, "metric": "score", "value": value + seed},
                    {**base, "metric": "constant", "value": 100.0 if task in constant else 0.0}]
    return out


def final(*runs):
    glue, tasks = glue_table(pd.DataFrame([r for run in runs for r in run]))
    return arms(glue, tasks)


def seeds(arm, variant, scores, offsets, constant=()):
    """One run per pre-training seed (the first named as the arm, the others <arm>-seed<k>), `offsets` added."""
    return [r for k, off in enumerate(offsets)
            for r in rows(arm if k == 0 else f"{arm}-seed{k}", variant, [s + off for s in scores], constant)]


def test_a_claim_is_decided_only_by_several_pre_training_seeds_apart():
    good = seeds("electra", "electra", [50, 90, 85, 80, 65], [0, 1, 2])
    majority = seeds("bert", "bert", [0, 50, 68, 10, 50], [0, 1, 2], constant=("CoLA", "SST-2", "MRPC"))
    assert "undecided (bert predict one class on most tasks)" in check_claim("electra > bert", final(good, majority))
    close = seeds("bert", "bert", [50, 89, 85, 80, 65], [0, 1, 2])  # median 1 below, ranges overlap
    assert "| not decided with 3 pre-training seeds (their ranges overlap) |" in check_claim("electra > bert",
                                                                                              final(good, close))
    far = seeds("bert", "bert", [30, 80, 70, 60, 55], [0, 1, 2])
    assert "| agrees |" in check_claim("electra > bert", final(good, far))
    assert "| disagrees |" in check_claim("bert > electra", final(good, far))
    one = rows("bert", "bert", [30, 80, 70, 60, 55])  # far apart, but one pre-training seed cannot say
    verdict = check_claim("electra > bert", final(good, one))
    assert "| not decided with 1 pre-training seed |" in verdict and "| +16.0 |" in verdict


def test_each_arm_is_judged_against_the_control_and_the_claims_are_read_in_one_sentence():
    control = seeds("control", "no-pretraining", [40, 60, 60, 10, 50], [0, 1, 2])
    bert = seeds("bert", "bert", [43, 63, 63, 13, 53], [0, 1, 2])  # 3 above: ranges apart
    electra = seeds("electra", "electra", [40, 60, 60, 10, 50], [-2, -1, 0])  # overlaps the control, below bert
    table = final(control, bert, electra)
    lines = "\n".join(control_lines(table))
    assert "| bert > control | above it, beyond the spread |" in lines
    assert "| electra > control | not decided with 3 pre-training seeds (their ranges overlap) |" in lines
    assert control_lines(final(bert, electra)) == []  # no control, no section
    said = reading(["bert > electra", "electra > bert", "electra > control", "two-stage > bert"], table)
    assert said == ("Of the paper's orderings, hold here: `bert > electra`; reversed here, beyond the spread: "
                    "`electra > bert`; not decided: `electra > control`; not tested (runs missing): "
                    "`two-stage > bert`.")


def test_an_arm_keeps_its_pre_training_spread_apart_from_the_fine_tuning_one():
    table = final(seeds("electra", "electra", [50, 90, 85, 80, 65], [0, 3, 1]))
    (arm,) = table.to_dict("records")
    assert arm["arm"] == "electra" and arm["seeds"] == 3
    # a run's GLUE: the tasks' mean (74) of their medians over the two fine-tuning seeds (+0.5), plus its offset
    assert [arm[k] for k in ("GLUE", "pt_min", "pt_max", "ft_spread")] == pytest.approx([75.5, 74.5, 77.5, 1.0])


def test_constant_fine_tunes_are_marked_in_the_summary(tmp_path):
    out = tmp_path / "smoke" / "s"
    out.mkdir(parents=True)
    pd.DataFrame(rows("electra", "electra", [50, 90, 85, 80, 65]) + rows("bert", "bert", [0, 50, 68, 10, 50],
                 constant=("SST-2",))).to_csv(out / "results.csv", index=False)
    ran_nothing = {"command": "sweep s", "runs": {}, "commit": "c", "hardware": "h", "finished": "f", "seconds": 0.2}
    (out / "sweep.json").write_text(json.dumps({"claims": ["electra > bert"], "invocations": [ran_nothing],
                                                "runs": {}}))
    render(out)
    summary = (out / "summary.md").read_text()
    assert "| bert | 0.5 | 50.5* |" in summary and "the majority class's score" in summary
    assert "| `sweep s` | none (all done before) | c |" in summary  # an invocation that found every run done
    assert "Scale smoke is a pipeline check" in summary


def test_the_figure_carries_the_scale_caveat_and_one_name_per_variant():
    paper = paper_rows("training_algorithms")
    assert "two-stage" in set(paper["variant"]) and "two_stage" not in set(paper["variant"])  # our spelling
    fig, ax = figure(paper, palette(["electra", "two-stage"]), "smoke")
    assert "pipeline check" in fig._suptitle.get_text()
    fig, ax = figure(paper, {}, "tiny")
    assert fig._suptitle is None


def test_log_ticks_do_not_crowd():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.plot([2.0e12, 2.005e12, 4e12, 1.7e12], [1, 2, 3, 4])
    readable_log_ticks(ax, [2.0e12, 2.005e12, 4e12, 1.7e12])
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels == ["1.7e12", "4e12"]  # 2e12 within 30% of 1.7e12: one label, not two over each other
    plt.close(fig)


def test_hashes_and_commits_that_look_like_numbers_stay_text(tmp_path):
    from lightning_electra.results import read_table, write_table

    table = pd.DataFrame([{**rows("r", "electra", [1, 2, 3, 4, 5])[0], "config_hash": "4417e98150",
                           "commit": "0012345"}])
    write_table(table, tmp_path / "results.csv")
    again = read_table(tmp_path / "results.csv")  # read as floats, the hash was inf and the commit 12345
    assert again.loc[0, "config_hash"] == "4417e98150" and again.loc[0, "commit"] == "0012345"
    write_table(again, tmp_path / "results.csv")
    assert read_table(tmp_path / "results.csv").loc[0, "config_hash"] == "4417e98150"


def test_a_report_is_never_replaced_by_a_report_of_nothing(tmp_path):
    """No table, no provenance, or no score at the scale asked: a clear error, and the report there is as it was."""
    import pytest

    from analysis.report import NothingToReport, build_report
    from lightning_electra.results import ResultsError

    reports, results = tmp_path / "reports", tmp_path / "results"
    committed = reports / "smoke" / "s"
    committed.mkdir(parents=True)
    (committed / "results.csv").write_text("kept\n")
    with pytest.raises(ResultsError, match="no results.csv at .* Run the sweep"):
        build_report("s", "smoke", results, reports)
    (results / "s" / "smoke").mkdir(parents=True)
    pd.DataFrame(rows("electra", "electra", [50, 90, 85, 80, 65])).to_csv(results / "s" / "results.csv", index=False)
    with pytest.raises(ResultsError, match="no sweep.json at"):
        build_report("s", "smoke", results, reports)
    (results / "s" / "tiny").mkdir()
    (results / "s" / "tiny" / "sweep.json").write_text(json.dumps({"invocations": [], "runs": {}}))
    with pytest.raises(NothingToReport, match="no GLUE score at scale tiny yet"):
        build_report("s", "tiny", results, reports)
    assert (committed / "results.csv").read_text() == "kept\n" and not (reports / "tiny").exists()
    with pytest.raises(ResultsError, match="no sweep.json beside it"):
        render(committed)


def _probe_run(root, name: str, auroc: float, stages=("pretrain",)):
    """A finished pre-training run directory as the calibration tool reads it: its config, its summary and each
    stage's logged metrics (50 steps a stage, logged at 24 and 49)."""
    from omegaconf import OmegaConf

    from lightning_electra.config import Config

    run = root / f"{name}-0123456789"
    run.mkdir(parents=True)
    OmegaConf.save(OmegaConf.structured(Config()), run / "config.yaml")
    (run / "pretrain.json").write_text(json.dumps({"step": 50 * len(stages), "seconds": 1.0}))
    for stage in stages:
        (run / stage / "logs").mkdir(parents=True)
        pd.DataFrame({"step": [24, 49], "train/loss": [1.0, 0.9], "train/disc_auroc": [0.5, auroc],
                      "train/disc_loss": [0.40, 0.39], "train/disc_prior_loss": [0.40, 0.40]}) \
            .to_csv(run / stage / "logs" / "metrics.csv", index=False)
    return run


def test_calibration_keeps_every_probe_curve_so_a_figure_grows_without_the_run_directories(tmp_path):
    from analysis.calibration import main

    out = tmp_path / "report"
    main([str(out), str(_probe_run(tmp_path / "a", "electra", 0.6))])
    two_stage = _probe_run(tmp_path / "b", "two-stage", 0.7, stages=("pretrain-stage1", "pretrain-stage2"))
    main([str(out), str(two_stage)])  # the first run's directory may be gone by now
    curves, probes = pd.read_csv(out / "curves.csv"), pd.read_csv(out / "probes.csv")
    assert list(probes["probe"]) == ["electra", "two-stage"] and list(probes["steps"]) == [50, 100]
    assert curves.groupby("probe")["train/disc_auroc"].last().to_dict() == {"electra": 0.6, "two-stage": 0.7}
    assert curves.groupby("probe")["step"].apply(list).to_dict() == {"electra": [24, 49], "two-stage": [24, 49, 74, 99]}
    assert curves["train/disc_gap"].round(4).tolist() == [0.0, 0.01] * 3
    main([str(out), str(_probe_run(tmp_path / "c", "electra", 0.65))])  # a probe given again replaces its rows
    assert pd.read_csv(out / "curves.csv").groupby("probe")["train/disc_auroc"].last()["electra"] == 0.65
    assert len(pd.read_csv(out / "probes.csv")) == 2
    main([str(out)])  # re-drawn from its own tables alone
    assert (out / "probes.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="No pretrain"):
        main([str(out), str(tmp_path)])


def test_runs_at_one_budget_are_drawn_side_by_side_not_spread_by_their_last_digits():
    from analysis.figures import side_by_side

    one_budget = pd.DataFrame({"run": ["bert", "electra", "two-stage"], "step": [3692, 2398, 3040],
                               "flops_paper": [2.62998e14, 2.63014e14, 2.63001e14]})
    at = side_by_side(one_budget)
    assert list(at) == ["bert", "electra", "two-stage"] and at["bert"] < at["electra"] < at["two-stage"]
    assert at["electra"] == pytest.approx(2.63e14, rel=1e-3)  # the middle one at the budget itself
    along = pd.concat([one_budget, one_budget.assign(step=one_budget["step"] // 2,
                                                     flops_paper=one_budget["flops_paper"] / 2)])
    assert side_by_side(along) == {}  # curves along the budget keep their own FLOPs
