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


@pytest.mark.integration  # a whole sweep, processes or ranks: the integration tier
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


@pytest.mark.integration  # a whole sweep, processes or ranks: the integration tier
def test_sigterm_to_a_parallel_sweep_stops_its_runs_and_releases_the_lock(data_dir, tmp_path):
    """A parallel sweep killed by a scheduler (SIGTERM): its children stop with it, nothing stays locked, and it exits
    as SIGTERM's (143), so that a job script sees it was stopped rather than done."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    sweep = tmp_path / "parallel-check.yaml"
    sweep.write_text(SWEEP)
    results = tmp_path / "results"
    parent = subprocess.Popen(
        [sys.executable, "-m", "lightning_electra", "sweep", str(sweep), "--scale", "smoke", "--no-report",
         "--parallel", "2", "--runs", "bert,electra", f"data.cache_dir={tmp_path / 'cache'}",
         f"data.data_dir={data_dir}", "data.max_corpus_bytes=200000", "train.flops_budget=1e14",
         f"results_dir={results}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    seen = []
    for line in parent.stdout:  # both runs started and training
        seen.append(line)
        if any(s.startswith("[bert") for s in seen) and any(s.startswith("[electra") for s in seen):
            break
    assert parent.poll() is None, "".join(seen)
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and str(results).encode()
                in _cmdline(int(p)) and int(p) != parent.pid]
    assert len(children) == 2, children
    parent.send_signal(signal.SIGTERM)
    parent.stdout.read()
    assert parent.wait(timeout=60) == 128 + signal.SIGTERM
    time.sleep(0.5)
    assert not any(os.path.exists(f"/proc/{pid}") and b"<defunct>" not in _stat(pid) for pid in children)
    assert not (results / "parallel-check" / ".lock").exists()


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _stat(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return b"<defunct>" if stat.split(b") ")[1][:1] == b"Z" else stat
    except OSError:
        return b"<defunct>"
