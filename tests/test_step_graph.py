"""train.step_graph is a speed switch only: the whole step run by the StepGraph (Lightning's manual optimisation, the
learning rates as device scalars, clipping and the update its own) trains exactly as Lightning's automatic
optimisation does. On a CPU the StepGraph runs its body uncaptured; on a GPU (the last test) the captured replays
must match the same steps uncaptured."""

import pytest
import torch

from lightning_electra.data.glue_tasks import get_task
from lightning_electra.data.packing import batch_from_ids, synthetic_ids
from lightning_electra.data.tokenizer import SpecialIds
from lightning_electra.module import lightning_gradient_clip
from lightning_electra.objectives import objective
from lightning_electra.optim import AdamWeightDecay
from lightning_electra.runner.configs import load_config
from lightning_electra.timing import timed_fit
from lightning_electra.tools.baseline import SMALL_MODEL

SPECIAL = SpecialIds(pad=0, unk=100, cls=101, sep=102, mask=103, vocab_size=2048)


pytestmark = pytest.mark.usefixtures("one_thread")


def build(variant: str, step_graph: bool, *overrides: str, steps: int = 6, stage: int = 1):
    """A 2 x 64 model without dropout, for `steps` steps (clipping active, a warm-up and a decay)."""
    cfg = load_config("smoke", variant=variant, overrides=[
        *SMALL_MODEL, "data.max_seq_length=32", "model.dropout=0.0", "model.attention_dropout=0.0",
        "train.flops_budget=null", f"train.steps={steps}", "train.grad_clip=0.1", "train.warmup_fraction=0.5",
        "train.batch_size=4", "train.log_every_n_steps=2", f"train.step_graph={step_graph}", *overrides])
    torch.manual_seed(0)
    return objective(variant).for_stage(stage)(cfg, SPECIAL, stage=stage)


def fit(variant: str, step_graph: bool, *overrides: str, device: str = "cpu", steps: int = 6, stage: int = 1):
    """The module's own training step in a Lightning fit, as sweeps train it, over 3 batches of random ids."""
    module = build(variant, step_graph, *overrides, steps=steps, stage=stage)
    on = torch.device(device)
    pool = [{k: v.to(on) for k, v in batch_from_ids(synthetic_ids(4, 32, SPECIAL, seed=i), SPECIAL).items()}
            for i in range(3)]
    torch.manual_seed(1)
    timed_fit(module, pool, on, module.cfg.train.precision, lightning_gradient_clip(module.cfg), 1, steps - 1,
              log_every_n_steps=2)
    return module


@pytest.mark.parametrize("variant, overrides, stage", [
    ("electra", [], 1),
    ("electra", ["train.precision=bf16-mixed"], 1),  # Lightning's autocast around the step, not around its backward
    ("adversarial", ["adversarial.mle_warmup_fraction=0.5"], 1),  # its graph key flips half-way
    ("amos", ["amos.mixture=switch"], 1),  # its key moves through the exits; it records the mixture at log steps
    ("bert", [], 1), ("electra-15", [], 1), ("replace-mlm", [], 1), ("all-tokens-mlm", [], 1),
    ("two-stage", [], 1), ("two-stage", [], 2),  # stage 2: G frozen, so parameters without gradients
])
def test_the_step_graph_trains_as_automatic_optimisation(variant, overrides, stage):
    automatic, graphed = fit(variant, False, *overrides, stage=stage), fit(variant, True, *overrides, stage=stage)
    assert automatic.global_step == graphed.global_step == 6
    assert automatic.lr_schedulers().get_last_lr() == graphed.lr_schedulers().get_last_lr()
    untrained = build(variant, False, *overrides, stage=stage)
    moved = max((a - u).abs().max().item() for a, u in zip(automatic.parameters(), untrained.parameters()))
    assert moved > 1e-3, "the weights moved (so equal weights mean equal training)"
    # float rounding apart, the same weights. In bf16 the rounding of casts moves with the last bits of the weights, by
    # an amount that depends on the CPU's bf16 kernels: measured, 0.26% of the training's movement on an AMX machine,
    # where a clip 10% off moves 4%. So the bound is 1% of the movement.
    tolerance = 0.01 * moved if "bf16" in automatic.cfg.train.precision else 1e-6
    for (name, a), b in zip(automatic.named_parameters(), graphed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=tolerance, msg=name)
    if variant == "amos":  # the mixture weights recorded at log steps 2, 4 and 6, outside the step
        assert [row[0] for row in graphed.exit_weights] == [2, 4, 6]
        torch.testing.assert_close(torch.tensor(automatic.exit_weights), torch.tensor(graphed.exit_weights))


def test_the_optimiser_takes_its_learning_rate_as_a_device_scalar():
    torch.manual_seed(0)
    weights = [torch.randn(5, 3), torch.randn(7)]
    runs = []
    for lr in (2e-3, torch.tensor(2e-3)):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        optimizer = AdamWeightDecay([{"params": params, "weight_decay": 0.01, "lr": lr}])
        for step in range(3):
            for p in params:
                p.grad = torch.sin(p.detach() * (step + 1))
            optimizer.step()
        runs.append(params)
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("task", ["STS-B", "RTE"])  # regression and classification
def test_a_graphed_ensemble_fine_tune_scores_as_the_automatic_one(tiny_backbone, data_dir, task):
    """finetune.step_graph: the batched seeds' step (per-seed clipping, layer-wise rates as device scalars) in
    manual optimisation gives the dev metrics Lightning's automatic optimisation gives."""
    from dataclasses import replace

    from lightning_electra.config import FinetuneConfig
    from lightning_electra.data.tokenizer import build_tokenizer
    from lightning_electra.finetune import finetune_task_seeds

    tokenizer = build_tokenizer(data_dir / "vocab" / "bert-base-uncased-vocab.txt")
    cfg = FinetuneConfig(max_train_examples=48, max_eval_examples=32, task_epochs={task: 2}, batch_size=8,
                         length_buckets=[32, 64], eval_batch_size=64, batched_seeds=True, lr=1e-3)
    automatic, graphed = (finetune_task_seeds(tiny_backbone, get_task(task), data_dir, replace(cfg, step_graph=on),
                                              tokenizer, [0, 1], accelerator="cpu") for on in (False, True))
    assert automatic[0] != automatic[1], "two different models"
    for a, b in zip(automatic, graphed):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], abs=1e-3), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="captures a CUDA graph: GPU only")
@pytest.mark.parametrize("variant, overrides, stage", [
    ("electra", ["train.compile=false"], 1),
    ("electra", ["train.compile=true"], 1),  # the sweeps' GPU setting: the compiled forward inside the graph
    ("adversarial", ["adversarial.mle_warmup_fraction=0.5"], 1),  # its switch flips at step 4: graphs anew
    ("bert", ["train.compile=false"], 1),  # the other runs of the first GPU sweep (training-algorithms)
    ("two-stage", ["train.compile=false"], 2),  # G frozen: parameters without gradients inside the graph
])
def test_captured_replays_match_the_same_steps_uncaptured(monkeypatch, variant, overrides, stage):
    """With a GPU: 3 warm-up steps, then replays; the same 8 steps with the body alone must end in the same weights
    (random draws included: the graph takes the generator's offsets as eager kernels do). fp32 without TF32, so
    that float tolerance is tight."""
    import lightning_electra.step_graph as step_graph

    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    captures = []
    capture = step_graph.StepGraph.capture
    monkeypatch.setattr(step_graph.StepGraph, "capture", lambda self, batch: captures.append(1) or capture(self, batch))
    torch._dynamo.reset()
    replayed = fit(variant, True, *overrides, device="cuda", steps=8, stage=stage)
    assert len(captures) == (2 if variant == "adversarial" else 1)  # one graph per setting of the switch
    monkeypatch.setattr(step_graph, "WARMUP_STEPS", 10**9)  # never captured: every step the body, uncaptured
    uncaptured = fit(variant, True, *overrides, device="cuda", steps=8, stage=stage)
    assert len(captures) == (2 if variant == "adversarial" else 1)
    untrained = build(variant, True, *overrides, stage=stage).to("cuda")
    moved = max((a - u).abs().max().item() for a, u in zip(replayed.parameters(), untrained.parameters()))
    assert moved > 1e-3
    for (name, a), b in zip(replayed.named_parameters(), uncaptured.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert replayed._step_graph is None, "the graphs went with the fit's end"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="captures CUDA graphs: GPU only")
def test_captured_ensemble_steps_score_as_uncaptured(tiny_backbone, data_dir, monkeypatch):
    """With a GPU: the batched seeds' fine-tune, one graph per bucket shape, scores as its steps run uncaptured."""
    import lightning_electra.step_graph as step_graph
    from lightning_electra.config import FinetuneConfig
    from lightning_electra.data.tokenizer import build_tokenizer
    from lightning_electra.finetune import finetune_task_seeds

    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    tokenizer = build_tokenizer(data_dir / "vocab" / "bert-base-uncased-vocab.txt")
    cfg = FinetuneConfig(max_train_examples=96, max_eval_examples=32, task_epochs={"STS-B": 3}, batch_size=8,
                         length_buckets=[32, 64], eval_batch_size=64, batched_seeds=True, step_graph=True, lr=1e-3)
    captures = []
    capture = step_graph.StepGraph.capture
    monkeypatch.setattr(step_graph.StepGraph, "capture", lambda self, batch: captures.append(1) or capture(self, batch))

    def scores():
        return finetune_task_seeds(tiny_backbone, get_task("STS-B"), data_dir, cfg, tokenizer, [0, 1],
                                   accelerator="gpu")
    replayed = scores()
    assert captures, "at least one bucket's shape was captured"
    monkeypatch.setattr(step_graph, "WARMUP_STEPS", 10**9)
    uncaptured = scores()
    for a, b in zip(replayed, uncaptured):
        for key in a:
            assert b[key] == pytest.approx(a[key], abs=1e-3), key
