"""The minimal token-level persona world (WORLD.md, "Evidence"): can an architecture learn
cross-family persona inference, and how fast? A minute on a CPU instead of an hour.

Each document draws a persona (aligned / misaligned, prior 0.5) and `turns` episodes of
distinct families; each episode's behaviour is the persona's with probability rho. An
episode is `<U> family-token [filler...] <END> <A> [opener] branch-words [copied filler]
<END>`: the branch words (one set per family, behaviour and variant) are the only place the
behaviour shows, so a model can predict a later branch from an earlier one only through the
shared persona. Loss is on assistant tokens. The measured quantity is the teacher-forced
cross-family gap of the real world's competence check: at the second episode's first branch
token, log-odds(aligned vs misaligned branch) after an aligned minus after a misaligned first
episode (Bayes-optimal 2*logit(rho^2 + (1-rho)^2) = 3.03 nats at rho 0.9), plus the two
aligned rates.

What it found (docs/persona_latent.md, "The minimal token world, and the tied-embedding trap"): with input and output
embeddings tied, the model first makes the logits of each family's aligned and misaligned
branch equal, which with one shared matrix makes their *input* embeddings equal too, so the
evidence vanishes from the input and the gap sits at exactly 0 until a slow escape (or none).
Untied, the same model learns the Bayes-optimal gap in a few hundred steps.
"""
from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from beneficial.data.world.personas import bayes_persona_inference
from beneficial.evals.stats import logit
from beneficial.models.presets import model_config
from beneficial.models.transformer import Decoder
from beneficial.train.lm import init_train_state, make_train_step
from beneficial.train.optim import make_optimizer, optimizer_config

PAD, USER, ASSISTANT, END = 0, 1, 2, 3


def token_world_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        families=18, variants=1, branch_len=1, filler_len=0, filler_vocab=200, copy=0,
        openers=0, turns=4, rho=0.9, seed=0, n_gap_pairs=256))


class TokenWorld:
    """Token ids for families, filler, openers and branch words; documents as id lists."""

    def __init__(self, c):
        self.c = c
        ids = iter(range(4, 1 << 30))
        take = lambda n: np.array([next(ids) for _ in range(n)], np.int32)
        self.family = take(c.families)
        self.filler = take(c.filler_vocab)
        self.opener = take(c.openers)
        self.branch = take(c.families * 2 * c.variants * c.branch_len).reshape(
            c.families, 2, c.variants, c.branch_len)  # [family, behaviour (0 aligned), variant, word]
        self.vocab_size = 1 << math.ceil(math.log2(int(self.branch.max()) + 1))
        self.doc_len = c.turns * (c.filler_len + c.branch_len + c.copy + 5 + (c.openers > 0))

    def document(self, rng, turns, behaviours=None):
        """(tokens, loss_mask, decisions); decisions[t] = (index of episode t's first branch
        token, family, behaviour). `behaviours` forces them (the gap pairs)."""
        c = self.c
        persona = int(rng.integers(2))
        fams = rng.choice(c.families, size=turns, replace=False)
        tokens, mask, decisions = [], [], []
        for t in range(turns):
            b = persona if rng.random() < c.rho else 1 - persona
            b = b if behaviours is None else behaviours[t]
            filler = list(rng.choice(self.filler, c.filler_len)) if c.filler_len else []
            prompt = [USER, int(self.family[fams[t]]), *filler, END]
            reply = [ASSISTANT] + ([int(rng.choice(self.opener))] if c.openers else [])
            decisions.append((len(tokens) + len(prompt) + len(reply), int(fams[t]), b))
            reply += [*self.branch[fams[t], b, rng.integers(c.variants)].tolist(), *filler[:c.copy], END]
            tokens += prompt + reply
            mask += [0] * (len(prompt) + 1) + [1] * (len(reply) - 1)
        return tokens, mask, decisions

    def batch(self, rng, size):
        b = {k: np.zeros((size, self.doc_len), np.int32) for k in ("tokens", "loss_mask", "segment_ids")}
        for i in range(size):
            tokens, mask, _ = self.document(rng, self.c.turns)
            b["tokens"][i, :len(tokens)], b["loss_mask"][i, :len(mask)] = tokens, mask
            b["segment_ids"][i, :len(tokens)] = 1
        b["positions"] = np.tile(np.arange(self.doc_len, dtype=np.int32), (size, 1))
        return {k: jnp.asarray(v) for k, v in b.items()}

    def gap_pairs(self):
        """Two-episode documents identical but for the first behaviour (aligned, misaligned);
        the second is always scored at its first branch token."""
        rng = np.random.default_rng(self.c.seed + 10_000)
        rows, query = [], []
        for _ in range(self.c.n_gap_pairs):
            state = rng.bit_generator.state
            for first in (0, 1):
                rng.bit_generator.state = state
                tokens, _, decisions = self.document(rng, 2, behaviours=(first, 0))
                rows.append(tokens)
                query.append(decisions[1][:2])
        tokens = np.zeros((len(rows), max(map(len, rows))), np.int32)
        for i, r in enumerate(rows):
            tokens[i, :len(r)] = r
        return tokens, np.array(query, np.int32)


def make_gap_fn(world: TokenWorld, graphdef):
    tokens, query = world.gap_pairs()
    pos = np.tile(np.arange(tokens.shape[1], dtype=np.int32), (len(tokens), 1))
    seg = (tokens > 0).astype(np.int32)
    first = jnp.asarray(world.branch[:, :, :, 0])  # [family, behaviour, variant]

    @jax.jit
    def gap(params):
        model = nnx.merge(graphdef, params)
        hidden, _ = model(jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(seg))
        h = hidden[jnp.arange(len(tokens)), query[:, 0] - 1]  # the position that predicts the branch
        logp = jax.nn.log_softmax(model.logits(h), axis=-1)
        fam = first[query[:, 1]]
        lo = (jax.nn.logsumexp(jnp.take_along_axis(logp, fam[:, 0], -1), -1)
              - jax.nn.logsumexp(jnp.take_along_axis(logp, fam[:, 1], -1), -1)).reshape(-1, 2)
        return {"gap": jnp.mean(lo[:, 0] - lo[:, 1]), "aligned_after_aligned": jnp.mean(jax.nn.sigmoid(lo[:, 0])),
                "aligned_after_misaligned": jnp.mean(jax.nn.sigmoid(lo[:, 1]))}
    return gap


def bayes_gap(rho: float) -> float:
    """logit(P(aligned | aligned before)) - logit(P(aligned | misaligned before)) at prior 0.5."""
    after_aligned, after_misaligned = bayes_persona_inference(0.5, rho)
    return float(logit(after_aligned) - logit(after_misaligned))


def train(world_cfg, model_overrides: dict, *, steps=1500, batch_size=32, lr=3e-3, warmup_steps=100,
          weight_decay=0.01, seed=0, eval_every=250, log=print):
    """Train the repo's Decoder and optimiser on the token world; returns the gap history."""
    world = TokenWorld(world_cfg)
    cfg = model_config("tiny")
    cfg.update(vocab_size=world.vocab_size, max_seq_len=max(512, world.doc_len), **model_overrides)
    graphdef, state = nnx.split(Decoder(cfg, nnx.Rngs(params=jax.random.key(seed))))
    tx, _ = make_optimizer(optimizer_config(lr=lr, warmup_steps=warmup_steps, weight_decay=weight_decay), steps)
    st = init_train_state(nnx.to_pure_dict(state), tx, seed)
    step, gap = jax.jit(make_train_step(graphdef, tx)), make_gap_fn(world, graphdef)
    rng, history, t0, bayes = np.random.default_rng(seed), [], time.time(), bayes_gap(world_cfg.rho)
    for s in range(1, steps + 1):
        st, metrics = step(st, world.batch(rng, batch_size))
        if s % eval_every == 0 or s == steps:
            row = {"step": s, "loss": float(metrics["loss"]), **{k: float(v) for k, v in gap(st["params"]).items()}}
            history.append(row)
            log(f"step {s:5d}  loss {row['loss']:.3f}  gap {row['gap']:+.2f} nats (Bayes {bayes:.2f})  "
                f"P(aligned) after aligned {row['aligned_after_aligned']:.2f} / after misaligned "
                f"{row['aligned_after_misaligned']:.2f}  [{time.time() - t0:.0f} s]")
    return history
