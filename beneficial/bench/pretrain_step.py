"""Time the persona world's base-model training step, model variants side by side.

The default CPU base (configs/common.py): the `small` preset at pretrain.batch_size x
pretrain.seq_len, AdamW, one jitted step. Batches are random tokens packed into documents
of the world's typical lengths (uniform 100-400 tokens, positions restarting per document),
so attention masks look like real packed batches. Every variant (a set of model-field
overrides, e.g. attn_query_blocks) is compiled from the same initial parameters and timed
alternately in one process, so machine drift hits all of them; the first step's loss of each
is reported too (variants must agree: they are speed knobs, not model changes).
"""
from __future__ import annotations

import numpy as np

from beneficial import sharding
from beneficial.bench.timing import block, median, now


def packed_batch(batch: int, seq_len: int, vocab: int, seed: int = 0, min_len: int = 100,
                 max_len: int = 400) -> dict:
    """tokens, positions, segment_ids, loss_mask [batch, seq_len] int32 numpy arrays."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, vocab, size=(batch, seq_len), dtype=np.int32)
    seg = np.zeros((batch, seq_len), np.int32)
    pos = np.zeros((batch, seq_len), np.int32)
    for row in range(batch):
        start, doc = 0, 1
        while start < seq_len:
            n = min(int(rng.integers(min_len, max_len + 1)), seq_len - start)
            seg[row, start:start + n], pos[row, start:start + n] = doc, np.arange(n)
            start, doc = start + n, doc + 1
    return dict(tokens=tokens, positions=pos, segment_ids=seg, loss_mask=np.ones_like(tokens))


def time_variants(config, variants: dict[str, dict], steps: int = 5, warmup: int = 1) -> dict:
    """{name: {'median_s', 'times_s', 'tokens_per_s', 'first_loss'}} for each model-override dict."""
    import jax

    from beneficial.models.build import create_model
    from beneficial.models.presets import model_config
    from beneficial.train.lm import init_train_state, make_train_step
    from beneficial.train.optim import make_optimizer

    p = config.pretrain
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})
    batch = packed_batch(p.batch_size, p.seq_len, config.model.vocab_size)
    built = {}
    for name, overrides in variants.items():
        fields = {k: v for k, v in config.model.to_dict().items() if k != "preset"}
        cfg = model_config(config.model.preset, **{**fields, **overrides})
        graphdef, params, _ = create_model(cfg, mesh, sharding.DEFAULT_RULES, p.seed)
        tx, _ = make_optimizer(p.optimizer, p.steps)
        step = jax.jit(make_train_step(graphdef, tx), donate_argnums=0)
        built[name] = [step, init_train_state(params, tx, p.seed)]
    out = {name: {"times_s": []} for name in variants}
    for i in range(warmup + steps):
        for name, (step, state) in built.items():
            t0 = now()
            state, metrics = block(step(state, batch))
            built[name][1] = state
            if i == 0:
                out[name]["first_loss"] = float(metrics["loss"])
            if i >= warmup:
                out[name]["times_s"].append(now() - t0)
    tokens = p.batch_size * p.seq_len
    for r in out.values():
        r["median_s"] = median(r["times_s"])
        r["tokens_per_s"] = tokens / r["median_s"]
    return out
