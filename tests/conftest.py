import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "data"  # small real slices, in git (tests/fixtures/README.md)


def shared_data() -> Path:
    # absolute: a relative DATA_DIR (the README's ../shared/data) means nothing to a test that runs elsewhere
    return Path(os.environ.get("DATA_DIR") or ROOT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The fixture slices: every test but the `full_data` ones runs on them, with or without data beside."""
    return FIXTURES


@pytest.fixture(scope="session")
def full_data_dir() -> Path:
    """The whole data (DATA_DIR, else ../shared/data), for the tests marked `full_data`."""
    path = shared_data()
    if not (path / "glue").is_dir():
        pytest.skip(f"the whole data is not at {path}: set DATA_DIR (these tests are marked full_data)")
    return path


@pytest.fixture(scope="session")
def special():
    from lightning_electra.data.files import PACKAGED_VOCAB_FILE
    from lightning_electra.data.tokenizer import special_ids

    return special_ids(PACKAGED_VOCAB_FILE)


@pytest.fixture
def smoke_cfg(data_dir, tmp_path):
    """The smoke config on the real data, writing under tmp_path, with a small corpus for speed."""
    from lightning_electra.runner.configs import load_config

    def make(*overrides: str, variant: str = "electra"):
        return load_config("smoke", variant=variant, overrides=[
            f"data.data_dir={data_dir}", f"results_dir={tmp_path / 'results'}",
            f"data.cache_dir={tmp_path / 'cache'}", "data.max_corpus_bytes=200000", *overrides])

    return make


@pytest.fixture
def variant_setup():
    """cfg -> (the variant's module, a collated batch of 8 real packed examples)."""
    from lightning_electra.data.datamodule import PretrainDataModule
    from lightning_electra.runner.pretrain import build_module

    def make(cfg):
        dm = PretrainDataModule(cfg)
        module = build_module(cfg, data=dm)
        return module, dm.collate([dm.train_set[i] for i in range(8)])

    return make


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is faster, and immune to other processes competing for the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide ElectraModel saved in transformers' format (random weights, the real vocabulary's size)."""
    import torch
    from transformers import ElectraConfig, ElectraModel

    torch.manual_seed(0)
    model = ElectraModel(ElectraConfig(vocab_size=30522, embedding_size=32, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=1, intermediate_size=64))
    path = tmp_path_factory.mktemp("backbone")
    model.save_pretrained(path)
    return path


def sweep_main(args: list[str]) -> None:
    """`python -m lightning_electra sweep ARGS`, in this process (it saves a start-up, imports, per sweep)."""
    from lightning_electra.cli import main

    main(["sweep", *args])
