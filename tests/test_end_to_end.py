"""A whole sweep at a toy budget: pre-train, fine-tune, collect, report; then a re-run that skips everything."""

import json
import re
import shutil

import pandas as pd
import pytest

from lightning_electra.results import COLUMNS
from tests.conftest import sweep_main as main


@pytest.mark.integration  # a whole sweep, processes or ranks: the integration tier
def test_sweep_writes_table_figure_summary_and_resumes(data_dir, tmp_path, capsys):
    args = ["training-algorithms", "--scale", "smoke", "--reports-dir", str(tmp_path / "reports"),
            f"results_dir={tmp_path / 'results'}", f"data.cache_dir={tmp_path / 'cache'}", f"data.data_dir={data_dir}",
            "data.max_corpus_bytes=200000", "train.flops_budget=4e11", "finetune.tasks=[RTE,STS-B]",
            "finetune.seeds=2", "finetune.max_train_examples=64", "finetune.max_eval_examples=64"]
    main([*args, "--runs", "bert,electra"])  # a sweep in pieces: whole runs each, the table holds what is done
    table = pd.read_csv(tmp_path / "results" / "training-algorithms" / "results.csv")
    assert set(table["run"]) == {"bert", "electra"}
    pieces_elsewhere(args, tmp_path, capsys)
    first_seeds = ["--runs", "bert,electra,two-stage,adversarial,control"]  # not the pre-training seeds after them
    main([*args, *first_seeds])
    table = pd.read_csv(tmp_path / "results" / "training-algorithms" / "results.csv")
    assert list(table.columns) == COLUMNS
    assert set(table["run"]) == {"bert", "electra", "two-stage", "adversarial", "control"}
    assert set(table["task"]) == {"RTE", "STS-B"}
    assert set(table["finetune_seed"]) == {0, 1} and table["value"].notna().all()
    steps = table.groupby("run")["step"].max()
    assert steps["bert"] > steps["electra"], "same FLOPs budget: BERT takes more (cheaper) steps"
    flops = table.groupby("run")["flops_paper"].max()
    assert flops.pop("control") == 0 and steps["control"] == 0, "the control: no pre-training"
    assert (abs(flops / flops["electra"] - 1) < 0.05).all(), "one FLOPs budget for every pre-trained run"
    two_stage = table[table["run"] == "two-stage"]
    assert two_stage["step"].nunique() == 2, "GLUE points in both stages (checkpoints at 50% and 100%)"
    report = tmp_path / "reports" / "smoke" / "training-algorithms"
    assert (report / "glue_vs_flops.png").stat().st_size > 10_000
    summary = (report / "summary.md").read_text()
    assert "GLUE-2" in summary and "electra > adversarial" in summary and "training-algorithms" in summary

    capsys.readouterr()
    main([*args, *first_seeds])  # a re-run trains nothing and gives the same table
    out = capsys.readouterr().out
    assert out.count("finished earlier") == 5 and "[pretrain]" not in out and "[finetune]" not in out
    pd.testing.assert_frame_equal(table, pd.read_csv(tmp_path / "results" / "training-algorithms" / "results.csv"))

    same_runs_in_another_sweep(args, tmp_path, capsys, table)

    main([*args, *first_seeds, "finetune.seeds=3"])  # one more seed: only the missing fine-tunes run
    out = capsys.readouterr().out
    scored = re.findall(r"^\[finetune\] .* seed \d+: ", out, flags=re.M)  # not the progress lines
    assert "[pretrain]" not in out and len(scored) == (4 * 2 + 1) * 2  # (runs x checkpoints + the control's one) x tasks
    table = pd.read_csv(tmp_path / "results" / "training-algorithms" / "results.csv")
    assert set(table["finetune_seed"]) == {0, 1, 2} and not table.duplicated().any()


def pieces_elsewhere(args, tmp_path, capsys):
    """A piece finished on another machine (a lent GPU) whose run directories did not come back: a results directory
    seeded with its committed report's table and provenance keeps its rows while their config hashes hold (a
    collect there names no run of its own: none is finished there)."""
    report = tmp_path / "reports" / "smoke" / "training-algorithms"
    committed = pd.read_csv(report / "results.csv")
    for setting, kept in [([], {"bert", "electra"}), (["finetune.max_train_examples=32"], set())]:
        elsewhere = tmp_path / f"elsewhere{len(setting)}" / "training-algorithms"
        (elsewhere / "smoke").mkdir(parents=True)
        shutil.copy(report / "results.csv", elsewhere / "results.csv")
        shutil.copy(report / "sweep.json", elsewhere / "smoke" / "sweep.json")
        capsys.readouterr()
        main([*args, "--collect", "--no-report", f"results_dir={elsewhere.parent}", *setting])
        out = capsys.readouterr().out
        table = pd.read_csv(elsewhere / "results.csv")
        assert set(table["run"]) == kept and f"holds {len(kept)} of 11 runs" in out
        meta = json.loads((elsewhere / "smoke" / "sweep.json").read_text())
        # the piece's provenance goes with its rows: a report's wall time is that of what it shows
        assert set(meta["runs"]) == kept and len(meta["invocations"]) == (2 if kept else 1)
        assert set(meta["invocations"][0]["runs"]) == ({"bert", "electra"} if kept else set())
        if kept:  # the same rows, in the sweep's order: nothing re-computed, nothing lost
            assert "finished elsewhere with these settings, from the tables of: bert (training-algorithms), " \
                   "electra (training-algorithms)" in out
            pd.testing.assert_frame_equal(table, committed)


def same_runs_in_another_sweep(args, tmp_path, capsys, table):
    """amos's ELECTRA is training-algorithms' (the same config hash): not re-run, its rows taken from that table, the
    report saying whence, also after a second invocation finds them in amos's own table. A table there that cannot
    be read is another sweep's problem: passed over."""
    broken = tmp_path / "results" / "broken" / "results.csv"
    broken.parent.mkdir()
    broken.write_text("")
    capsys.readouterr()
    main(["amos", *args[1:], "--runs", "electra", "--plan", "--no-time"])
    assert "[plan] amos: nothing to run" in capsys.readouterr().out
    for _ in range(2):
        main(["amos", *args[1:], "--runs", "electra"])
        out = capsys.readouterr().out
        assert "[pretrain]" not in out and "[finetune]" not in out and f"passing over {broken}" in out
        amos = pd.read_csv(tmp_path / "results" / "amos" / "results.csv")
        # the control's config is the same in both sweeps (no AMOS keys enter it): adopted too
        assert set(amos["sweep"]) == {"amos"} and set(amos["run"]) == {"electra", "control"}
        amos = amos[amos["run"] == "electra"].reset_index(drop=True)
        pd.testing.assert_frame_equal(amos.drop(columns="sweep"),
                                      table[table["run"] == "electra"].drop(columns="sweep").reset_index(drop=True))
        summary = (tmp_path / "reports" / "smoke" / "amos" / "summary.md").read_text()
        assert "electra (from [training-algorithms](../training-algorithms/summary.md))" in summary
    assert "electra: finished elsewhere with these settings (its rows are in this sweep's table)" in out
    broken.unlink()
