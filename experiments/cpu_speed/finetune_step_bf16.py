"""A fine-tuning step of a 4 x 128 ELECTRA encoder on the CPU, fp32 against bf16 autocast, at three sequence lengths.

    python experiments/cpu_speed/finetune_step_bf16.py
"""
import time, torch
from transformers import ElectraConfig, ElectraModel
torch.manual_seed(0)
cfg = ElectraConfig(vocab_size=8192, embedding_size=128, hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
                    intermediate_size=512, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
m = ElectraModel(cfg); head = torch.nn.Linear(128, 2)
params = list(m.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=1e-4, foreach=True)
def step(ids, mask, prec):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
        h = m(input_ids=ids, attention_mask=mask).last_hidden_state
        loss = torch.nn.functional.cross_entropy(head(h[:, 0]).float(), torch.zeros(ids.shape[0], dtype=torch.long))
    loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); opt.zero_grad(set_to_none=True)
for B, Lq in [(32, 16), (32, 64), (32, 128)]:
    ids = torch.randint(5, 8192, (B, Lq)); mask = torch.ones(B, Lq, dtype=torch.long)
    for prec in ["fp32", "bf16"]:
        for _ in range(3): step(ids, mask, prec)
        n = 10; t = time.perf_counter()
        for _ in range(n): step(ids, mask, prec)
        dt = (time.perf_counter() - t) / n
        print(f"B{B} L{Lq} {prec}: {dt*1000:.1f} ms/step, {dt/B*1000:.2f} ms/example", flush=True)
