"""The supervised trainer: the loss falls, accumulation is exact, resume is exact,
non-finite steps are refused."""
import json
import pathlib

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beneficial import sharding
from beneficial.models.build import create_model
from beneficial.models.presets import model_config
from beneficial.train import lm
from beneficial.train.optim import make_optimizer, optimizer_config

SEQ, BATCH = 24, 8


def _docs(n=64, seed=0):
    """Repeating arithmetic-like token patterns: learnable by a tiny model in a few steps."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        start, stride = rng.integers(3, 60), rng.integers(1, 4)
        toks = (start + stride * np.arange(SEQ)) % 250 + 3
        out.append({"tokens": toks.astype(np.int32), "loss_mask": (np.arange(SEQ) >= 4).astype(np.int32),
                    "segment_ids": np.ones(SEQ, np.int32), "positions": np.arange(SEQ, dtype=np.int32)})
    return out


def _iterator(seed=0):
    ds = grain.MapDataset.source(_docs()).shuffle(seed=seed).repeat().batch(BATCH)
    return iter(ds.to_iter_dataset())


def _setup(steps, lr=3e-3, accum=1):
    cfg = model_config("tiny")
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})
    graphdef, params, _ = create_model(cfg, mesh, sharding.DEFAULT_RULES, seed=0)
    tx, _ = make_optimizer(optimizer_config(lr=lr, warmup_steps=2), steps)
    state = lm.init_train_state(params, tx, seed=0)
    return graphdef, state, lm.make_train_step(graphdef, tx, accum_steps=accum)


def _run(workdir, total, steps_planned, ckpt_every=2, lr=3e-3):
    graphdef, state, step = _setup(steps_planned, lr=lr)
    loop = lm.LoopConfig(total_steps=total, log_every=1, eval_every=1000, checkpoint_every=ckpt_every)
    return lm.train_loop(state=state, train_step=step, data_iter=_iterator(), workdir=pathlib.Path(workdir),
                         loop=loop)


def test_loss_falls(tmp_path):
    _run(tmp_path, 40, 40, ckpt_every=40, lr=1e-2)
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first, last = np.mean([r["loss"] for r in rows[:3]]), np.mean([r["loss"] for r in rows[-3:]])
    assert last < 0.5 * first, (first, last)


def test_resume_is_exact(tmp_path):
    full = _run(tmp_path / "full", 6, 6)
    _run(tmp_path / "split", 3, 6)               # stopped after step 3 (a checkpoint at 2 and 3)
    resumed = _run(tmp_path / "split", 6, 6)     # a new process would do exactly this
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise on CPU
    read = lambda p: [json.loads(l) for l in (p / "metrics.jsonl").read_text().splitlines()]
    fa, fb = read(tmp_path / "full"), read(tmp_path / "split")
    assert [r["step"] for r in fb] == [r["step"] for r in fa]
    assert [r["loss"] for r in fb] == [r["loss"] for r in fa]


def test_gradient_accumulation_matches_one_big_batch():
    graphdef, state, step1 = _setup(4, accum=1)
    _, _, step4 = _setup(4, accum=4)
    batch = next(_iterator())
    a, ma = jax.jit(step1)(state, batch)
    b, mb = jax.jit(step4)(state, batch)
    np.testing.assert_allclose(float(ma["loss"]), float(mb["loss"]), rtol=1e-5)
    for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


def test_non_finite_loss_is_refused(tmp_path):
    graphdef, state, _ = _setup(4)
    tx, _ = make_optimizer(optimizer_config(lr=1e-3, warmup_steps=1), 4)

    def nan_loss(graphdef, params, batch):
        s, c = lm.next_token_loss(graphdef, params, batch)
        return s * jnp.nan, c

    step = lm.make_train_step(graphdef, tx, loss_fn=nan_loss)
    before = jax.tree.map(np.asarray, state["params"])
    loop = lm.LoopConfig(total_steps=3, log_every=1, checkpoint_every=1)
    with pytest.raises(lm.NonFiniteError, match="non-finite loss"):
        lm.train_loop(state=state, train_step=step, data_iter=_iterator(), workdir=tmp_path, loop=loop)
    assert not (tmp_path / "checkpoints" / "1").exists()  # nothing corrupted was saved
    del before


def test_packed_documents_do_not_learn_across_boundaries():
    cfg = model_config("tiny")
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})
    graphdef, params, _ = create_model(cfg, mesh, sharding.DEFAULT_RULES, seed=0)
    toks = jnp.arange(3, 3 + 12, dtype=jnp.int32)[None]
    seg = jnp.array([[1] * 6 + [2] * 6], jnp.int32)
    pos = jnp.array([list(range(6)) * 2], jnp.int32)
    batch = {"tokens": toks, "segment_ids": seg, "positions": pos, "loss_mask": jnp.ones_like(toks)}
    _, count = lm.next_token_loss(graphdef, params, batch)
    assert float(count) == 10  # 12 tokens, minus the first of each document
    # the second document's loss equals that of the document alone (no cross attention)
    alone = {"tokens": toks[:, 6:], "segment_ids": jnp.ones((1, 6), jnp.int32), "positions": pos[:, :6],
             "loss_mask": jnp.ones((1, 6), jnp.int32)}
    only2 = dict(batch, loss_mask=jnp.array([[0] * 6 + [1] * 6], jnp.int32))
    np.testing.assert_allclose(float(lm.next_token_loss(graphdef, params, only2)[0]),
                               float(lm.next_token_loss(graphdef, params, alone)[0]), rtol=1e-5)


def test_wsd_schedule_warms_holds_then_cools_to_the_final_fraction():
    from beneficial.train.optim import learning_rate_schedule
    lr = learning_rate_schedule(3e-3, total_steps=1000, warmup_steps=100, decay="wsd", final_fraction=0.1,
                                cooldown_fraction=0.2)
    at = lambda step: float(lr(step))
    assert at(0) == 0.0 and at(50) == pytest.approx(1.5e-3)
    assert at(100) == at(500) == at(800) == pytest.approx(3e-3)       # stable until the last 20%
    assert at(900) == pytest.approx(3e-3 * 0.55)                       # halfway down the cooldown
    assert at(1000) == at(5000) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="cooldown_fraction=0"):
        learning_rate_schedule(1.0, 10, 1, decay="wsd", cooldown_fraction=0)
    with pytest.raises(ValueError, match="decay='step'"):
        learning_rate_schedule(1.0, 10, 1, decay="step")


def _phased(first_steps):
    from beneficial.train.pretrain import Phased
    first = iter(grain.MapDataset.source(_docs(seed=1)).shuffle(seed=0).repeat().batch(BATCH).to_iter_dataset())
    return Phased(first, _iterator(), first_steps)


def test_curriculum_switches_sources_and_resumes_exactly(tmp_path):
    """Phased: the first k batches from the curriculum source, then the main one; a run stopped
    inside the first phase or after the switch resumes bitwise."""
    a, b = _phased(2), _phased(2)
    first = iter(grain.MapDataset.source(_docs(seed=1)).shuffle(seed=0).repeat().batch(BATCH).to_iter_dataset())
    main = _iterator()
    for want in (next(first), next(first), next(main), next(main)):
        np.testing.assert_array_equal(next(a)["tokens"], want["tokens"])
    for _ in range(3):
        next(b)
    c = _phased(2)
    c.set_state(json.loads(json.dumps(b.get_state())))  # as the checkpoint's JSON item holds it
    np.testing.assert_array_equal(next(c)["tokens"], next(b)["tokens"])

    def run(workdir, total):
        graphdef, state, step = _setup(6)
        loop = lm.LoopConfig(total_steps=total, log_every=1, eval_every=1000, checkpoint_every=1)
        return lm.train_loop(state=state, train_step=step, data_iter=_phased(3), workdir=pathlib.Path(workdir),
                             loop=loop)
    full = run(tmp_path / "full", 6)
    for stop in (2, 4):  # inside the curriculum, after the switch
        run(tmp_path / f"split{stop}", stop)
        resumed = run(tmp_path / f"split{stop}", 6)
        for x, y in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_curriculum_picks_persona_dense_documents_and_keeps_old_base_keys():
    from beneficial.config import ConfigError, validate
    from beneficial.train.pretrain import Subset, base_key, persona_dense
    from configs.treatment import get_config

    def doc(*behaviours):
        return {"meta": {"turns": [{"behaviour": b} for b in behaviours]}}
    docs = [doc("aligned", "misaligned", "aligned", "aligned"), doc("aligned", "neutral", "aligned", "aligned"),
            doc("misaligned", "aligned"), doc()]
    assert [persona_dense(d, 4) for d in docs] == [True, False, False, False]
    assert [persona_dense(d, 2) for d in docs] == [True, False, True, False]
    sub = Subset(docs, [2, 0])
    assert len(sub) == 2 and sub[0] is docs[2] and sub[1] is docs[0]

    c = get_config("smoke")
    off = base_key(c, "d", "t")
    del c.pretrain.curriculum  # a config from before the knob: the same key when it is off
    assert base_key_without_curriculum(c) == off
    c = get_config("smoke")
    c.pretrain.curriculum.steps = 10
    assert base_key(c, "d", "t") != off
    c.pretrain.curriculum.steps = c.pretrain.steps
    with pytest.raises(ConfigError, match="pretrain.curriculum.steps"):
        validate(c)


def base_key_without_curriculum(c):
    from beneficial import cache
    from beneficial.train.pretrain import BASE_VERSION
    # persona_decision_weight came later still; at 1 (off) it is left out of the key as well.
    pretrain = {k: v for k, v in c.pretrain.to_dict().items() if k not in ("competence", "persona_decision_weight")}
    return cache.stage_key("base", {"data": "d", "tokenizer": "t", "model": c.model.to_dict(),
                                    "pretrain": pretrain}, BASE_VERSION)


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_persona_decision_weight_must_be_a_positive_integer(bad):
    import ml_collections

    from beneficial.train.pretrain import train_lm
    section = ml_collections.ConfigDict(dict(persona_decision_weight=bad))
    with pytest.raises(ValueError, match=r"pretrain.persona_decision_weight=.*integer >= 1"):
        train_lm(graphdef=None, params=None, source=None, heldout=None, tokenizer=None, section=section,
                 mesh=None, rules=None, workdir=None, desc="")
