"""The decoder and its sampler: cached decoding == full forward, padding invariance,
sharded == unsharded, real-size parameter counts, compile once."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from beneficial import sharding
from beneficial.models.build import abstract_model, create_model
from beneficial.models.presets import PUBLISHED_PARAMS, model_config
from beneficial.models.sampler import SamplingConfig, filter_logits, make_generate
from beneficial.models.transformer import NEG_INF, positions_from_mask, softmax_attend

PAD, EOS = 0, 2
VARIANTS = {
    "llama": dict(),
    "qwen2": dict(qkv_bias=True, tie_embeddings=False, n_kv_heads=1),
    "gemma2": dict(act="gelu_tanh", norm_plus_one=True, embed_scale=True, post_norms=True,
                   query_pre_attn_scalar=24, attn_softcap=50.0, final_softcap=30.0,
                   sliding_window=5, sliding_every=2),
    "llama3_scaled": dict(rope_theta=500000.0, rope_scaling=dict(
        type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16)),
}


def _single_mesh():
    return sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})


def _model(variant, seed=0, head="lm"):
    cfg = model_config("tiny", **VARIANTS[variant])
    return cfg, *create_model(cfg, _single_mesh(), sharding.DEFAULT_RULES, seed, head=head)[:2]


def _full_logits(graphdef, state, tokens, mask):
    model = nnx.merge(graphdef, state)
    hidden, _ = model(tokens, positions_from_mask(mask), mask)
    return model.logits(hidden)


def _prompts():
    # Row 0 and 2 left-padded, row 1 unpadded: one batch mixes both.
    return jnp.array([[PAD, PAD, PAD, 7, 8, 9, 10, 11],
                      [12, 13, 14, 15, 16, 17, 18, 19],
                      [PAD, 20, 21, 22, 23, 24, 25, 26]], jnp.int32)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cached_decoding_equals_full_forward(variant):
    cfg, graphdef, state = _model(variant)
    prompt = _prompts()
    sc = SamplingConfig(max_new_tokens=10, eos_id=EOS, pad_id=PAD, temperature=1.0)
    out = make_generate(graphdef, sc, return_logits=True)(state, prompt, jax.random.key(1))
    tokens = jnp.concatenate([prompt, out["tokens"]], axis=1)
    mask = jnp.concatenate([(prompt != PAD).astype(jnp.int32), out["mask"]], axis=1)
    full = _full_logits(graphdef, state, tokens, mask)[:, prompt.shape[1] - 1:-1]
    gen_mask = np.asarray(out["mask"], bool)
    assert gen_mask.sum() > 10
    np.testing.assert_allclose(np.asarray(out["logits"])[gen_mask], np.asarray(full)[gen_mask], atol=1e-5, rtol=0)
    # the returned log-probs are those of the full distribution at the sampling temperature
    lp = jax.nn.log_softmax(full, -1)
    chosen = np.take_along_axis(np.asarray(lp), np.asarray(out["tokens"])[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(out["logprobs"])[gen_mask], chosen[gen_mask], atol=1e-5)


@pytest.mark.parametrize("variant", ["llama", "gemma2"])
def test_left_padding_does_not_change_the_continuation(variant):
    cfg, graphdef, state = _model(variant)
    sc = SamplingConfig(max_new_tokens=12, eos_id=EOS, pad_id=PAD, greedy=True)
    gen = make_generate(graphdef, sc, return_logits=True)
    body = [31, 32, 33, 34, 35, 36]
    padded = jnp.array([[PAD] * 4 + body, [40 + i for i in range(10)]], jnp.int32)
    unpadded = jnp.array([body], jnp.int32)
    a, b = gen(state, padded, jax.random.key(0)), gen(state, unpadded, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(a["tokens"][0]), np.asarray(b["tokens"][0]))
    np.testing.assert_allclose(np.asarray(a["logits"][0]), np.asarray(b["logits"][0]), atol=1e-5)


def test_stops_at_eos_and_masks_after_it():
    cfg, graphdef, state = _model("llama")
    # Make EOS overwhelmingly likely by biasing its embedding row (tied head).
    state["embed"][...] = state["embed"][...].at[EOS].set(5.0)
    sc = SamplingConfig(max_new_tokens=16, eos_id=EOS, pad_id=PAD, greedy=True)
    out = make_generate(graphdef, sc)(state, _prompts(), jax.random.key(0))
    toks, mask = np.asarray(out["tokens"]), np.asarray(out["mask"])
    for row, m in zip(toks, mask):
        first = int(np.argmax(row == EOS))
        assert row[first] == EOS and m[: first + 1].all() and not m[first + 1:].any()
        assert (row[first + 1:] == PAD).all()
    assert int(out["steps"]) < 16  # the loop stopped early once every row finished


def test_top_k_and_top_p_filters():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    assert np.isfinite(np.asarray(filter_logits(logits, 2, 1.0))).tolist() == [[True, True, False, False]]
    # nucleus 0.7: 0.5 alone is below 0.7, so 0.3 joins; the rest drop
    assert np.isfinite(np.asarray(filter_logits(logits, 0, 0.7))).tolist() == [[True, True, False, False]]
    assert np.isfinite(np.asarray(filter_logits(logits, 0, 0.81))).tolist() == [[True, True, True, False]]
    with pytest.raises(ValueError, match="pad_id"):
        SamplingConfig(max_new_tokens=4, eos_id=3, pad_id=3)


def test_per_row_keys_make_a_row_independent_of_its_batch_mates():
    # Evaluations resume by regenerating only unfinished requests, in different batches;
    # with one key per row, a row samples the same tokens whatever the other rows are.
    cfg, graphdef, state = _model("llama")
    sc = SamplingConfig(max_new_tokens=10, eos_id=EOS, pad_id=PAD, temperature=1.0)
    gen = make_generate(graphdef, sc)
    keys = jax.random.split(jax.random.key(3), 3)
    prompts = _prompts()
    a = gen(state, prompts, keys)
    # row 1 moved to position 0 next to a different batch-mate, same key
    b = gen(state, prompts[jnp.array([1, 0])].at[1].set(prompts[2]), keys[jnp.array([1, 2])])
    np.testing.assert_array_equal(np.asarray(a["tokens"][1]), np.asarray(b["tokens"][0]))
    np.testing.assert_array_equal(np.asarray(a["tokens"][2]), np.asarray(b["tokens"][1]))
    c = gen(state, prompts, jax.random.split(jax.random.key(4), 3))  # other keys: other samples
    assert not np.array_equal(np.asarray(a["tokens"]), np.asarray(c["tokens"]))


def test_sampling_twice_compiles_once():
    cfg, graphdef, state = _model("llama")
    sc = SamplingConfig(max_new_tokens=6, eos_id=EOS, pad_id=PAD, temperature=0.8, top_k=20)
    gen = make_generate(graphdef, sc)
    gen(state, _prompts(), jax.random.key(0))
    new_state = jax.tree.map(lambda x: x * 1.01, state)  # new weights: arguments, not constants
    gen(new_state, _prompts(), jax.random.key(1))
    assert gen._cache_size() == 1


MESHES = [dict(data=8, fsdp=1, tensor=1), dict(data=2, fsdp=2, tensor=2),
          dict(data=1, fsdp=2, tensor=4), dict(data=1, fsdp=1, tensor=8)]


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(str(v) for v in s.values()))
def test_sharded_equals_unsharded(shape):
    assert jax.device_count() == 8
    cfg, graphdef, state = _model("gemma2")  # 4 heads, 2 kv heads: tensor 4/8 replicates them
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(3, cfg.vocab_size, (8, 16)), jnp.int32)
    mask = jnp.asarray(np.arange(16)[None] >= rng.integers(0, 6, (8, 1)), jnp.int32)
    tokens = jnp.where(mask == 1, tokens, PAD)

    def loss(state, tokens, mask):
        logits = _full_logits(graphdef, state, tokens, mask)
        lp = jax.nn.log_softmax(logits[:, :-1], -1)
        nll = -jnp.take_along_axis(lp, tokens[:, 1:, None], -1)[..., 0]
        return jnp.sum(nll * mask[:, 1:]) / jnp.sum(mask[:, 1:]), logits

    grad_fn = jax.value_and_grad(loss, has_aux=True)
    (ref_loss, ref_logits), ref_grads = jax.jit(grad_fn)(state, tokens, mask)

    mesh = sharding.make_mesh(shape)
    _, abstract = abstract_model(cfg)
    shardings = sharding.state_shardings(abstract, mesh, sharding.DEFAULT_RULES)
    sharded = jax.device_put(state, shardings)
    data = sharding.batch_sharding(mesh, sharding.DEFAULT_RULES, 2)
    with sharding.use_rules(mesh, sharding.DEFAULT_RULES):
        (l, logits), grads = jax.jit(grad_fn)(sharded, jax.device_put(tokens, data), jax.device_put(mask, data))
    np.testing.assert_allclose(float(l), float(ref_loss), atol=1e-5)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref_logits), atol=1e-5)
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=1e-5, err_msg=jax.tree_util.keystr(path))


def test_indivisible_dimension_error_names_it():
    cfg = model_config("tiny")  # 4 heads on tensor=8
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=8))
    _, abstract = abstract_model(cfg)
    with pytest.raises(ValueError, match=r"heads. of size \d is not divisible by mesh axes"):
        sharding.state_shardings(abstract, mesh, sharding.DEFAULT_RULES, indivisible="error")
    specs = sharding.state_shardings(abstract, mesh, sharding.DEFAULT_RULES)  # replicate fallback
    assert specs["blocks"][0]["attn"]["q"].value.spec == jax.sharding.PartitionSpec(None, None, None)
    assert specs["blocks"][0]["mlp"]["up"].value.spec == jax.sharding.PartitionSpec(None, "tensor")


def test_mesh_larger_than_devices_fails():
    with pytest.raises(ValueError, match="mesh.shape"):
        sharding.make_mesh(dict(data=4, fsdp=4, tensor=1))
    assert sharding.mesh_shape(dict(data=-1, fsdp=2, tensor=1), 8) == (4, 2, 1)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_real_presets_have_published_parameter_counts(name):
    _, abstract = abstract_model(model_config(name))  # shapes only: no memory
    assert sharding.count_params(abstract) == PUBLISHED_PARAMS[name]


def test_remat_gives_the_same_gradients():
    grads = []
    for remat in (False, True):
        cfg = model_config("tiny", remat=remat)
        graphdef, params, _ = create_model(cfg, _single_mesh(), sharding.DEFAULT_RULES, 0)
        tok = jnp.arange(3, 35, dtype=jnp.int32)[None]
        mask = jnp.ones_like(tok)

        def loss(p):
            logits = _full_logits(graphdef, p, tok, mask)
            return -jnp.mean(jax.nn.log_softmax(logits[:, :-1])[0, jnp.arange(31), tok[0, 1:]])

        grads.append(jax.grad(loss)(params))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_query_blocks_give_the_same_outputs_and_gradients(variant):
    """attn_query_blocks skips only keys after each query block: real positions match one block."""
    tok = jnp.array([[PAD, PAD, 5, 6, 7, 8, 9, 10, 11, 12, 13],
                     [14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]], jnp.int32)
    mask = jnp.array([[0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2],  # left padding, then two packed segments
                      [1] * 11], jnp.int32)
    pos = jnp.array([[0, 0, 0, 1, 2, 3, 0, 1, 2, 3, 4], list(range(11))], jnp.int32)  # restart per segment
    real = np.asarray(mask) > 0
    results = []
    for block in (1, 3, 11):  # 1: a block of padding only; 3: a ragged last block
        cfg = model_config("tiny", attn_query_blocks=block, **VARIANTS[variant])
        graphdef, params, _ = create_model(cfg, _single_mesh(), sharding.DEFAULT_RULES, 0)

        def loss(p):
            model = nnx.merge(graphdef, p)
            logits = model.logits(model(tok, pos, mask)[0])
            lp = jax.nn.log_softmax(logits[:, :-1])
            # Padded positions' outputs are arbitrary (no real query sees them): predict from real ones.
            w = real[:, 1:] & real[:, :-1]
            return -jnp.sum(jnp.take_along_axis(lp, tok[:, 1:, None], -1)[..., 0] * w), logits

        (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        results.append((np.asarray(logits)[real], jax.tree.leaves(grads)))
    for logits, grads in results[1:]:
        np.testing.assert_allclose(logits, results[0][0], atol=1e-5, rtol=0)
        for a, b in zip(grads, results[0][1]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("kv", ["bske", "bkse"])
def test_softmax_attend_gradients_match_autodiff(kv):
    """The custom backward (rowsum(dO * O) in place of rowsum(P * dP)) equals autodiff of
    softmax-then-matmul, with masked keys and a fully masked (padding) query row."""
    b, t, s, k, g, e = 2, 5, 7, 2, 3, 4
    keys = jax.random.split(jax.random.key(0), 3)
    logits = jax.random.normal(keys[0], (b, k, g, t, s))
    keep = jax.random.bernoulli(keys[1], 0.7, (b, 1, 1, t, s)).at[0, :, :, 2].set(False)
    logits = jnp.where(keep, logits, NEG_INF)
    v_shape = (b, s, k, e) if kv == "bske" else (b, k, s, e)
    v = jax.random.normal(keys[2], v_shape)
    w = jax.random.normal(jax.random.key(1), (b, t, k, g, e))  # a generic cotangent

    def reference(lg, vv):
        return jnp.einsum(f"bkgts,{kv}->btkge", jax.nn.softmax(lg, axis=-1), vv)

    ours = lambda lg, vv: jnp.sum(softmax_attend(lg, vv, kv) * w)  # noqa: E731
    ref = lambda lg, vv: jnp.sum(reference(lg, vv) * w)  # noqa: E731
    np.testing.assert_allclose(softmax_attend(logits, v, kv), reference(logits, v), atol=1e-6)
    for a, r in zip(jax.grad(ours, argnums=(0, 1))(logits, v), jax.grad(ref, argnums=(0, 1))(logits, v)):
        assert a.shape == r.shape
        np.testing.assert_allclose(a, r, atol=1e-5, rtol=1e-5)
