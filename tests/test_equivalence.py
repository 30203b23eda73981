"""Speed never changes the science: the suite's optimised path and the plain transformers path give the same losses.

The suite runs G's MLM head only at the masked slots and computes its losses itself; the plain path
(lightning_electra/tools/baseline.py) asks transformers' `ElectraForMaskedLM` / `ElectraForPreTraining` for their
losses over full-vocabulary logits with labels=-100 off the masked positions. Same weights, same batch, same masks,
same sampled tokens: the losses and gradients must agree to float tolerance. Also: the benchmark's command line
writes its table, and (slow) torch.compile of the step changes nothing either.
"""

import json
import runpy
import sys

import pandas as pd
import pytest
import torch

from lightning_electra.data.packing import batch_from_ids, synthetic_ids
from lightning_electra.data.tokenizer import SpecialIds
from lightning_electra.objectives import objective
from lightning_electra.runner.configs import load_config
from lightning_electra.step_runner import step_runner
from lightning_electra.tools.baseline import SMALL_MODEL, plain_electra_objective, plain_mlm_objective
from analysis.benchmark import render
from lightning_electra.benchmark_table import COLUMNS, STEP, STEP_BEFORE_LIGHTNING_FIT

# No data needed: random ids shaped like packed examples, BERT's special ids, a small vocabulary for speed.
SPECIAL = SpecialIds(pad=0, unk=100, cls=101, sep=102, mask=103, vocab_size=2048)
REQUIRED = ["variant", "implementation", "compiled", "device", "precision", "batch_size", "seq_len", "tokens_per_s",
            "step_ms", "paper_flops_per_s", "measured_flops_per_s", "mfu", "peak_mem_gb"]


pytestmark = pytest.mark.usefixtures("one_thread")


def small(variant: str, *overrides: str):
    """A 2 x 64 model without dropout, so train mode is deterministic."""
    return load_config("smoke", variant=variant, overrides=[*SMALL_MODEL, "data.max_seq_length=64", "model.dropout=0.0",
                                                            "model.attention_dropout=0.0", *overrides])


def batch_with_filler_slots(rows: int = 6, seq: int = 64) -> dict[str, torch.Tensor]:
    ids = synthetic_ids(rows, seq, SPECIAL, seed=1)
    ids[0, 10:] = SPECIAL.pad  # a short row: 1 chosen position, the other slots are weight-0 filler
    ids[0, 5], ids[0, 9] = SPECIAL.sep, SPECIAL.sep
    return batch_from_ids(ids, SPECIAL)


def grads(module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    return out


def assert_same_grads(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=name)


def test_electra_losses_match_the_plain_transformers_path():
    cfg = small("electra")
    torch.manual_seed(0)
    module = objective("electra")(cfg, SPECIAL).train()
    batch = batch_with_filler_slots()
    masked = module.mask(batch)
    assert (masked.weights == 0).any() and (masked.weights == 1).any()

    torch.manual_seed(1)  # the same seed before each path: the same Gumbel draws over (B, P, V)
    suite = module.objective(batch, masked)
    suite["loss"].backward()
    suite_grads = grads(module)
    torch.manual_seed(1)
    _, suite_corrupted = module.generator.corrupt(batch, masked)
    torch.manual_seed(1)
    plain = plain_electra_objective(module.generator.mlm, module.discriminator, batch, masked,
                                    cfg.train.temperature, cfg.train.disc_weight)
    plain["loss"].backward()
    plain_grads = grads(module)

    assert torch.equal(plain["corrupted"], suite_corrupted)  # same sampled tokens
    assert (suite_corrupted != batch["input_ids"]).any()
    for key in ("mlm_loss", "disc_loss", "loss"):
        torch.testing.assert_close(suite[key], plain[key], rtol=1e-5, atol=1e-6, msg=key)
    assert_same_grads(suite_grads, plain_grads)


def test_bert_loss_matches_the_plain_transformers_path():
    torch.manual_seed(0)
    module = objective("bert")(small("bert"), SPECIAL).train()
    batch = batch_with_filler_slots()
    masked = module.mask(batch)
    suite = module.objective(batch, masked)
    suite["loss"].backward()
    suite_grads = grads(module)
    plain = plain_mlm_objective(module.mlm, batch, masked)
    plain["loss"].backward()
    torch.testing.assert_close(suite["mlm_loss"], plain["mlm_loss"], rtol=1e-5, atol=1e-6)
    assert_same_grads(suite_grads, grads(module))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported by this file
def test_benchmark_command_line_writes_the_table(tmp_path, monkeypatch):
    """`python -m lightning_electra benchmark --device cpu ...`, run in this process (no second import of torch)."""
    monkeypatch.delenv("DATA_DIR", raising=False)  # synthetic ids: no data needed
    monkeypatch.setattr(sys, "argv", ["lightning_electra", "benchmark", "--device", "cpu", "--variants", "electra,plain", "--batch-sizes",
                                      "2", "--seq-len", "32", "--steps", "1", "--warmup", "0", "--out", str(tmp_path)])
    runpy.run_module("lightning_electra", run_name="__main__")
    frame = pd.read_csv(tmp_path / "benchmark.csv")
    assert list(frame.columns) == COLUMNS and set(REQUIRED) <= set(frame.columns)
    assert sorted(frame.implementation) == ["plain-transformers", "suite"] and set(frame.variant) == {"electra"}
    assert (frame.tokens_per_s > 0).all() and (frame.measured_flops_per_s > 0).all()
    assert frame.mfu.isna().all() and (frame.device.str.startswith("cpu")).all()
    # the suite's ELECTRA and the plain one do the same algorithm: the same paper-convention FLOPs per step
    assert frame.paper_flops_per_step.nunique() == 1
    report = (tmp_path / "benchmark.md").read_text()
    assert "## Provenance" in report and "## What bounds it" in report and "--device cpu" in report
    # re-rendering describes the step as the run that measured it recorded it, not as today's code measures one
    info = json.loads((tmp_path / "provenance.json").read_text())
    assert info["step"] == STEP and STEP in report
    del info["step"]  # as in tables from before provenance recorded the step
    (tmp_path / "provenance.json").write_text(json.dumps(info))
    assert STEP_BEFORE_LIGHTNING_FIT in render(tmp_path).read_text()


@pytest.mark.slow
def test_compiled_step_gives_the_eager_losses():
    """train.compile is a speed switch only (inductor told to draw random numbers as eager does)."""
    import torch._inductor.config as inductor

    torch.manual_seed(0)
    module = objective("electra")(small("electra", "train.compile=true"), SPECIAL).train()
    batch = batch_with_filler_slots()
    with inductor.patch(fallback_random=True):
        torch.manual_seed(2)
        compiled = step_runner(module)(batch, module.phase(1))
        compiled["loss"].backward()
        compiled_grads = grads(module)
    torch.manual_seed(2)
    eager = module.masked_objective(batch)
    eager["loss"].backward()
    for key in ("mlm_loss", "disc_loss", "loss", "replaced_fraction"):
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5, msg=key)
    assert_same_grads(compiled_grads, grads(module))


def test_lightning_clips_gradients_with_a_fused_adamw_under_bf16(monkeypatch):
    """GPU runs use a fused AdamW under bf16-mixed; Lightning's AMP plugin refuses to clip gradients for optimizers
    that unscale internally (though bf16 has no scaler), so the module clips them itself, by the same norm rule."""
    import lightning as L
    from torch.utils.data import DataLoader

    cfg = small("electra", "train.flops_budget=null", "train.steps=2", "train.precision=bf16-mixed")
    torch.manual_seed(0)
    module = objective("electra")(cfg, SPECIAL)
    configure = module.configure_optimizers

    def fused_on_cpu():  # what configure_optimizers builds on CUDA, on the CPU (fused AdamW runs there too)
        opt = configure()
        fused = torch.optim.AdamW(opt["optimizer"].param_groups, fused=True)
        opt["lr_scheduler"]["scheduler"] = torch.optim.lr_scheduler.LambdaLR(fused, lambda step: 1.0)
        return {**opt, "optimizer": fused}

    monkeypatch.setattr(module, "configure_optimizers", fused_on_cpu)
    norms = []
    monkeypatch.setattr(module, "on_before_optimizer_step", lambda optimizer: norms.append(
        torch.nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None]).item()))
    rows = [batch_with_filler_slots(4)] * 2
    trainer = L.Trainer(max_steps=2, accelerator="cpu", devices=1, precision="bf16-mixed", gradient_clip_val=0.5,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, DataLoader(rows, batch_size=None))
    assert trainer.global_step == 2 and len(norms) == 2
    # the hook saw the gradients before clipping; the last step's gradients are still there, clipped
    clipped = torch.nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None])
    assert norms[-1] > 0.5 and abs(clipped.item() - 0.5) < 1e-3
