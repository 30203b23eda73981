"""The official update as foreach ops against torch's fused AdamW kernel with bias corrections pinned at 1, on ELECTRA-
Small-like weight shapes (about 2M weights): the largest difference after 20 steps and ms per update.

    python experiments/cpu_speed/fused_update.py
"""
import torch, time
from lightning_electra.optim import AdamWeightDecay
torch.manual_seed(0)
shapes = [(8192,128),(512,128),(2,128)] + [(128,128)]*16 + [(512,128),(128,512)]*4 + [(128,)]*40
def run(kind, steps=20):
    torch.manual_seed(0)
    ps = [torch.randn(s, requires_grad=True) for s in shapes]
    if kind == "foreach":
        opt = AdamWeightDecay([{"params": ps, "weight_decay": 0.01, "lr": torch.tensor(1e-3)}])  # a tensor lr: foreach
    ms = [torch.zeros_like(p) for p in ps]; vs = [torch.zeros_like(p) for p in ps]
    big = torch.tensor(1e6)
    steps_t = [big for p in ps]
    t0 = None
    for p in ps: p.grad = torch.randn_like(p) * 0.01
    for i in range(steps):
        if i == 5: t0 = time.perf_counter()
        if kind == "foreach": opt.update()
        else:
            with torch.no_grad():
                torch._fused_adamw_(ps, [p.grad for p in ps], ms, vs, [], steps_t, lr=1e-3, beta1=0.9, beta2=0.999,
                                    weight_decay=0.01, eps=1e-6, amsgrad=False, maximize=False)
    return ps, (time.perf_counter() - t0) / (steps - 5)
a, ta = run("foreach"); b, tb = run("fused")
print("max diff", max((x - y).abs().max().item() for x, y in zip(a, b)), "foreach ms", ta*1e3, "fused ms", tb*1e3)
