"""Resume and integrity: an interrupted run continues exactly where it stopped, a diverged one stops cleanly, and no
file is ever read half-written."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from lightning_electra.callbacks import NonFiniteLossError
from lightning_electra.data.datamodule import EpochSampler
from lightning_electra.runner import pretrain as run_module
from lightning_electra.runner.pretrain import pretrain
from lightning_electra.runner.trainer import AtomicCheckpointIO

ROOT = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    pass


def interrupt_at(monkeypatch, step: int) -> None:
    """Stop the next fit as a kill would, when `step` optimizer steps are done (and checkpointed)."""
    def stop(self, trainer, module, batch, batch_idx):
        if trainer.global_step == step:
            raise Interrupted
    monkeypatch.setattr(run_module.FractionCheckpoints, "on_train_batch_start", stop, raising=False)


@pytest.mark.parametrize("step_graph", [False, True])  # Lightning's automatic optimisation, and its manual one
def test_a_resumed_pretraining_matches_an_uninterrupted_one(smoke_cfg, tmp_path, monkeypatch, capsys, step_graph):
    # a checkpoint every step (steps // 10)
    cfg = smoke_cfg("train.steps=8", "train.log_every_n_steps=1", f"train.step_graph={step_graph}")
    pretrain(cfg, tmp_path / "straight")
    interrupt_at(monkeypatch, 3)  # mid-epoch: the epoch is 19 batches here
    with pytest.raises(Interrupted):
        pretrain(cfg, tmp_path / "resumed")
    monkeypatch.undo()
    capsys.readouterr()
    pretrain(cfg, tmp_path / "resumed")
    assert "resuming from" in capsys.readouterr().out

    def final(name):
        return torch.load(tmp_path / name / "pretrain" / "last.ckpt", weights_only=True)
    straight, resumed = final("straight"), final("resumed")
    assert straight["global_step"] == resumed["global_step"] == 8
    for key, value in straight["state_dict"].items():  # bit-identical on CPU: same batches, masks and samples
        assert torch.equal(value, resumed["state_dict"][key]), key
    for step in ("step-0000004", "step-0000008"):  # the encoders GLUE fine-tunes
        a, b = (load_file(tmp_path / name / "checkpoints" / step / "model.safetensors")
                for name in ("straight", "resumed"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    # the loss curve too: the logs before the checkpoint are kept, those after it logged once
    logs = [(tmp_path / name / "pretrain" / "logs" / "metrics.csv").read_text() for name in ("straight", "resumed")]
    assert logs[0] == logs[1] and len(logs[0].splitlines()) == 1 + 8


def test_a_resume_that_would_switch_the_step_graph_is_refused(smoke_cfg, tmp_path, monkeypatch):
    """Lightning counts manual (step graph) and automatic steps apart: switching would restart the count."""
    from lightning_electra.config import ConfigError

    interrupt_at(monkeypatch, 2)
    with pytest.raises(Interrupted):
        pretrain(smoke_cfg("train.steps=4"), tmp_path / "run")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"written with train.step_graph=false.* Resume with train.step_graph=false"):
        pretrain(smoke_cfg("train.steps=4", "train.step_graph=true"), tmp_path / "run")


def test_the_sampler_resumes_mid_epoch_with_that_epochs_permutation():
    def order(done):
        return list(EpochSampler(10, 3, seed=7, done=lambda: done))
    assert sorted(order(0)) == list(range(10)) and order(0) != order(3), "a new permutation every epoch"
    assert order(4) == order(3)[3:] and order(2) == order(0)[6:], "resuming skips the batches already done"


def test_a_resume_that_would_change_the_accumulation_is_refused(smoke_cfg):
    from types import SimpleNamespace

    from lightning_electra.config import ConfigError
    from lightning_electra.data.datamodule import PretrainDataModule

    dm = PretrainDataModule(smoke_cfg())
    dm.trainer = SimpleNamespace(world_size=1, accumulate_grad_batches=1)
    dm.batches_done = 6
    state = dm.state_dict()
    dm.trainer = SimpleNamespace(world_size=2, accumulate_grad_batches=1)  # more devices, same accumulation: fine
    dm.load_state_dict(state)
    assert dm.batches_done == 6, "the same global batches done, each device now taking half of each"
    dm.trainer = SimpleNamespace(world_size=1, accumulate_grad_batches=2)
    with pytest.raises(ConfigError, match="accumulating 1 .*accumulating 2"):
        dm.load_state_dict(state)


class InfiniteGradient(torch.autograd.Function):
    """Adds nothing to the loss, but an infinite gradient: after clipping, NaN weights from a finite loss."""

    @staticmethod
    def forward(ctx, x):
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, torch.inf)


@pytest.mark.parametrize("step_graph", [False, True])  # the guard reads the loss before backward, or after the step
@pytest.mark.parametrize("broken, message, kept", [("loss", "non-finite loss at step 3", 2),
                                                   ("weights", "non-finite weights after step 2", 1)])
def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(smoke_cfg, tmp_path, monkeypatch, broken,
                                                                     message, kept, step_graph):
    from lightning_electra.objectives import objective

    cls = objective("electra")
    objective = cls.objective

    def diverging(self, batch, masked):
        metrics = objective(self, batch, masked)
        if broken == "loss" and self.global_step == 2:
            return {**metrics, "loss": metrics["loss"] * torch.nan}
        if broken == "weights" and self.global_step == 1:
            return {**metrics, "loss": metrics["loss"] + InfiniteGradient.apply(next(self.parameters()).sum())}
        return metrics
    monkeypatch.setattr(cls, "objective", diverging)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err:
        pretrain(smoke_cfg("train.steps=3", f"train.step_graph={step_graph}"), out)  # a checkpoint every step
    last = out / "pretrain" / "last.ckpt"
    assert message in str(err.value) and f"{last} (step {kept}), is kept" in str(err.value)
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == kept and all(v.isfinite().all() for v in saved["state_dict"].values())
    # no encoder saved after the divergence either (checkpoints at steps 2 and 3), and the run is not done
    encoders = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert encoders == (["step-0000002"] if broken == "loss" else [])
    assert not (out / "pretrain.json").exists()


def test_a_checkpoint_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def killed(obj, f):  # half the bytes, then the process dies
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}


# --- a whole sweep, killed and run again ------------------------------------------------------------------------
def sweep(args: list[str], data_dir: Path, stop=None, sig=signal.SIGKILL, timeout: float = 600) -> tuple[int, str]:
    """`python -m lightning_electra sweep ARGS`; with `stop` (output so far -> bool), sends `sig` once it holds."""
    proc = subprocess.Popen([sys.executable, "-m", "lightning_electra", "sweep", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "DATA_DIR": str(data_dir), "PYTHONWARNINGS": "ignore"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in proc.stdout], daemon=True)
    reader.start()
    deadline = time.time() + timeout
    while proc.poll() is None:
        if stop is not None and stop("".join(lines)):
            proc.send_signal(sig)
            break
        assert time.time() < deadline, "".join(lines)
        time.sleep(0.02)
    proc.wait()
    reader.join()
    return proc.returncode, "".join(lines)


def sweep_args(tmp_path: Path, name: str, data_dir: Path) -> list[str]:
    """Two runs (ELECTRA, BERT), two checkpoints each, one STS-B fine-tune of each: STS-B's correlations move with
    any weight, where so small an RTE run predicts one class whatever the encoder."""
    return ["small-model", "--scale", "smoke", "--reports-dir", str(tmp_path / name / "reports"),
            f"results_dir={tmp_path / name / 'results'}", f"data.cache_dir={tmp_path / 'cache'}",
            f"data.data_dir={data_dir}", "data.max_corpus_bytes=200000", "train.steps=6",
            "train.log_every_n_steps=1", "train.checkpoint_fractions=[0.5,1.0]", "finetune.tasks=[STS-B]",
            "finetune.seeds=1",
            "finetune.task_epochs.STS-B=1", "finetune.max_train_examples=32", "finetune.max_eval_examples=32"]


def table(tmp_path: Path, name: str) -> pd.DataFrame:
    # the commit may move while the test runs (others work in this checkout); every other column must match
    return pd.read_csv(tmp_path / name / "results" / "small-model" / "results.csv").drop(columns="commit")


@pytest.mark.integration  # a whole sweep, processes or ranks: the integration tier
def test_a_sweep_killed_anywhere_resumes_to_the_uninterrupted_table(data_dir, tmp_path, capsys):
    from tests.conftest import sweep_main as main

    main(sweep_args(tmp_path, "straight", data_dir))  # in this process: it saves a start-up (imports) per sweep
    args = sweep_args(tmp_path, "killed", data_dir)
    runs = tmp_path / "killed" / "results" / "small-model" / "smoke"

    # 1. SIGKILL during pre-training, once a step is checkpointed and logged (a checkpoint every step here)
    def logged(_):
        return any(len(log.read_text().splitlines()) > 1 for log in runs.glob("electra-*/pretrain/logs/metrics.csv"))
    code, out = sweep(args, data_dir, stop=logged)
    assert code == -signal.SIGKILL and not any(runs.glob("electra-*/pretrain.json")), out
    # 2. SIGTERM during fine-tuning: it stops the sweep at once too
    code, out = sweep(args, data_dir, stop=lambda out: "[finetune] electra" in out, sig=signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and "resuming from" in out and "[sweep] results" not in out, out
    # 3. SIGKILL while the report is written
    code, out = sweep(args, data_dir, stop=lambda out: "[sweep] results:" in out)
    assert code == -signal.SIGKILL and "[pretrain] electra" not in out, out
    # 4. the same command again finishes the sweep
    capsys.readouterr()
    main(args)
    out = capsys.readouterr().out
    assert out.count("finished earlier") == 3 and "[pretrain]" not in out, out  # electra, bert, the control

    straight, resumed = table(tmp_path, "straight"), table(tmp_path, "killed")
    assert len(straight) and not resumed.duplicated().any()
    pd.testing.assert_frame_equal(straight, resumed)  # exact: fine-tuning is deterministic on CPU given its seed
    for encoder in (tmp_path / "straight" / "results").rglob("model.safetensors"):  # and so is pre-training
        a, b = load_file(encoder), load_file(tmp_path / "killed" / encoder.relative_to(tmp_path / "straight"))
        assert all(torch.equal(a[k], b[k]) for k in a), encoder
    for log in (tmp_path / "straight" / "results").rglob("metrics.csv"):  # with its log, every step once
        assert log.read_text() == (tmp_path / "killed" / log.relative_to(tmp_path / "straight")).read_text(), log
    report = tmp_path / "killed" / "reports" / "smoke" / "small-model"
    assert (report / "summary.md").exists() and (report / "glue_vs_flops.png").exists()
    pd.testing.assert_frame_equal(pd.read_csv(report / "results.csv").drop(columns="commit"), resumed)
