"""`--parallel N`: a sweep's runs as N processes at once, each run's directory, rows and hashes those of a sequential
sweep; a run that fails stops none of the others and is reported at the end."""

import pandas as pd
import pytest

from tests.conftest import sweep_main as main

SWEEP = """name: parallel-check
runs:
  - {name: bert, variant: bert}
  - {name: electra, variant: electra}
  - {name: diverges, variant: electra, train: {lr: 1.0e+20}}
"""


def run_dirs(results):
    return sorted(p.name for p in (results / "parallel-check" / "smoke").iterdir() if p.name != "logs"
                  and p.is_dir())


def test_parallel_runs_write_what_a_sequential_sweep_writes_and_a_failure_stops_none(data_dir, tmp_path, capsys):
    sweep = tmp_path / "parallel-check.yaml"
    sweep.write_text(SWEEP)
    common = [str(sweep), "--scale", "smoke", "--no-report", f"data.cache_dir={tmp_path / 'cache'}",
              f"data.data_dir={data_dir}", "data.max_corpus_bytes=200000", "train.flops_budget=2e11",
              "finetune.tasks=[RTE]", "finetune.seeds=1", "finetune.max_train_examples=32",
              "finetune.max_eval_examples=32"]
    sequential, parallel = tmp_path / "sequential", tmp_path / "parallel"
    main([*common, "--runs", "bert,electra", f"results_dir={sequential}"])
    with pytest.raises(SystemExit) as err:
        main([*common, "--parallel", "2", f"results_dir={parallel}"])
    out = capsys.readouterr().out
    assert "[bert    ]" in out and "[electra ]" in out, "each run's output, its name in front"
    message = str(err.value.code)
    assert "1 run(s) of parallel-check failed" in message and "diverges: error: diverges (electra): non-finite loss" \
        in message and "diverges.log" in message
    assert "bert" not in message.split("failed")[1]  # the others finished

    # the table holds the finished runs, with the same rows and hashes as the sequential sweep's
    tables = [pd.read_csv(root / "parallel-check" / "results.csv") for root in (sequential, parallel)]
    assert set(tables[1]["run"]) == {"bert", "electra"}
    pd.testing.assert_frame_equal(*tables)
    assert [d for d in run_dirs(parallel) if not d.startswith("diverges")] == run_dirs(sequential)
    assert not (parallel / "parallel-check" / ".lock").exists()

    # the same command again runs only what is not finished (the run that fails, failing again)
    with pytest.raises(SystemExit):
        main([*common, "--parallel", "2", f"results_dir={parallel}"])
    out = capsys.readouterr().out
    assert "[bert" not in out and "[diverges]" in out
