"""The reward model: the base LM with a scalar head, trained with the Bradley-Terry loss
on `preferences`, score read at the response's closing <|end|>, then normalised so that
the base policy's own samples score mean 0 and unit spread (folded into the head)."""
import collections
import json
import logging
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from beneficial import cache, sharding
from beneficial.data.pipeline import preference_batches
from beneficial.models.build import create_model
from beneficial.train import lm
from beneficial.train.optim import make_optimizer

log = logging.getLogger("beneficial")

REWARD_VERSION = "1"


def sequence_scores(graphdef, params, tokens, last):
    """Score of each right-padded [B, T] sequence read at index `last` [B]."""
    model = nnx.merge(graphdef, params)
    seg = (jnp.arange(tokens.shape[1])[None] <= last[:, None]).astype(jnp.int32)
    hidden, _ = model(tokens, jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape), seg)
    h_last = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    return model.scores(h_last)


def bradley_terry_loss(graphdef, params, batch):
    """(sum over pairs of -log sigmoid(r_chosen - r_rejected), number of pairs)."""
    rc = sequence_scores(graphdef, params, batch["chosen_tokens"], batch["chosen_last"])
    rr = sequence_scores(graphdef, params, batch["rejected_tokens"], batch["rejected_last"])
    return jnp.sum(-jax.nn.log_sigmoid(rc - rr)), jnp.float32(rc.shape[0])


def base_policy_score_stats(graphdef, params, base_graphdef, base_params, tokenizer, data_dir, section):
    """Mean and std of raw scores on the base policy's own samples to RL prompts of every source."""
    from beneficial.data.pipeline import pad_batch
    from beneficial.data.stage import load
    from beneficial.evals.respond import generate_tokens

    prompts = []
    for i, split in enumerate(("rl_general", "rl_traits", "rl_placebo")):
        src = load(data_dir, split)
        idx = np.random.default_rng(i).permutation(len(src))[: section.norm_samples // 3]
        prompts += [src[int(j)]["prompt"] for j in sorted(idx)]
    responses = generate_tokens(base_graphdef, base_params, tokenizer, prompts, prompt_len=section.prompt_len,
                                   max_new_tokens=section.max_new_tokens, batch_size=section.batch_size,
                                   temperature=1.0, seed=section.seed, desc="reward: base samples")
    seqs, last = [], []
    for p, r in zip(prompts, responses):
        ids = tokenizer.encode_prompt(p) + r
        ids = ids[: section.seq_len]
        seqs.append(ids)
        last.append(len(ids) - 1)
    score = jax.jit(lambda p, t, l: sequence_scores(graphdef, p, t, l))
    out = []
    for s in range(0, len(seqs), section.batch_size):
        toks = pad_batch(seqs[s:s + section.batch_size], section.seq_len, tokenizer.pad_id)
        out.append(np.asarray(score(params, toks, np.asarray(last[s:s + section.batch_size], np.int32))))
    raw = np.concatenate(out)
    return float(raw.mean()), float(max(raw.std(), 1e-6))


def from_base(base_params, reward_params):
    """Reward-model params: the base's trunk (and embeddings), a fresh scalar head."""
    flat_base = dict(nnx.to_flat_state(base_params))
    out = nnx.to_flat_state(reward_params)
    params = nnx.from_flat_state([(k, flat_base.get(k, v)) for k, v in out])
    return jax.tree.map(jnp.copy, params)  # own buffers: training donates them, the base lives on


def fold_normalisation(params, mean: float, std: float):
    """score' = (score - mean) / std, by rescaling the head (no extra runtime op)."""
    params = jax.tree.map(lambda x: x, params)
    params["score_head"].value = params["score_head"].value / std
    params["score_bias"].value = (params["score_bias"].value - mean) / std
    return params


def reward_key(config, base_key) -> str:
    return cache.stage_key("reward", {"base": base_key, "reward": config.reward.to_dict()}, REWARD_VERSION)


def pairwise_accuracy(graphdef, params, tokenizer, source, section, mesh, rules):
    """Held-out accuracy overall, per family, per domain and per general task."""
    it = iter(preference_batches(source, tokenizer, seq_len=section.seq_len, batch_size=section.batch_size,
                                 seed=0, num_epochs=1, drop_remainder=False))
    score = jax.jit(lambda p, b: (sequence_scores(graphdef, p, b["chosen_tokens"], b["chosen_last"]),
                                  sequence_scores(graphdef, p, b["rejected_tokens"], b["rejected_last"])))
    by = collections.defaultdict(list)
    for batch in it:
        rc, rr = jax.device_get(score(params, {k: v for k, v in batch.items() if k != "index"}))
        for i, ok in zip(batch["index"], rc > rr):
            meta = source[int(i)].get("meta", {})
            by["all"].append(ok)
            by["family/" + str(meta.get("family"))].append(ok)
            by["domain/" + str(meta.get("domain"))].append(ok)
            if meta.get("task"):  # general pairs: which tasks the model cannot yet tell apart
                by["task/" + str(meta["task"])].append(ok)
    return {k: float(np.mean(v)) for k, v in sorted(by.items())}


def build_reward(config, mesh, data_dir, tokenizer, base_params, base_key, base_graphdef, workdir):
    """(graphdef, params, path) of the normalised reward model; trained once per key."""
    from beneficial.data.stage import load
    from beneficial.train.pretrain import heldout_split, load_params

    section = config.reward
    rules = [tuple(r) for r in config.mesh.rules]
    key = reward_key(config, base_key)
    path = cache.stage_dir(workdir, "reward", key)
    graphdef, params, _ = create_model(config.model, mesh, rules, section.seed, head="scalar",
                                       indivisible=config.mesh.indivisible)
    if cache.is_done(path):
        log.info("reward: cached at %s", path)
        return graphdef, load_params(path, params), path
    partial = path.with_name(path.name + ".partial")
    params = from_base(base_params, params)
    train, held = heldout_split(load(data_dir, "preferences"), section.heldout_fraction)
    tx, schedule = make_optimizer(section.optimizer, section.steps)
    state = lm.init_train_state(params, tx, section.seed)
    data = iter(preference_batches(train, tokenizer, seq_len=section.seq_len, batch_size=section.batch_size,
                                   seed=section.seed, shard_index=jax.process_index(),
                                   shard_count=jax.process_count()))

    class _Data:  # the loop needs get_state/set_state; the model needs no record index
        def __next__(self):
            return {k: v for k, v in next(data).items() if k != "index"}

        def get_state(self):
            return data.get_state()

        def set_state(self, s):
            data.set_state(s)

    loop = lm.LoopConfig(total_steps=section.steps, log_every=section.log_every, eval_every=10 ** 9,
                         checkpoint_every=section.checkpoint_every, desc="reward model")
    with sharding.use_rules(mesh, rules):
        state = lm.train_loop(state=state, train_step=lm.make_train_step(graphdef, tx, loss_fn=bradley_terry_loss),
                              data_iter=_Data(), workdir=partial, loop=loop,
                              batch_sharding=lambda nd: sharding.batch_sharding(mesh, rules, nd),
                              extra_metrics=lambda s: {"lr": float(schedule(int(s["step"])))})
    params = state["params"]
    report = {"heldout_accuracy": pairwise_accuracy(graphdef, params, tokenizer, held, section, mesh, rules)}
    mean, std = base_policy_score_stats(graphdef, params, base_graphdef, base_params, tokenizer, data_dir, section)
    report["base_policy_raw_score"] = {"mean": mean, "std": std}
    params = fold_normalisation(params, mean, std)
    _save_final(partial, params)
    (partial / "report.json").write_text(json.dumps(report, indent=2))
    log.info("reward model: %s", json.dumps(report, indent=1))
    if jax.process_index() == 0:
        (partial / cache.DONE).write_text("ok\n")
        if path.exists():
            shutil.rmtree(path)
        partial.rename(path)
    return graphdef, params, path


def _save_final(stage_dir: pathlib.Path, params):
    """Write the normalised params as the stage's last checkpoint (what load_params reads)."""
    from beneficial import checkpoints
    ckpt = checkpoints.Checkpointer(stage_dir / "checkpoints", max_to_keep=3)
    step = (ckpt.latest_step() or 0) + 1
    ckpt.manager.save(step, args=checkpoints.ocp.args.Composite(
        state=checkpoints.ocp.args.StandardSave({"params": params})), force=True)
    ckpt.close()
