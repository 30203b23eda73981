"""A plan's times come from rates measured on the device at hand, cached per device and code version."""

from io import StringIO

import numpy as np
import pandas as pd
import pytest

from lightning_electra.cli import main
from lightning_electra.objectives import objective
from lightning_electra.runner import rates as rates_module
from lightning_electra.runner.plan import Plan, makespan, pieces, plan_sweep
from lightning_electra.runner.pretrain import budget
from lightning_electra.runner.rates import Rates, finetune_key, step_key, task_seconds
from lightning_electra.runner.sweep import sweep_configs, sweep_runs


@pytest.fixture
def planned(data_dir, tmp_path, capsys):
    overrides = [f"data.data_dir={data_dir}", f"data.cache_dir={tmp_path}", "finetune.tasks=[RTE,MRPC]"]

    def plan(*flags: str) -> pd.DataFrame:
        capsys.readouterr()
        main(["plan", "training-algorithms", "--scale", "smoke", "--csv", *flags, *overrides])
        return pd.read_csv(StringIO(capsys.readouterr().out))

    return plan, sweep_configs("training-algorithms", "smoke", overrides)[1], Rates(tmp_path)


def test_the_plan_times_are_the_measured_rates_times_the_work(planned, monkeypatch):
    plan, configs, rates = planned
    step_s = {}  # made-up rates, as if measured, one per shape (a run's pre-training seeds share theirs)
    for cfg in configs:
        step_s[cfg.name] = step_s.get(cfg.name.split("-seed")[0], 0.01 * (len(step_s) + 1))
        for stage in (1, 2):
            rates.entries[f"{rates.prefix}|{step_key(cfg, stage)}"] = {"step_s": step_s[cfg.name], "warmup_s": 5.0}
        rates.entries[f"{rates.prefix}|{finetune_key(cfg)}"] = {"per_example_s": 0.002, "overhead_s": 3.0}
    rates_module.write_json(rates.path, rates.entries)

    def never(*args, **kwargs):
        raise AssertionError("a cached rate was measured again")
    monkeypatch.setattr(rates_module, "measure_steps", never)
    monkeypatch.setattr(rates_module, "measure_finetune", never)
    frame = plan().set_index("run")
    for cfg in configs:  # the plan must use exactly these
        b, stages = budget(cfg), objective(cfg.variant).stages  # the control trains no stage
        assert frame.loc[cfg.name, "pretrain_min"] == pytest.approx((b["steps"] * step_s[cfg.name] + 5 * stages) / 60)
        rate = {"per_example_s": 0.002, "overhead_s": 3.0}
        glue = len(b["checkpoints"]) * sum(task_seconds(cfg, task, rate) for task in ("RTE", "MRPC"))
        assert frame.loc[cfg.name, "glue_min"] == pytest.approx(glue / 60)
    # RTE's 200 fixture rows, 2 seeds, the dev split a third of the cost, one batched ensemble's overhead
    cfg = configs[0]
    epochs = cfg.finetune.task_epochs.get("RTE", cfg.finetune.epochs)
    rows = min(200, cfg.finetune.max_train_examples or 200)
    dev = min(200, cfg.finetune.max_eval_examples or 200)
    one = 0.002 * (rows * epochs + dev / 3) + 3.0
    assert task_seconds(cfg, "RTE", rate) == pytest.approx(cfg.finetune.seeds * one)  # one fine-tune a seed
    assert task_seconds(cfg, "RTE", {**rate, "batched_seeds": 2}) == pytest.approx(one)  # the seeds as one group


def test_rates_are_measured_once_and_other_code_measures_again(planned, monkeypatch):
    plan, configs, rates = planned
    calls = []
    real = rates_module.measure_steps
    monkeypatch.setattr(rates_module, "measure_steps", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    frame = plan("--runs", "electra")
    assert calls == ["electra"] and frame["pretrain_min"].iloc[0] > 0 and frame["glue_min"].iloc[0] > 0
    plan("--runs", "electra")
    assert calls == ["electra"], "cached"
    monkeypatch.setattr(rates_module, "code_version", lambda: "other")
    plan("--runs", "electra")
    assert calls == ["electra", "electra"], "measured again for other code"


def test_parallel_lanes_and_budget_pieces():
    assert makespan([4, 3, 3, 2], 2, 1.0) == 6 and makespan([4, 3, 3, 2], 1, 1.0) == 12
    assert makespan([4, 4], 2, 1.5) == 6  # two at once, each slowed by sharing
    groups, alone = pieces(["a", "b", "c", "d"], [5, 4, 1, 12], 6)
    assert groups == [["a", "c"], ["b"]] and alone == ["d"]
    groups, alone = pieces(["a", "b", "c", "d"], [5, 4, 1, 12], 6, parallel=2)  # two lanes a command
    assert groups == [["a", "b", "c"]] and alone == ["d"]


def test_the_plan_says_how_often_each_run_reads_its_corpus_and_warns_of_memorisation(data_dir, tmp_path, capsys):
    from lightning_electra.data.corpus import text_bytes
    from lightning_electra.data.files import corpus_files
    from lightning_electra.runner.plan import TEXT_BYTES_PER_SLOT, corpus_passes

    overrides = [f"data.data_dir={data_dir}", f"data.cache_dir={tmp_path}"]
    _, configs = sweep_configs("training-algorithms", "smoke", overrides)
    cfg = configs[1]
    passes, exact = corpus_passes(cfg, 100)
    size = min(cfg.data.max_corpus_bytes, sum(text_bytes(p) for p in corpus_files(cfg.data)))
    expected = 100 * cfg.train.batch_size / (size / (TEXT_BYTES_PER_SLOT * cfg.data.max_seq_length))
    assert not exact and passes == pytest.approx(expected)
    main(["plan", "training-algorithms", "--scale", "smoke", "--no-time", *overrides, "train.flops_budget=4e14"])
    out = capsys.readouterr().out
    assert "passes" in out and "would read the corpus more than 10 times" in out


def test_a_packed_corpus_gives_the_exact_passes(data_dir, tmp_path):
    from lightning_electra.data.datamodule import PretrainDataModule
    from lightning_electra.runner.plan import corpus_passes

    _, configs = sweep_configs("training-algorithms", "smoke", [f"data.data_dir={data_dir}",
                                                                 f"data.cache_dir={tmp_path}"])
    dm = PretrainDataModule(configs[1])
    dm.prepare_data()
    passes, exact = corpus_passes(configs[1], 10)
    assert exact and passes == pytest.approx(10 * configs[1].train.batch_size / len(np.load(dm.cache / "examples.npy")))


def test_a_plan_is_a_value_the_command_line_prints(data_dir, tmp_path):
    _, runs = sweep_runs("training-algorithms", "smoke", [f"data.data_dir={data_dir}", f"data.cache_dir={tmp_path}"])
    plan = plan_sweep("training-algorithms", runs[:2], times=False)
    assert list(plan.frame["run"]) == [r.name for r in runs[:2]] and plan.fits is None and plan.scale == "smoke"
    assert plan.text().startswith("[plan] training-algorithms at scale smoke: 2 runs;")
    timed = Plan("s", plan.frame.assign(pretrain_min=[20.0, 15.0], glue_min=[5.0, 5.0]), "smoke", device="cpu",
                 serial_min=45.0, makespan_min=45.0, budget_minutes=30.0, pieces=[[runs[0].name], [runs[1].name]])
    assert timed.fits is False and f"  RUNS={runs[1].name}" in timed.text()
    assert Plan("s", plan.frame.iloc[:0]).text() == "[plan] s: nothing to run, every run asked for is finished"
