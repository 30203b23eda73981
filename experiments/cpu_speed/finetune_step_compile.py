"""A fine-tuning step of a 4 x 128 ELECTRA encoder (the cpu scale's D, dropout off) on the CPU at three bucket widths,
eager or through torch.compile (inductor): ms a step and the warm-up each shape costs.

    python experiments/cpu_speed/finetune_step_compile.py eager
    python experiments/cpu_speed/finetune_step_compile.py compile
"""
import time, sys, torch
from transformers import ElectraConfig, ElectraModel
from lightning_electra.optim import AdamWeightDecay
torch.manual_seed(0)
cfg = ElectraConfig(vocab_size=8192, embedding_size=128, hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
                    intermediate_size=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
m = ElectraModel(cfg); head = torch.nn.Linear(128, 2)
params = list(m.parameters()) + list(head.parameters())
opt = AdamWeightDecay([{"params": params, "weight_decay": 0.0}], lr=1e-4)
def loss_fn(ids, mask, labels):
    h = m(input_ids=ids, attention_mask=mask).last_hidden_state
    return torch.nn.functional.cross_entropy(head(h[:, 0]).float(), labels)
mode = sys.argv[1]
fn = torch.compile(loss_fn, dynamic=False) if mode == "compile" else loss_fn
t0 = time.perf_counter()
for B, Lq in [(32, 16), (32, 64), (32, 128)]:
    ids = torch.randint(5, 8192, (B, Lq)); mask = torch.ones(B, Lq, dtype=torch.long); mask[:, -3:] = 0
    labels = torch.zeros(B, dtype=torch.long)
    def step():
        fn(ids, mask, labels).backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); opt.zero_grad(set_to_none=True)
    t = time.perf_counter()
    for _ in range(2): step()
    warm = time.perf_counter() - t
    n = 10; t = time.perf_counter()
    for _ in range(n): step()
    dt = (time.perf_counter() - t) / n
    print(f"{mode} B{B} L{Lq}: {dt*1000:.1f} ms/step (warm-up {warm:.1f}s)", flush=True)
