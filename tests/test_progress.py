"""Progress and ETA of long phases (lightning_electra/progress.py): in a file, a line at every 5% or every minute,
whichever comes first, throttled on a fake clock; on a terminal, a bar; and a real smoke pre-training whose output
goes to a file (pytest's capture is not a terminal) shows progress lines with an ETA."""

import io
import re

import pytest
from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

from lightning_electra.progress import Progress, duration
from lightning_electra.runner.pretrain import pretrain


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(total: int, seconds_a_unit: float, **kwargs) -> list[str]:
    clock, out = Clock(), io.StringIO()
    progress = Progress("[test] phase", total, "step", stream=out, clock=clock, **kwargs)
    for done in range(1, total + 1):
        clock.now += seconds_a_unit
        progress.update(done, ["loss 1.0"])
    progress.close()
    return out.getvalue().splitlines()


def test_a_fast_phase_prints_a_line_every_five_percent():
    lines = run(1000, 0.02)  # 20 s in all: 5% (1 s) always comes before the minute
    assert len(lines) == 20
    assert lines[0].startswith("[test] phase: step 50/1,000 (5%), loss 1.0, 1s so far, ETA 19s (")
    assert lines[-1] == "[test] phase: step 1,000/1,000 (100%), loss 1.0, 20s so far, done"


def test_a_slow_phase_prints_a_line_a_minute_at_most():
    lines = run(1000, 10.0)  # 5% takes 500 s: a line each minute instead (each 6 units of 10 s)
    steps = [int(re.search(r"step ([\d,]+)/", line).group(1).replace(",", "")) for line in lines]
    assert steps[:3] == [6, 12, 18] and steps[-1] == 1000
    assert all(b - a <= 6 for a, b in zip(steps, steps[1:]))  # never more than a minute's units apart
    assert "step 498/1,000 (50%), loss 1.0, 1h23m so far, ETA 1h23m (" in "\n".join(lines)


def test_due_says_beforehand_whether_a_line_would_be_printed():
    clock, out = Clock(), io.StringIO()
    progress = Progress("[test]", 100, "runs", start=10, stream=out, clock=clock, every_s=5)
    assert not progress.due(11) and not progress.update(11)  # nothing printed: too soon, too little
    clock.now = 5.0
    assert progress.due(12) and progress.update(12)  # the interval has passed
    # the rate counts only what this invocation did (from `start`: runs finished before are not in it)
    assert progress.rate() == pytest.approx(2 / 5) and progress.eta() == pytest.approx(88 / 0.4)
    assert "runs 12/100 (12%), 5s so far, ETA 3m40s (" in out.getvalue()
    assert Progress("[off]", 10, stream=out, enabled=False, clock=clock).update(10) is False


def test_on_a_terminal_it_is_a_bar():
    out = io.StringIO()
    progress = Progress("[test] bar", 40, "fine-tunes", stream=out, bar=True)
    progress.update(40, ["loss 2.5"])
    progress.close()
    text = out.getvalue()
    assert "[test] bar" in text and "40/40" in text and "loss 2.5" in text and "so far" not in text


def test_durations_read_at_a_glance():
    assert [duration(s) for s in (5, 65, 7380, 100000)] == ["5s", "1m05s", "2h03m", "1d03h"]


def test_a_smoke_pretraining_logged_to_a_file_shows_progress_with_an_eta(smoke_cfg, tmp_path, capsys, monkeypatch):
    """21 steps also make the closing save of last.ckpt run (checkpoints every 2 steps), which must say weights_only."""
    dumps = []
    original = _CheckpointConnector.dump_checkpoint

    def dump(self, weights_only=None):
        dumps.append(weights_only)
        return original(self, weights_only)

    monkeypatch.setattr(_CheckpointConnector, "dump_checkpoint", dump)
    monkeypatch.setattr("lightning_electra.progress.EVERY_S", 0.0)  # a line at every step that moves
    pretrain(smoke_cfg("train.flops_budget=null", "train.steps=21", "train.batch_size=4"), tmp_path / "run")
    out = capsys.readouterr().out
    lines = re.findall(r"^\[pretrain\] run: step (\d+)/21 \(\d+%\), loss [\d.e+-]+, [\d,]+ tokens/s, "
                       r"\w+ so far, (ETA \w+ \(\d\d:\d\d:\d\d\)|done)$", out, re.M)
    assert len(lines) >= 10 and any(eta.startswith("ETA") for _, eta in lines), out
    assert lines[-1] == ("21", "done")
    assert dumps and None not in dumps, f"a checkpoint saved without weights_only said: {dumps}"


def test_a_message_is_one_tagged_line_on_the_stream_of_the_moment(capsys):
    from lightning_electra.log import logger

    logger("sweep").info("results: here")
    logger("data").warning("a short corpus")
    logger("sweep").error("stopped at run a")
    out, err = capsys.readouterr()
    assert out == "[sweep] results: here\n[data] warning: a short corpus\n" and err == "[sweep] stopped at run a\n"
