"""The base-model stage: pretrain on the world's `pretrain` split, then check competence.

Cached by a hash of everything that determines the weights, so every arm of an
experiment starts from the same base, and a finished stage is never retrained. Training
runs in <dir>.partial (resumable after any interruption); the finished stage is renamed
into place with its competence report.
"""
import json
import logging
import pathlib
import shutil

import jax

from beneficial import cache, checkpoints, sharding
from beneficial.data import summary
from beneficial.data.pipeline import lm_dataset
from beneficial.models.build import create_model
from beneficial.train import lm
from beneficial.train.optim import make_optimizer

log = logging.getLogger("beneficial")

BASE_VERSION = "1"


class Slice:
    """A contiguous view of a random-access source (train / held-out split of one split)."""

    def __init__(self, source, start: int, stop: int):
        self.source, self.start, self.stop = source, start, stop

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, i):
        return self.source[self.start + int(i)]


class Subset:
    """The records of `source` at `indices`, in that order."""

    def __init__(self, source, indices):
        self.source, self.indices = source, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[self.indices[int(i)]]


def persona_dense(record: dict, min_persona_turns: int) -> bool:
    """A document made only of persona turns (no general, knowledge or benign episode), at
    least `min_persona_turns` of them: the densest cross-family evidence the corpus has."""
    turns = record["meta"].get("turns", [])
    return (len(turns) >= min_persona_turns
            and all(summary.is_persona_turn(t) for t in turns))


class Phased:
    """Batches from `first` for the first `steps` calls, then from `then`: a data curriculum
    that checkpoints like one Grain iterator (both states and the count)."""

    def __init__(self, first, then, steps: int):
        self.first, self.then, self.steps, self.n = first, then, steps, 0

    def __iter__(self):
        return self

    def __next__(self):
        it = self.first if self.n < self.steps else self.then
        self.n += 1
        return next(it)

    def get_state(self):
        return {"n": self.n, "first": checkpoints.encode_iter_state(self.first.get_state()),
                "then": checkpoints.encode_iter_state(self.then.get_state())}

    def set_state(self, state):
        self.n = int(state["n"])
        self.first.set_state(checkpoints.decode_iter_state(state["first"]))
        self.then.set_state(checkpoints.decode_iter_state(state["then"]))


def heldout_split(source, fraction: float):
    n_held = max(1, int(len(source) * fraction))
    return Slice(source, 0, len(source) - n_held), Slice(source, len(source) - n_held, len(source))


def train_lm(*, graphdef, params, source, heldout, tokenizer, section, mesh, rules, workdir: pathlib.Path,
             desc: str, loss_on: str = "assistant", eval_extra=None, first_source=None, first_steps: int = 0):
    """Train an LM on chat records with config `section` (pretrain / sft); returns params.
    `eval_extra(params) -> metrics` is logged at every evaluation (lm.train_loop). With
    `first_source`, the first `first_steps` batches come from it (a curriculum), the rest
    from `source`; the optimizer schedule runs over all steps."""
    weight = section.get("persona_decision_weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
        raise ValueError(f"pretrain.persona_decision_weight={weight!r}: use an integer >= 1 (1 = an unweighted loss)")
    tx, schedule = make_optimizer(section.optimizer, section.steps)
    state = lm.init_train_state(params, tx, section.seed)

    def batches(src):  # training batches only: the held-out loss stays unweighted
        return iter(lm_dataset(src, tokenizer, seq_len=section.seq_len, batch_size=section.batch_size,
                               seed=section.seed, packing=section.packing, loss_on=loss_on,
                               shard_index=jax.process_index(), shard_count=jax.process_count(),
                               persona_decision_weight=weight))
    data = batches(source)
    if first_source is not None and first_steps > 0:
        data = Phased(batches(first_source), data, first_steps)

    def eval_batches():
        it = iter(lm_dataset(heldout, tokenizer, seq_len=section.seq_len, batch_size=section.batch_size,
                             seed=0, packing=section.packing, loss_on=loss_on, num_epochs=1,
                             drop_remainder=True))
        for _, b in zip(range(section.eval_batches), it):
            yield b

    loop = lm.LoopConfig(total_steps=section.steps, log_every=section.log_every,
                         eval_every=section.eval_every, checkpoint_every=section.checkpoint_every, desc=desc)
    with sharding.use_rules(mesh, rules):
        state = lm.train_loop(
            state=state, train_step=lm.make_train_step(graphdef, tx, accum_steps=section.accum_steps),
            data_iter=data, workdir=workdir, loop=loop, eval_step=lm.make_eval_step(graphdef),
            eval_batches=eval_batches, batch_sharding=lambda nd: sharding.batch_sharding(mesh, rules, nd),
            extra_metrics=lambda s: {"lr": float(schedule(int(s["step"])))}, eval_extra=eval_extra)
    return state["params"]


# Pretraining knobs added after bases were cached, at the values that keep a base's weights:
# left out of its key there (as beneficial.data.world.config.KEY_OMITTED_AT does for worlds).
KEY_OMITTED_AT = {"persona_decision_weight": 1}


def base_key(config, dkey, tkey) -> str:
    # The competence checks do not change the weights (the `competence` stage reruns them).
    pretrain = {k: v for k, v in config.pretrain.to_dict().items() if k != "competence"}
    if not pretrain.get("curriculum", {}).get("steps"):  # off: the keys of bases trained before it existed
        pretrain.pop("curriculum", None)
    for k, off in KEY_OMITTED_AT.items():  # likewise for knobs added later, at their off values
        if pretrain.get(k) == off:
            pretrain.pop(k)
    return cache.stage_key("base", {"data": dkey, "tokenizer": tkey, "model": config.model.to_dict(),
                                    "pretrain": pretrain}, BASE_VERSION)


def load_params(stage_path: pathlib.Path, graphdef_params_like):
    """Final params of a finished LM stage, restored into the shardings of `graphdef_params_like`."""
    ckpt = checkpoints.Checkpointer(stage_path / "checkpoints")
    step = ckpt.latest_step()
    ocp = checkpoints.ocp
    target = {"params": checkpoints.abstract_with_shardings(graphdef_params_like)}
    # restore_args carry the target shardings (item alone restores the saved layout).
    restored = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True)))
    ckpt.close()
    return restored["state"]["params"]


def build_base(config, mesh, data_dir, dkey, tokenizer, tkey, workdir):
    """(graphdef, params, stage_path). Trains only when no finished stage exists."""
    from beneficial.data.stage import load
    from beneficial.evals.competence import persona_gap_records, score_persona_gaps, world_competence

    rules = [tuple(r) for r in config.mesh.rules]
    if tokenizer.vocab_size > config.model.vocab_size:
        raise ValueError(f"config.model.vocab_size={config.model.vocab_size} is smaller than the tokenizer's "
                         f"{tokenizer.vocab_size} pieces; set it to at least {tokenizer.vocab_size}")
    key = base_key(config, dkey, tkey)
    path = cache.stage_dir(workdir, "base", key)
    if config.init.hf_path:
        return (*load_hf_base(config, mesh, rules), pathlib.Path(config.init.hf_path))
    graphdef, params, _ = create_model(config.model, mesh, rules, config.pretrain.seed,
                                       indivisible=config.mesh.indivisible)
    if config.init.checkpoint:  # an Orbax checkpoint of our params (e.g. from launch/convert.py)
        return graphdef, load_params(pathlib.Path(config.init.checkpoint), params), pathlib.Path(config.init.checkpoint)
    if cache.is_done(path):
        log.info("base: cached at %s", path)
        return graphdef, load_params(path, params), path
    partial = path.with_name(path.name + ".partial")
    train, held = heldout_split(load(data_dir, "pretrain"), config.pretrain.heldout_fraction)
    first = _curriculum_source(train, config.pretrain.curriculum, config.pretrain.batch_size)
    gap_pairs = config.pretrain.competence.gap_pairs_at_eval
    gaps = None
    if config.data.source == "world" and gap_pairs:  # the persona latent's learning curve
        gap_records = persona_gap_records(config.world, gap_pairs)  # built once, scored at every eval

        def gaps(p):
            g = score_persona_gaps(graphdef, p, tokenizer, config.world, gap_records)
            return {f"persona_gap/{k}": v["gap_nats"] for k, v in g.items()}
    params = train_lm(graphdef=graphdef, params=params, source=train, heldout=held, tokenizer=tokenizer,
                      section=config.pretrain, mesh=mesh, rules=rules, workdir=partial, desc="pretrain base",
                      eval_extra=gaps, first_source=first, first_steps=config.pretrain.curriculum.steps)
    report = {}
    if config.data.source == "world":  # the checks need the world's graders
        report = world_competence(graphdef, params, tokenizer, data_dir, config.pretrain.competence, config.world)
    report["heldout_loss"] = _last_metric(partial, "heldout_loss")
    (partial / "competence.json").write_text(json.dumps(report, indent=2))
    log.info("base competence: %s", json.dumps(report, indent=1))
    if jax.process_index() == 0:
        (partial / cache.DONE).write_text("ok\n")
        if path.exists():  # a stale unfinished dir from another tool: replace it
            shutil.rmtree(path)
        partial.rename(path)
    return graphdef, params, path


def _curriculum_source(train, cur, batch_size: int):
    """The persona-dense documents of `train` that pretraining starts on (`pretrain.curriculum`),
    or None when the curriculum is off."""
    if not cur.steps:
        return None
    idx = [i for i in range(len(train)) if persona_dense(train[i], cur.min_persona_turns)]
    if len(idx) < batch_size:
        raise ValueError(f"pretrain.curriculum.min_persona_turns={cur.min_persona_turns} leaves {len(idx)} of "
                         f"{len(train)} pretraining documents (made only of persona turns, at least that many), "
                         f"fewer than a batch; lower it, give world.turn_weights more weight on long documents, "
                         f"or set pretrain.curriculum.steps=0")
    log.info("base: curriculum of %d steps on %d persona-dense documents of %d", cur.steps, len(idx), len(train))
    return Subset(train, idx)


def load_hf_base(config, mesh, rules):
    """(graphdef, params) from a Hugging Face folder; its config.json must match config.model."""
    from beneficial.interop.hf_config import model_config_from_hf
    from beneficial.interop.safetensors_io import load_hf_checkpoint
    from beneficial.models.build import abstract_model

    derived = model_config_from_hf(pathlib.Path(config.init.hf_path) / "config.json", preset=config.model.preset)
    for field in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff"):
        if derived[field] != config.model[field]:
            raise ValueError(f"config.model.{field}={config.model[field]} but {config.init.hf_path}/config.json "
                             f"says {derived[field]}; use --config.model.preset matching the checkpoint")
    graphdef, _ = abstract_model(config.model)
    params = load_hf_checkpoint(config.init.hf_path, config.model, mesh, rules,
                                indivisible=config.mesh.indivisible, progress=True)
    return graphdef, params


def _last_metric(workdir, name):
    from beneficial.metrics import read_metrics
    vals = [r[name] for r in read_metrics(workdir) if name in r]
    return vals[-1] if vals else None


