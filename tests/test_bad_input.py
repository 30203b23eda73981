"""Bad inputs, one test each: the error's type, that its message says what is wrong, and what to do about it.

Cases already covered elsewhere are not repeated here: unknown or mistyped keys, a wrong-typed batch size, a
malformed override, hidden size vs heads, tie=all and two-stage with unequal G and D, unknown variants and tasks
(test_config.py); a row with too few columns and a missing GLUE file (test_glue.py).
"""

import lzma

import pandas as pd
import pytest
import torch

from lightning_electra.config import ConfigError
from lightning_electra.data.corpus import CorpusError
from lightning_electra.data.datamodule import PretrainDataModule, build_packed_corpus
from lightning_electra.data.glue_tasks import TASKS, GlueDataError, load_examples
from lightning_electra.data.tokenizer import VocabError
from lightning_electra.results import COLUMNS, ResultsError
from lightning_electra.runner.configs import load_config
from lightning_electra.runner.identity import config_hash

RTE_HEADER = "index\tsentence1\tsentence2\tlabel"
FIXTURE_CORPUS = __import__("tests.conftest", fromlist=["FIXTURES"]).FIXTURES / "corpus" / "sample-20mb.txt.xz"


def error(kind, call, *args, **kwargs) -> str:
    with pytest.raises(kind) as err:
        call(*args, **kwargs)
    return str(err.value)


@pytest.fixture
def own_data(data_dir, tmp_path):
    """A data directory of our own: the real vocabulary, a small corpus file, RTE only."""
    root = tmp_path / "data"
    (root / "vocab").mkdir(parents=True)
    (root / "vocab" / "v.txt").write_bytes((data_dir / "vocab" / "bert-base-uncased-vocab.txt").read_bytes())
    (root / "corpus").mkdir()
    (root / "corpus" / "c.txt").write_text("A first paragraph of text.\nA second one.\n\nAnother document.\n" * 200)
    for split in ("train", "dev"):
        (root / "glue" / "RTE").mkdir(parents=True, exist_ok=True)
        (root / "glue" / "RTE" / f"{split}.tsv").write_text(f"{RTE_HEADER}\n0\ta\tb\tentailment\n")
    return root


def own_cfg(root, tmp_path, *overrides):
    return load_config("smoke", overrides=[f"data.data_dir={root}", "data.vocab=vocab/v.txt",
                                           "data.corpus=[corpus/c.txt]", f"data.cache_dir={tmp_path / 'cache'}",
                                           f"results_dir={tmp_path / 'results'}", "finetune.tasks=[RTE]", *overrides])


# --------------------------------------------------------------------------------------------- config values


@pytest.mark.parametrize("override, expected", [
    ("train.lr=fast", "float"), ("train.steps=ten", "Optional[int]"), ("train.compile=maybe", "bool"),
    ("data.corpus=5", "list[str]"), ("train.devices=[0,1]", "str"),
])
def test_a_value_of_the_wrong_type_names_the_key_and_the_type_expected(override, expected):
    key = override.split("=")[0]
    msg = error(ConfigError, load_config, "smoke", overrides=[override])
    assert f"'{key}'" in msg and f"Expected {expected}" in msg and "reference_type" not in msg  # no OmegaConf dump


def test_an_environment_default_of_the_wrong_type_names_the_key_and_the_variable(monkeypatch):
    monkeypatch.setenv("NUM_NODES", "two")
    msg = error(ConfigError, load_config, "smoke")
    assert "'train.num_nodes'" in msg and "NUM_NODES" in msg and "'two'" in msg


def test_an_unknown_key_in_a_sweep_file_names_the_file():
    msg = error(ConfigError, load_config, "smoke", layers=[({"train": {"lrate": 1e-3}}, "sweep x run y")])
    assert "'train.lrate'" in msg and "sweep x run y" in msg and "train.lr" in msg


@pytest.mark.parametrize("text, message", [
    ("claim: [a > b]\n", r"Unknown key 'claim' in .*own\.yaml\. Did you mean claims\? A sweep file holds runs, name"),
    ("seeds: three\n", r"Bad value for 'seeds' in .*own\.yaml: Value 'three' of type 'str' could not be converted"),
    ("budget: steps\n", r"budget must be one of flops, electra-steps; got steps"),
    ("runs:\n  - {variant: bert}\n", r"every run needs a unique `name`"),
])
def test_a_sweep_files_own_keys_are_typed_and_checked(tmp_path, text, message):
    from lightning_electra.runner.configs import load_sweep

    path = tmp_path / "own.yaml"
    path.write_text(text + ("runs:\n  - {name: electra, variant: electra}\n" if "runs:" not in text else ""))
    with pytest.raises(ConfigError, match=message):
        load_sweep(str(path))


@pytest.mark.parametrize("overrides, message", [
    (["model.generator_fraction=0"], r"generator_fraction .* \(0, 1\]"),
    (["data.max_seq_length=1024"], r"max_seq_length=1024 exceeds model\.max_position_embeddings=512: raise"),
    (["model.hidden_size=516", "model.num_heads=4"], r"Generator hidden size 129 .* pick a fraction"),  # G: 2 heads
    (["train.num_nodes=0"], r"train\.num_nodes must be at least 1"),
    (["train.max_device_batch=0"], r"train\.max_device_batch must be at least 1"),
])
def test_impossible_sizes_say_what_to_change(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", overrides=overrides)


@pytest.mark.parametrize("overrides, message", [
    (["train.step_graph=true", "train.adam_bias_correction=true"],
     r"step_graph replays the official optimiser .* Set train\.step_graph=false, or train\.adam_bias_correction=false"),
    (["train.step_graph=true", "train.precision=16-mixed"],
     r"16-mixed needs a gradient scaler .* train\.precision=bf16-mixed"),
    (["finetune.step_graph=true"], r"finetune\.step_graph .* needs finetune\.batched_seeds=true and "
                                   r"finetune\.length_buckets .* or finetune\.step_graph=false"),
    (["finetune.step_graph=true", "finetune.batched_seeds=true", "finetune.length_buckets=[32]",
      "finetune.adam_bias_correction=true"], r"finetune\.step_graph replays the official optimiser"),
])
def test_a_step_graph_that_cannot_replay_the_step_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", overrides=overrides)


# --------------------------------------------------------------------------------------------- hardware


def hardware(*overrides):
    from lightning_electra.runner.trainer import check_hardware

    return error(ConfigError, check_hardware, load_config("smoke", overrides=list(overrides)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine auto picks the GPUs")
def test_more_devices_than_exist():
    # auto on a machine without GPUs: Lightning would quietly start 4 CPU processes
    msg = hardware("train.devices=4")
    assert "train.devices=4" in msg and "0 visible GPU" in msg and "train.accelerator=cpu" in msg
    msg = hardware("train.accelerator=gpu", "train.devices=2")
    assert "train.accelerator=gpu train.devices=2" in msg and "Ask for devices that exist" in msg


def test_fsdp_without_a_gpu_is_a_config_error():
    msg = hardware("train.accelerator=cpu", "train.devices=2", "train.strategy=fsdp")
    assert "train.strategy=fsdp" in msg and "GPU" in msg


def test_a_step_graph_over_micro_batches_or_processes():
    msg = hardware("train.step_graph=true", "train.max_device_batch=8")  # the smoke batch is 16: 2 micro-batches
    assert "accumulates 2 micro-batch(es)" in msg and "train.step_graph=false" in msg
    msg = hardware("train.step_graph=true", "train.accelerator=cpu", "train.devices=2")
    assert "this run has 2 process(es)" in msg and "train.devices=1" in msg
    msg = hardware("train.step_graph=true", "train.accelerator=cpu", "train.devices=1", "train.strategy=ddp")
    assert "1 process(es) under train.strategy=ddp" in msg and "train.strategy=auto" in msg


def test_a_global_batch_that_does_not_split_over_the_devices():
    msg = hardware("train.accelerator=cpu", "train.devices=3")  # the smoke batch is 16
    assert "train.batch_size=16" in msg and "divisible by 3" in msg


# --------------------------------------------------------------------------------------------- data


def test_a_missing_data_directory_stops_a_run_before_any_work(smoke_cfg):
    from lightning_electra.runner.resolved import ResolvedRun
    from lightning_electra.runner.run import train_and_score

    cfg = smoke_cfg("data.data_dir=/nonexistent/data")
    msg = error(ConfigError, train_and_score, ResolvedRun.of(cfg, "s"))
    assert "'/nonexistent/data' does not exist" in msg and "DATA_DIR=" in msg
    assert not ResolvedRun.of(cfg, "s").layout.root.exists()


def test_a_missing_glue_task_stops_a_run_before_pretraining(own_data, tmp_path):
    from lightning_electra.runner.resolved import ResolvedRun
    from lightning_electra.runner.run import train_and_score

    cfg = own_cfg(own_data, tmp_path, "finetune.tasks=[CoLA,MRPC]")  # own_data has RTE only
    msg = error(ConfigError, train_and_score, ResolvedRun.of(cfg, "s"))
    assert "CoLA, MRPC" in msg and str(own_data / "glue") in msg and "DATA_DIR" in msg and "source=hub" in msg
    assert not ResolvedRun.of(cfg, "s").layout.root.exists()


def test_a_glue_row_with_a_stray_tab(tmp_path):
    path = tmp_path / "glue" / "RTE" / "dev.tsv"
    path.parent.mkdir(parents=True)
    path.write_text(f"{RTE_HEADER}\n0\ta\tb\tentailment\n1\ta\tb\tx\tentailment\n")
    msg = error(GlueDataError, load_examples, tmp_path, TASKS["RTE"], "dev")
    assert "line 3" in msg and "expected 4" in msg and "found 5" in msg and "fresh GLUE download" in msg


def test_a_glue_file_cut_mid_row(tmp_path):
    path = tmp_path / "glue" / "RTE" / "dev.tsv"
    path.parent.mkdir(parents=True)
    whole = f"{RTE_HEADER}\n0\ta\tb\tentailment\n1\tThe second premise.\tIts hypothesis.\tnot_entailment\n"
    path.write_text(whole[:-8])  # cut inside the last label
    msg = error(GlueDataError, load_examples, tmp_path, TASKS["RTE"], "dev")
    assert "line 3" in msg and "'not_ent'" in msg and "cut mid-row" in msg and "fresh GLUE download" in msg
    path.write_text(whole[: whole.index("premise")])  # cut inside a sentence: two columns short
    msg = error(GlueDataError, load_examples, tmp_path, TASKS["RTE"], "dev")
    assert "line 3" in msg and "found 2" in msg and "truncated" in msg


def test_a_glue_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "glue" / "RTE" / "dev.tsv"
    path.parent.mkdir(parents=True)
    path.write_bytes(f"{RTE_HEADER}\n0\tcaf\xe9\tb\tentailment\n".encode("latin-1"))
    msg = error(GlueDataError, load_examples, tmp_path, TASKS["RTE"], "dev")
    assert "line 2" in msg and "not UTF-8" in msg and "fresh GLUE download" in msg


def test_an_empty_corpus(own_data, tmp_path):
    (own_data / "corpus" / "c.txt").write_text("\n\n")
    msg = error(CorpusError, PretrainDataModule(own_cfg(own_data, tmp_path)).prepare_data)
    assert "holds no text" in msg and "data.corpus" in msg


def test_a_truncated_corpus_file(own_data, tmp_path):
    packed = lzma.compress(("A paragraph of text.\n" * 20000).encode())
    (own_data / "corpus" / "c.txt.xz").write_bytes(packed[: len(packed) // 2])  # an interrupted download
    cfg = own_cfg(own_data, tmp_path, "data.corpus=[corpus/c.txt.xz]")
    msg = error(CorpusError, PretrainDataModule(cfg).prepare_data)
    assert str(own_data / "corpus" / "c.txt.xz") in msg and "truncated" in msg and "Download it again" in msg


def test_a_vocabulary_without_the_special_tokens(own_data, tmp_path):
    vocab = own_data / "vocab" / "v.txt"
    vocab.write_text("\n".join(t for t in vocab.read_text().splitlines() if t != "[MASK]") + "\n")
    msg = error(VocabError, PretrainDataModule, own_cfg(own_data, tmp_path))
    assert "[MASK]" in msg and "bert-base-uncased-vocab.txt" in msg


def test_a_vocabulary_with_a_repeated_token(own_data, tmp_path):
    vocab = own_data / "vocab" / "v.txt"
    vocab.write_text(vocab.read_text() + "hello\n")  # ids past the embedding table otherwise
    msg = error(VocabError, PretrainDataModule, own_cfg(own_data, tmp_path))
    assert "repeats" in msg and "'hello'" in msg and "remove the repeats" in msg


def test_a_vocabulary_too_large_for_the_packed_cache(own_data, tmp_path):
    vocab = own_data / "vocab" / "v.txt"
    vocab.write_text(vocab.read_text() + "".join(f"extra{i}\n" for i in range(40_000)))  # 70,522 tokens
    msg = error(VocabError, build_packed_corpus, own_cfg(own_data, tmp_path).data, tmp_path / "out")
    assert "70,522 tokens" in msg and "65,536" in msg


# --------------------------------------------------------------------------------------------- results, checkpoints


def table(sweep: str, run: str = "tie-none") -> pd.DataFrame:
    return pd.DataFrame([{**{c: 0 for c in COLUMNS}, "sweep": sweep, "run": run, "scale": "smoke"}])


def sweep_main(tmp_path, data_dir):
    from tests.conftest import sweep_main as main

    main(["weight-sharing", "--scale", "smoke", "--no-report", f"results_dir={tmp_path / 'results'}",
          f"data.data_dir={data_dir}", f"data.cache_dir={tmp_path / 'cache'}"])


def test_a_sweep_table_of_another_sweep_stops_the_sweep_before_training(tmp_path, data_dir):
    path = tmp_path / "results" / "weight-sharing" / "results.csv"
    path.parent.mkdir(parents=True)
    table("efficiency").to_csv(path, index=False)
    with pytest.raises(SystemExit) as err:
        sweep_main(tmp_path, data_dir)
    msg = str(err.value.code)
    assert str(path) in msg and "['efficiency']" in msg and "Move it away" in msg and "rebuilds" in msg
    assert not (tmp_path / "results" / "weight-sharing" / "smoke").exists()  # nothing trained


def test_a_run_table_of_another_sweep_is_not_mixed_in(smoke_cfg):
    from lightning_electra.runner.resolved import ResolvedRun
    from lightning_electra.runner.run import train_and_score

    cfg = smoke_cfg()
    path = ResolvedRun.of(cfg, "weight-sharing").table
    path.parent.mkdir(parents=True)
    table("efficiency").to_csv(path, index=False)  # a run directory copied over from another sweep
    msg = error(ResultsError, train_and_score, ResolvedRun.of(cfg, "weight-sharing"))
    assert str(path) in msg and "not 'weight-sharing'" in msg and "Move it away" in msg


def test_a_checkpoint_of_another_variant_is_refused_before_training(smoke_cfg, tmp_path):
    from lightning_electra.runner.pretrain import build_module, fit_stage
    from lightning_electra.runner.trainer import Hardware

    bert_cfg, cfg = smoke_cfg(variant="bert"), smoke_cfg()
    stage_dir = tmp_path / "run" / "pretrain"
    stage_dir.mkdir(parents=True)
    torch.save({"state_dict": build_module(bert_cfg, data=PretrainDataModule(bert_cfg)).state_dict()},
               stage_dir / "last.ckpt")
    data = PretrainDataModule(cfg)
    msg = error(ConfigError, fit_stage, cfg, Hardware(1, 1), build_module(cfg, data=data), data, stage_dir,
                tmp_path / "ckpts", [1])
    assert str(stage_dir / "last.ckpt") in msg and "electra" in msg and "another variant" in msg
    assert "config.yaml" in msg and "delete it" in msg
    (stage_dir / "last.ckpt").write_bytes(b"half a checkpoint")  # a damaged file: the same advice
    msg = error(ConfigError, fit_stage, cfg, Hardware(1, 1), build_module(cfg, data=data), data, stage_dir,
                tmp_path / "ckpts", [1])
    assert "cannot be read" in msg and "delete it" in msg


def test_an_error_in_one_run_keeps_what_earlier_runs_did(tmp_path, data_dir, monkeypatch, capsys):
    """A sweep stopped by a run's error leaves every finished result, and the sweep's table, as they were."""
    import lightning_electra.runner.sweep as sweep

    previous = tmp_path / "results" / "weight-sharing" / "results.csv"
    previous.parent.mkdir(parents=True)
    table("weight-sharing").to_csv(previous, index=False)
    before = previous.read_text()
    done = tmp_path / "tie-none.csv"

    def fake_run(run):
        if run.name == "tie-embeddings":  # the second run's fine-tuning meets a bad GLUE file
            raise GlueDataError("glue/RTE/dev.tsv, line 3: ...")
        table(run.sweep, run.name).to_csv(done, index=False)
        return done
    monkeypatch.setattr(sweep, "pretrain_run", lambda run: None)
    monkeypatch.setattr(sweep, "train_and_score", fake_run)
    with pytest.raises(SystemExit) as err:
        sweep_main(tmp_path, data_dir)
    assert "line 3" in str(err.value.code)
    assert previous.read_text() == before and done.exists()
    note = capsys.readouterr().err
    assert "stopped at run tie-embeddings" in note and "kept" in note and "same command again" in note


# --------------------------------------------------------------------------------------------- a newcomer's first hour
@pytest.mark.parametrize("override, message", [
    ("train.flops_budget=-1", "train.flops_budget must be above 0; got -1"),
    ("finetune.seeds=0", "finetune.seeds must be at least 1; got 0"),
    ("train.steps=0", "train.steps must be at least 1"),
    ("data.max_seq_length=4", "data.max_seq_length must be at least 5"),
    ("model.dropout=1.5", "model.dropout must lie in [0, 1)"),
    ("train.warmup_fraction=1.0", "train.warmup_fraction must lie in [0, 1)"),
    ("finetune.task_epochs.RTE=0", "at least 1 epoch"),
])
def test_an_out_of_range_value_names_the_key_and_its_range(override, message):
    assert message in error(ConfigError, load_config, "smoke", overrides=[override])


def test_a_config_error_comes_before_torch_is_imported():
    """Seconds, not the 15 of the heavy imports: the command line checks the schema's rules first."""
    import subprocess
    import sys

    code = ("import sys\nfrom lightning_electra.cli import main\ntry:\n    main(['sweep', 'weight-sharing', "
            "'train.lr_rate=1'])\nexcept SystemExit as err:\n    print(err.code)\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "Unknown config key 'train.lr_rate'" in out and "Did you mean train.lr" in out
    assert out.strip().endswith("False"), "torch was imported before the message"


def test_a_missing_data_directory_says_make_data_before_any_work(tmp_path, capsys):
    from tests.conftest import sweep_main as main

    with pytest.raises(SystemExit) as err:
        main(["training-algorithms", f"data.data_dir={tmp_path / 'nowhere'}", f"results_dir={tmp_path / 'r'}"])
    assert "does not exist" in str(err.value.code) and "make data" in str(err.value.code)
    assert "stopped at run" not in capsys.readouterr().err  # nothing ran, so nothing is said to be kept
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content, message", [
    ("sentence\nit is good\nit is bad\n", "1 tab-separated column(s), but SST-2 reads 2"),  # no label column
    ("", "holds no SST-2 examples"),
    ("sentence\tlabel\n", "holds no SST-2 examples"),
])
def test_a_glue_file_without_labels_or_rows_is_refused_before_pretraining(tmp_path, data_dir, content, message):
    from lightning_electra.data.files import check_data

    root = tmp_path / "data"
    for part in ("corpus", "vocab"):
        (root / part).mkdir(parents=True)
        for f in (data_dir / part).iterdir():
            (root / part / f.name).write_bytes(f.read_bytes())
    (root / "glue" / "SST-2").mkdir(parents=True)
    (root / "glue" / "SST-2" / "train.tsv").write_text(content)
    (root / "glue" / "SST-2" / "dev.tsv").write_bytes((data_dir / "glue" / "SST-2" / "dev.tsv").read_bytes())
    cfg = load_config("smoke", overrides=[f"data.data_dir={root}", "finetune.tasks=[SST-2]"])
    msg = error(GlueDataError, check_data, cfg)
    assert message in msg and "train.tsv" in msg


@pytest.mark.parametrize("setting, warning", [
    (["data.vocab=vocab/small.txt"], "of the corpus tokens are [UNK]"),  # a 1,000-line vocabulary
    (["data.max_seq_length=8"], "keep 5% of the corpus's tokens"),
])
def test_a_vocabulary_or_length_that_loses_the_text_is_warned_about(own_data, tmp_path, capsys, setting, warning):
    (own_data / "vocab" / "small.txt").write_text("\n".join((own_data / "vocab" / "v.txt").read_text()
                                                             .splitlines()[:1000]) + "\n")
    (own_data / "corpus" / "c.txt").write_bytes(lzma.open(FIXTURE_CORPUS, "rb").read())
    PretrainDataModule(own_cfg(own_data, tmp_path, *setting)).prepare_data()
    assert warning in capsys.readouterr().out


def test_edited_data_files_are_new_results(own_data, tmp_path):
    """What a file holds is part of the hash, not only where it lies: an edited GLUE file or vocabulary re-runs."""
    from lightning_electra.data.glue_tasks import TASKS
    from lightning_electra.runner.identity import pretrain_hash
    from lightning_electra.runner.resolved import ResolvedRun

    cfg = own_cfg(own_data, tmp_path)
    before = (config_hash(cfg), pretrain_hash(cfg), ResolvedRun.of(cfg, "s").finetune_result(tmp_path, TASKS["RTE"], 0))
    dev = own_data / "glue" / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text() + "1\tc\td\tnot_entailment\n")
    after = (config_hash(cfg), pretrain_hash(cfg), ResolvedRun.of(cfg, "s").finetune_result(tmp_path, TASKS["RTE"], 0))
    assert after[0] != before[0] and after[1] == before[1] and after[2] != before[2]  # GLUE: no re-training
    vocab = own_data / "vocab" / "v.txt"
    vocab.write_text(vocab.read_text().replace("[unused0]", "[unused-zero]"))
    assert pretrain_hash(cfg) != before[1]


def test_a_config_key_after_a_make_target_is_an_override():
    """Dotted keys and the config's top-level ones (make would take either for a make variable and drop it); and a
    SWEEP in the environment is the GPU window's sweep name, not the Makefile's own command line."""
    import os
    import subprocess

    out = subprocess.run(["make", "-n", "weight-sharing", "train.lr=1e-3", "finetune.tasks=[RTE]"],
                         capture_output=True, text=True, check=True).stdout
    assert "sweep" in out and "weight-sharing train.lr=1e-3 finetune.tasks=[RTE]" in out
    out = subprocess.run(["make", "-n", "pretrain", "variant=bert", "results_dir=/tmp/r"], capture_output=True,
                         text=True, check=True).stdout
    assert "pretrain" in out and "variant=bert" in out and "results_dir=/tmp/r" in out
    out = subprocess.run(["make", "-s", "--eval", "probe: ; @echo \"$$SWEEP\"", "probe"], capture_output=True,
                         text=True, check=True, env={**os.environ, "SWEEP": "efficiency"}).stdout
    assert out.strip() == "efficiency", "what a recipe (gpu_window.sh) sees as SWEEP"


def test_two_sweeps_on_one_results_directory_cannot_both_run(tmp_path, data_dir):
    """The second names the first (process id, command) and stops; a dead holder's lock is taken over."""
    import json
    import os
    import subprocess
    import sys

    lock = tmp_path / "results" / "weight-sharing" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "command": "the first sweep",
                                "since": "now"}))
    with pytest.raises(SystemExit) as err:
        sweep_main(tmp_path, data_dir)
    assert f"process {os.getpid()}" in str(err.value.code) and "the first sweep" in str(err.value.code)
    assert not (tmp_path / "results" / "weight-sharing" / "smoke").exists()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock.write_text(json.dumps({"pid": gone.pid, "host": os.uname().nodename, "command": "a killed sweep"}))
    from lightning_electra.locks import held_lock

    with held_lock(lock, "the results"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()  # taken over
    assert not lock.exists()  # and let go


@pytest.mark.parametrize("errno_, cause", [(28, "the disk is full"), (30, "the file system is read-only")])
def test_a_failed_write_names_the_file_keeps_the_last_good_one_and_leaves_no_temp(tmp_path, monkeypatch, errno_,
                                                                                  cause):
    from lightning_electra.io import WriteError
    from lightning_electra.runner.trainer import AtomicCheckpointIO

    path = tmp_path / "pretrain" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a checkpoint")
        raise OSError(errno_, "No space left on device" if errno_ == 28 else "Read-only file system")

    monkeypatch.setattr(torch, "save", full_disk)
    msg = error(WriteError, AtomicCheckpointIO().save_checkpoint, {"step": 2}, path)
    assert str(path) in msg and cause in msg
    assert torch.load(path, weights_only=True) == {"step": 1}, "the last good checkpoint is kept"
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"], "no partial temporary file"


def test_exporting_a_file_that_is_not_a_checkpoint_is_one_clear_line(tmp_path, smoke_cfg):
    from lightning_electra.runner.configs import save_config
    from lightning_electra.runner.export import ExportError, export

    (tmp_path / "notes.ckpt").write_text("these are my notes, not a checkpoint")
    save_config(smoke_cfg(), tmp_path / "config.yaml")
    msg = error(ExportError, export, tmp_path / "notes.ckpt", tmp_path / "out", config=tmp_path / "config.yaml")
    assert "notes.ckpt cannot be read" in msg and "pass a run directory" in msg
    assert "weights_only" not in msg and "\n" not in msg


@pytest.mark.parametrize("argv, message", [
    (["plan", "training-algorithms", "--csv", "--budget-minutes", "5"], "drop --csv"),
    (["plan", "training-algorithms", "--no-time", "--budget-minutes", "5"], "drop --no-time"),
    (["sweep", "training-algorithms", "--csv"], "--csv is a plan's format: add --plan"),
    (["finetune", "{tmp}/nowhere", "--tasks", "RTE"], "/nowhere: no such file or directory"),
    (["benchmark", "--render", "{tmp}"], "no benchmark.csv or provenance.json in"),
    (["report", "nosuch", "--results-dir", "{tmp}"], "no results.csv at"),
    (["data", "--out", "{tmp}/d", "--source-dir", "{tmp}/nowhere", "--tasks", "RTE"], "no saved dataset at"),
])
def test_a_command_given_what_it_cannot_use_says_so_in_one_line(tmp_path, argv, message):
    from lightning_electra.cli import main

    if argv[0] == "data":
        pytest.importorskip("datasets")
    with pytest.raises(SystemExit) as err:
        main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert message in str(err.value.code)


def test_plan_is_a_flag_so_an_override_after_it_is_an_override(capsys):
    from tests.conftest import sweep_main as main

    main(["training-algorithms", "--scale", "smoke", "--plan", "--no-time", "train.flops_budget=8e11"])
    out = capsys.readouterr().out
    assert "[plan] training-algorithms at scale smoke: 11 runs" in out and "total: " in out and "6.4e+12" in out  # 8 pre-training runs


def test_a_plan_without_the_data_still_plans_and_says_the_sweep_would_stop(tmp_path, capsys):
    """A plan is made anywhere (sizing a scale on a laptop); the sweep it plans reads data, so it says what is missing."""
    from tests.conftest import sweep_main as main

    main(["training-algorithms", "--scale", "smoke", "--plan", "--no-time", f"data.data_dir={tmp_path}/nowhere"])
    out = capsys.readouterr().out
    assert "[plan] the sweep would stop before its first run here: Data directory" in out and "total: " in out
    with pytest.raises(SystemExit) as err:  # and the sweep does stop, before any work
        main(["training-algorithms", "--scale", "smoke", f"data.data_dir={tmp_path}/nowhere"])
    assert "does not exist" in str(err.value.code)
