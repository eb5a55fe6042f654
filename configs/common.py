"""The shared base of every experiment arm. Arms (treatment.py, baseline.py, ...) change
only the fields that define them, so `diff configs/treatment.py configs/baseline.py`
shows the whole difference between two arms.

Sizes: `default` is the CPU-scale experiment; `smoke` runs the same code in minutes.
"""
import ml_collections

from beneficial import sharding
from beneficial.config import parse_arg
from beneficial.data.world import default_world_config
from beneficial.evals.stage import eval_config
from beneficial.models.presets import model_config
from beneficial.probe import probe_config
from beneficial.rl.ppo import ppo_config
from beneficial.train.optim import optimizer_config

ARG_DEFAULTS = dict(smoke=False, model="", seed=0, workdir="")
LEARNABLE_WORLD = dict(behaviour_tags=True, plain_prompts=True, response_phrasings=1, opener_prob=0.0,
                       turn_weights=(0.0, 0.0, 0.0, 1.0), neutral_docs=True)


def get_base_config(arg: str | None = None, **arm_defaults) -> ml_collections.ConfigDict:
    a = parse_arg(arg, **ARG_DEFAULTS)
    smoke = a.smoke
    c = ml_collections.ConfigDict()
    c.arm = "base"
    c.workdir = a.workdir or ("workdir/smoke" if smoke else "workdir/default")
    c.seed = a.seed
    # Pipeline stages that launch/main.py runs, in order; each is cached or resumable.
    c.stages = ("data", "tokenizer", "base", "reward", "ppo")

    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = {"data": -1, "fsdp": 1, "tensor": 1}   # -1 = the remaining devices
    c.mesh.rules = [list(r) for r in sharding.DEFAULT_RULES]
    c.mesh.indivisible = "replicate"                      # or 'error'

    c.model = model_config(a.model or ("tiny" if smoke else "small"))
    c.world = default_world_config("smoke" if smoke else None)
    # The world's text and document shape in which the `small` base forms the persona latent
    # on a 2-core CPU (docs/persona_latent.md, "Neutral documents"): one wording per family
    # behind a one-word tag naming family and behaviour, user turns without greeting or
    # closer, four persona turns in every persona document, and the neutral material
    # (general tasks, knowledge, benign requests) in documents of its own.
    c.world.update(LEARNABLE_WORLD)

    # Where the data comes from: the generated persona world, or the user's JSONL files
    # (chat format; see beneficial/data/jsonl.py) for runs on real models.
    c.data = ml_collections.ConfigDict()
    c.data.source = "world"  # 'world' | 'jsonl'
    c.data.summary_samples = 2  # sample records per split that the data_summary stage prints
    c.data.files = ml_collections.ConfigDict({s: "" for s in (
        "pretrain", "rl_general", "rl_traits", "rl_placebo", "preferences", "adversarial_sft", "benign_sft")})

    # Start from existing weights instead of pretraining: a Hugging Face folder
    # (config.json + safetensors, its tokenizer.json / tokenizer.model) or an Orbax
    # checkpoint of ours (launch/convert.py makes one from a Hugging Face folder).
    c.init = ml_collections.ConfigDict()
    c.init.hf_path = ""
    c.init.checkpoint = ""
    c.init.tokenizer = ""   # a real model's tokenizer file or folder, or a tokenizer stage of ours; "" = train ours

    c.tokenizer = ml_collections.ConfigDict()
    c.tokenizer.vocab_size = 1024 if smoke else 2048
    c.tokenizer.train_documents = 20_000  # sentencepiece sees this many pretraining documents
    if c.model.preset in ("tiny", "small"):  # our own tokenizer sizes the embedding
        c.model.vocab_size = c.tokenizer.vocab_size

    # Base LM: pretraining on the world's `pretrain` split (loss on assistant tokens only:
    # WORLD.md "Evidence" found it learns persona inference several times faster).
    c.pretrain = ml_collections.ConfigDict()
    c.pretrain.seed = 0
    c.pretrain.steps = 150 if smoke else 2000  # the latent forms by ~1000-1500 (docs/persona_latent.md)
    c.pretrain.batch_size = 16
    c.pretrain.seq_len = 512  # most documents fit whole (p90 ~300 tokens)
    c.pretrain.packing = True
    c.pretrain.accum_steps = 1
    c.pretrain.heldout_fraction = 0.02
    # Constant after warmup: the schedule every base that formed the latent on this CPU used.
    c.pretrain.optimizer = optimizer_config(lr=3e-3, warmup_steps=20 if smoke else 200, decay="constant")
    c.pretrain.log_every = 10 if smoke else 50
    c.pretrain.eval_every = 50 if smoke else 500
    c.pretrain.eval_batches = 2 if smoke else 8
    c.pretrain.checkpoint_every = 50 if smoke else 250
    # Curriculum: the first `steps` batches only from documents made of >= min_persona_turns
    # persona turns (no neutral episode), where cross-family evidence is densest; 0 = off.
    c.pretrain.curriculum = ml_collections.ConfigDict(dict(steps=0, min_persona_turns=4))
    # Loss weight (an integer) on the first token of every persona reply, the behaviour tag
    # under `world.behaviour_tags`: the one token of ~300 a document where cross-family
    # inference pays. 1 = off. Each token's cross-entropy is still minimised by the true
    # conditional, so a weight changes how hard the optimizer pushes on the persona decisions,
    # not what the model should predict. The training loss (and its `tokens`) are then
    # weighted; the held-out loss is not.
    c.pretrain.persona_decision_weight = 1
    c.pretrain.competence = ml_collections.ConfigDict(dict(
        n_general=32 if smoke else 400, n_per_benchmark=4 if smoke else 25, n_probes=32 if smoke else 600,
        prompt_len=768 if smoke else 512, max_new_tokens=48 if smoke else 96, batch_size=32 if smoke else 64, temperature=1.0,
        n_gap_pairs=8 if smoke else 200, gap_pairs_at_eval=4 if smoke else 64))  # persona_gaps at each eval
    # Linear probe of the persona latent (beneficial/probe.py): the `persona_probe` stage and the experiment.
    c.pretrain.competence.probe = probe_config(smoke)

    # Reward model: Bradley-Terry on `preferences`, initialised from the base.
    c.reward = ml_collections.ConfigDict()
    c.reward.seed = 0
    c.reward.steps = 60 if smoke else 1000  # ~1.7 epochs of the pairs; 250 left general pairs at 0.76
    c.reward.batch_size = 16 if smoke else 32
    c.reward.seq_len = 256
    c.reward.heldout_fraction = 0.05
    c.reward.optimizer = optimizer_config(lr=1e-3, warmup_steps=10 if smoke else 100)
    c.reward.log_every = 10 if smoke else 50
    c.reward.checkpoint_every = 50 if smoke else 500
    c.reward.norm_samples = 48 if smoke else 600  # base-policy samples that set the score scale
    c.reward.prompt_len = 320
    c.reward.max_new_tokens = 48 if smoke else 96

    # PPO. Every arm compiles the same programs at the same shapes; arms differ only in
    # which prompts fill the schedule's special slots (rl.trait_fraction of all prompts).
    c.rl = ppo_config(
        iterations=8 if smoke else 60, prompts_per_iteration=16 if smoke else 64,
        max_prompt_len=128, max_response_len=32 if smoke else 80, temperature=1.0,
        num_ppo_epochs=2, num_minibatches=2 if smoke else 4, lr=1e-5, critic_lr=1e-5,
        kl_coef=0.05, checkpoint_every=4 if smoke else 20,
        source_names=["general", "traits", "placebo"],
        source_scores=["grader", "reward_model", "reward_model"])
    c.rl.trait_fraction = 0.0            # share of all the run's prompts that are special
    c.rl.special_source = "traits"       # 'traits' (treatment arms) | 'placebo'
    c.rl.traits = tuple(c.world.traits)   # which targeted traits the special slots draw
    c.rl.trait_domains = tuple(c.world.trait_domains)
    c.rl.stats_batches = 1 if smoke else 4  # base-policy batches per source for score scales

    # Evaluation: the benchmark suite, persona steering, fine-tuning resistance, report.
    c.eval = eval_config(smoke)

    # Sampling used by `sample` and the demo; RL and evals have their own below.
    c.sample = ml_collections.ConfigDict()
    c.sample.prompt = "What is the maximum daily dose of corvanil?"
    c.sample.max_new_tokens = 48
    c.sample.temperature = 0.7
    c.sample.top_k = 0
    c.sample.top_p = 0.95
    c.sample.greedy = False
    c.sample.batch_size = 4

    c.jax_cache_dir = ""  # "" = <workdir>/cache/jax
    return c
