"""AMOS (Meng et al., ICLR 2022; notes section 4): an adversarial mixture of generators of different depths.

One generator transformer has MLM exits after several layers (4, 6, 8 of 12 by default), all through one shared MLM
head. The hidden state passed from one block of layers to the next is detached, so each exit learns as its own MLM of
its depth: shallow exits make easy replacements, deep ones hard ones. At each masked position a learned vector scores
the exits from their (detached) hidden states, and the token is sampled from the exits' (detached) logits mixed by
those scores, by a hard Gumbel-softmax over the vocabulary. D reads the sample as a straight-through one-hot times its
embedding matrix, behind a gradient-reversal layer, so D's loss trains the mixture to *raise* D's loss while the exits
learn only by MLM.

Two learned mixtures (`amos.mixture`), each with the control that differs from it in the learning alone:
* `soft` (the official code, microsoft/AMOS, which made the paper's numbers; the default and the amos sweep's
  reference run): the exits' logits weighted by the softmax of the scores; control `equal`, the same mix with equal
  weights.
* `hard` (the notes' description): a hard Gumbel-softmax over the scores picks one exit per position; control
  `random`, an exit drawn uniformly.
Further ablations: `switch` (exits in turn, shallow to deep, over training), `single` (one exit), and
`amos.stop_gradient=false` (gradients through all blocks).

Where we differ from the official code besides (docs/protocol.md lists them):
* its scorer reads the exits' states undetached, so D's reversed gradient reaches the generator; here the exits learn
  by MLM alone, as the notes ask;
* G's width is `model.generator_fraction` of D's as in ELECTRA (official: D's width; model.generator_fraction=1.0);
  its depth is the deepest exit;
* the official generator has no dropout at all (`generator_sample_mode=zero-dropout`, its default: every dropout
  of G set to 0, in the forward that trains its MLM and samples); here G's dropout is `model.dropout` (0 at the cpu
  scale, so the same there);
* in that mode the official G and D share the token embeddings only (positions and the embedding LayerNorm are G's
  own); here `model.tie` decides, and its default, embeddings, shares the token, position and type tables and the
  embedding LayerNorm, as ELECTRA's sharing does;
* the official D's head is one linear layer to a logit per token (`BinaryHead`); here it is ELECTRA's, dense + GELU
  + dense, so that AMOS and ELECTRA differ in the generator alone;
* the official model uses relative position buckets (`rel_pos`); here the absolute positions of transformers' ELECTRA.

(microsoft/AMOS, fairseq/fairseq/models/amos/model.py, read for this list.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from lightning_electra.config import POSITIVE, ConfigError, choice, ranged
from lightning_electra.corruption import gumbel_noise, replace_at, sample_tokens
from lightning_electra.models import build_discriminator
from lightning_electra.objectives.electra import Electra
from lightning_electra.objectives.generator import Generator
from lightning_electra.objectives.losses import discriminator_metrics, mlm_metrics, sampled_accuracy, vocab_logits

Mixture = choice("Mixture", ["hard", "soft", "random", "equal", "switch", "single"], __name__)
LEARNED = ("hard", "soft")  # the mixtures with weights to learn (their controls: random and equal)
PAPER_EXITS, PAPER_DEPTH = (4, 6, 8), 12


@dataclass
class Options:
    # G layers after which an MLM exit reads (1-based). null: 4, 6 and 8 of a 12-layer G, scaled to D's depth.
    exits: Optional[list[int]] = None
    # Two learned mixtures, each with its control: soft (the official code's, which made the paper's numbers: the
    # exits' logits mixed by softmax weights, then one token sampled; control: equal, the same mix with equal weights)
    # and hard (the notes' description: a hard Gumbel-softmax picks one exit per position; control: random, an exit
    # drawn uniformly). Also switch (exits in turn, shallow to deep, over training) and single (one exit only:
    # `single_exit`).
    mixture: Mixture = Mixture("soft")
    single_exit: int = -1  # mixture=single: which of `exits` (an index; -1 the deepest)
    temperature: float = ranged(0.3, POSITIVE)  # of the hard Gumbel-softmax picking the exit and sampling the token
    stop_gradient: bool = True  # each block between exits learns only from its own exit (false: through all)


def amos_exits(cfg) -> list[int]:
    """The G layers that feed an exit: `amos.exits`, or 4, 6, 8 of 12 scaled to D's depth; one for `single`."""
    a, depth = cfg.amos, cfg.model.num_layers
    exits = list(a.exits) if a.exits is not None else [max(1, round(e * depth / PAPER_DEPTH)) for e in PAPER_EXITS]
    if a.exits is None and len(set(exits)) < len(exits):
        raise ConfigError(f"AMOS's default exits (layers 4, 6, 8 of 12) scaled to {depth} layers collide ({exits}); "
                          f"set amos.exits explicitly, e.g. amos.exits=[{','.join(map(str, range(1, depth + 1)))}].")
    if exits != sorted(set(exits)) or not all(1 <= e <= depth for e in exits):
        raise ConfigError(f"amos.exits={exits} must be increasing layer numbers between 1 and model.num_layers={depth}.")
    if a.mixture == "single":
        if not -len(exits) <= a.single_exit < len(exits):
            raise ConfigError(f"amos.single_exit={a.single_exit} is not an index into amos.exits={exits}.")
        return [exits[a.single_exit]]
    if len(exits) < 2:
        raise ConfigError(f"amos.mixture={a.mixture} mixes several exits; amos.exits={exits} has one. Add exits or "
                          "use amos.mixture=single.")
    return exits


def layer_attention_mask(model, hidden: torch.Tensor, attention_mask: torch.Tensor):
    """The mask transformers' encoder layers take, as ElectraModel.forward builds it (4.x: the extended additive
    mask; 5.x: whatever its attention implementation wants)."""
    try:
        from transformers.masking_utils import create_bidirectional_mask
    except ImportError:
        return model.get_extended_attention_mask(attention_mask, attention_mask.shape)
    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=attention_mask)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def reverse_gradient(x: torch.Tensor) -> torch.Tensor:
    """Identity forward; the gradient's sign flipped backward (the gradient-reversal layer)."""
    return _ReverseGradient.apply(x)


def switch_exit(step: int, steps: int, k: int) -> int:
    """The layer-switch ablation's exit at `step`: equal shares of training, shallow to deep."""
    return min(k - 1, k * step // steps)


def hard_gumbel_softmax(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """`F.gumbel_softmax(hard=True)`: a one-hot sample of softmax(logits) forward, the gradient of the tempered soft
    sample backward; with `sample_tokens`' noise (F.gumbel_softmax's is ~10x slower on a CPU)."""
    soft = ((logits.float() + gumbel_noise(logits.shape, logits.device)) / tau).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def one_hot_choice(index: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(index, k).float()


class Amos(Electra):
    Options = Options

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.model.generator != "learned":
            raise ConfigError("AMOS's exits are layers of a network generator: set model.generator=learned.")
        if cfg.model.tie == "all":
            raise ConfigError("AMOS's generator is shallower than D, so it cannot share all weights: set "
                              "model.tie=embeddings (the official choice) or none.")
        if cfg.train.temperature != 1.0:
            raise ConfigError("AMOS samples at the exits' own temperature (amos.temperature shapes only the "
                              f"straight-through gradient); train.temperature={cfg.train.temperature} would be ignored.")
        amos_exits(cfg)

    def build(self) -> None:
        m, vocab = self.cfg.model, self.special.vocab_size
        self.exits = amos_exits(self.cfg)
        self.discriminator = build_discriminator(m, vocab)
        self.generator = Generator(self.cfg, self.special, shares_with=self.discriminator, layers=self.exits[-1])
        g = self.generator.mlm
        # the learned vector scoring each exit at each masked position from that exit's hidden state; only built
        # when used (DDP refuses parameters without gradients), initialised as transformers' weights (near-uniform)
        self.mixture = None
        if self.cfg.amos.mixture in LEARNED:
            self.mixture = torch.nn.Linear(g.config.hidden_size, 1, bias=False)
            torch.nn.init.normal_(self.mixture.weight, std=g.config.initializer_range)
        self.exit_weights: list[list[float]] = []  # [step, weight of each exit] at log steps, for reports

    def phase(self, step: int) -> int | None:
        """mixture=switch: the exit in use at step `step` (the others: none)."""
        return switch_exit(step - 1, self.steps, len(self.exits)) if self.cfg.amos.mixture == "switch" else None

    # --- the generator's exits -------------------------------------------------------------------------------
    def exit_states(self, input_ids, batch, positions) -> list[torch.Tensor]:
        """Hidden states after each exit's layer at the masked slots, (B, P, H) each; blocks detached between."""
        g = self.generator.mlm.electra
        hidden = g.embeddings(input_ids=input_ids, token_type_ids=batch["token_type_ids"])
        if hasattr(g, "embeddings_project"):
            hidden = g.embeddings_project(hidden)
        mask = layer_attention_mask(g, hidden, batch["attention_mask"])
        states = []
        for depth, layer in enumerate(g.encoder.layer[:self.exits[-1]], 1):
            hidden = layer(hidden, mask)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # transformers 4.x layers return tuples
            if depth in self.exits:
                states.append(hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1])))
                if self.cfg.amos.stop_gradient:
                    hidden = hidden.detach()
        return states

    def choose_exits(self, states: list[torch.Tensor], weights: torch.Tensor,
                     exit_in_use: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(coefficients, mixture weights), both (B, P, K): how much of each exit's logits the sample is drawn from
        (a one-hot exit, straight-through when learned; `exit_in_use` for mixture=switch; or soft weights), and the
        weights the choice came from."""
        k, (b, p) = len(self.exits), weights.shape
        mode = self.cfg.amos.mixture
        if mode in LEARNED:
            scores = self.mixture(torch.stack(states, 2).detach()).squeeze(-1).float()  # exits feel no mixture
            mixture = scores.softmax(-1)
            return (hard_gumbel_softmax(scores, self.cfg.amos.temperature) if mode == "hard" else mixture), mixture
        uniform = torch.full((b, p, k), 1 / k, device=weights.device)
        if mode == "random":
            return one_hot_choice(torch.randint(k, (b, p), device=weights.device), k), uniform
        if mode == "switch":
            index = torch.full((b, p), exit_in_use, device=weights.device, dtype=torch.long)
            return one_hot_choice(index, k), one_hot_choice(index, k)
        return uniform, uniform  # equal (the soft mixture's control) and single (k = 1)

    def objective(self, batch, masked, exit_in_use: int = 0):
        w = masked.weights
        states = self.exit_states(masked.input_ids, batch, masked.positions)
        head = self.generator.mlm
        exit_logits = [vocab_logits(head, s) for s in states]  # one shared head
        metrics, mlm_loss = {}, 0
        for depth, logits in zip(self.exits, exit_logits):
            exit_metrics = mlm_metrics(logits, masked)
            mlm_loss = mlm_loss + exit_metrics["mlm_loss"]  # each exit its own MLM, weight 1 as in ELECTRA
            metrics.update({f"{k}_exit{depth}": v for k, v in exit_metrics.items()})
        metrics["mlm_loss"] = mlm_loss

        mix, mixture_weights = self.choose_exits(states, w, exit_in_use)
        # the mixed exits' logits, differentiable in the mixture only: exits learn by MLM alone (a sum over exits,
        # not a (B, P, K, V) stack: the vocabulary dimension dominates memory)
        logits = sum(mix[..., i, None] * exit.detach().float() for i, exit in enumerate(exit_logits))
        if self.mixture is not None:  # the straight-through one-hot sample (B, P, V) that carries D's gradient
            sample = hard_gumbel_softmax(logits, self.cfg.amos.temperature)
            sampled = sample.argmax(-1)
        else:  # no gradient to carry: sample the ids alone
            sample, sampled = None, sample_tokens(logits)
        corrupted = replace_at(batch["input_ids"], masked.positions, sampled, w)
        replaced = corrupted != batch["input_ids"]
        d_logits = self.discriminate_sample(batch, corrupted, masked, sample)
        metrics.update(discriminator_metrics(d_logits, replaced, batch["attention_mask"].bool()))
        metrics["sampled_accuracy"] = sampled_accuracy(sampled, masked)
        n = w.sum().clamp_min(1)
        for i, depth in enumerate(self.exits):
            metrics[f"exit{depth}_weight"] = (mixture_weights[..., i] * w).sum().detach() / n
            metrics[f"exit{depth}_share"] = (mix[..., i].detach() * w).sum() / n  # how much it was used
        metrics["loss"] = mlm_loss + self.cfg.train.disc_weight * metrics["disc_loss"]
        return metrics

    def discriminate_sample(self, batch, corrupted, masked, sample):
        """D's logits on the corrupted input. With a learned mixture the sampled slots' embeddings carry the
        straight-through path: E[token] forward, and backward D's gradient, reversed, into the one-hot sample."""
        if sample is None:
            return self.discriminate(batch, corrupted)
        d = self.discriminator.electra
        table = d.embeddings.word_embeddings.weight
        # zero forward (so the input is exactly the looked-up embedding), identity-then-reversed gradient backward
        straight_through = reverse_gradient(sample - sample.detach()) @ table.to(sample.dtype)  # (B, P, E)
        embeds = d.embeddings.word_embeddings(corrupted)
        index = masked.positions[..., None].expand(-1, -1, embeds.shape[-1])
        embeds = embeds.scatter_add(1, index, (straight_through * masked.weights[..., None]).to(embeds.dtype))
        hidden = d(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                   token_type_ids=batch["token_type_ids"]).last_hidden_state
        return self.discriminator.discriminator_predictions(hidden)

    def record(self, metrics, step: int) -> None:
        logged = self.exit_weights and self.exit_weights[-1][0] == step  # accumulation: a step's later micro-batches
        if self.is_log_step(step) and not logged:  # a host sync at log steps only
            self.exit_weights.append([step] + [metrics[f"exit{d}_weight"].item() for d in self.exits])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["exit_weights"] = self.exit_weights

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.exit_weights = checkpoint.get("exit_weights", [])

    def summary(self, points: int = 200) -> dict:
        """For pretrain.json (and so the report): the mixture weights of each exit along training, at most
        `points` rows evenly spread (a base-scale run logs tens of thousands), the last one always kept."""
        every = max(1, -(-len(self.exit_weights) // points))
        rows = self.exit_weights[::every]
        if self.exit_weights and rows[-1] is not self.exit_weights[-1]:
            rows.append(self.exit_weights[-1])
        return {"exits": self.exits, "exit_weights": rows}

    def generator_flops_per_step(self) -> float:
        """G up to its deepest exit with one MLM output per exit. The straight-through one-hot times D's embedding
        table adds nothing: the paper's convention already counts every lookup as that dense product."""
        shape = self.shape(Generator.shape(self.cfg, self.exits[-1]))
        batch = self.cfg.train.batch_size
        return (Generator.train_flops(self.cfg, self.special.vocab_size, self.exits[-1])
                + 2 * batch * (len(self.exits) - 1) * shape.embedding_flops(output=True))
