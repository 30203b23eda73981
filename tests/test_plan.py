"""A plan's times come from rates measured on the device at hand, cached per device and code version."""

from io import StringIO

import pandas as pd
import pytest

from lightning_electra.cli import main
from lightning_electra.runner import rates as rates_module
from lightning_electra.runner.plan import makespan, pieces
from lightning_electra.runner.pretrain import budget
from lightning_electra.runner.rates import Rates, finetune_key, step_key, task_seconds
from lightning_electra.runner.sweep import sweep_configs


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
    for i, cfg in enumerate(configs):  # made-up rates, as if measured: the plan must use exactly these
        for stage in (1, 2):
            rates.entries[f"{rates.prefix}|{step_key(cfg, stage)}"] = {"step_s": 0.01 * (i + 1), "warmup_s": 5.0}
        rates.entries[f"{rates.prefix}|{finetune_key(cfg)}"] = {"per_example_s": 0.002, "overhead_s": 3.0}
    rates_module.write_json(rates.path, rates.entries)

    def never(*args, **kwargs):
        raise AssertionError("a cached rate was measured again")
    monkeypatch.setattr(rates_module, "measure_steps", never)
    monkeypatch.setattr(rates_module, "measure_finetune", never)
    frame = plan().set_index("run")
    for i, cfg in enumerate(configs):
        b, stages = budget(cfg), 2 if cfg.variant == "two-stage" else 1
        assert frame.loc[cfg.name, "pretrain_min"] == pytest.approx((b["steps"] * 0.01 * (i + 1) + 5 * stages) / 60)
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
