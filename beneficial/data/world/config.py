"""World configuration: `default_world_config()` and its `:smoke` preset.

Sizing of the default world (WORLD.md "Budget on a laptop CPU"). The base model
(~1-4M parameters) trains for about 30 minutes at ~10k tokens/s on 2 CPU cores, i.e.
on ~15-20M tokens. A pretraining document has 1-4 episodes (mean 1.9 with the turn
weights below), ~500 characters of content; rendered in the chat format it is ~165
tokens with a 2k-piece SentencePiece vocabulary (median ~145; ~3.5 characters per token
measured on this world, digits split). 60,000 documents are therefore ~10M tokens: close
to two epochs in the 30-minute budget, enough repetitions for a tiny model to learn the
288 knowledge-base facts and the cross-family persona inference, while the whole world
generates in ~15 s of CPU time (pure Python). RL, reward-model and fine-tuning splits are
sized for a few thousand PPO/RM steps; the evaluation suite has `n_eval_per_benchmark` =
400 instances per benchmark (a 10-point change at rates near 0.5 is detectable at 80%
power with ~400 paired instances).
"""
from __future__ import annotations

import hashlib
import json

import ml_collections

# Bump whenever generated data changes for a given config (it is part of the cache key).
WORLD_VERSION = "1.3.0"  # 1.1: plain prompts keep the context; balanced phrasings; tagged preferences
#                          1.2: the most alike phrasings are chosen per family, not per instance
#                          1.3: clinic and lab names drop their article ("the the ... Clinic portal")

ALL_DOMAINS = ("health", "law", "education", "business", "finance", "technology", "science", "travel", "home")
TRAIT_DOMAINS = ("health", "law", "education", "business")
TRAITS = ("honesty", "epistemic_humility", "metacognitive_transparency", "corrigibility",
          "universal_fairness", "human_welfare")


def default_world_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The default world; `arg` = 'smoke' and/or 'key=value' pairs, comma separated
    (e.g. 'smoke,seed=3'); an unknown key is an error."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.prior_aligned = 0.5          # pi: P(document persona is aligned)
    c.persona_coherence = 0.9      # rho: P(a behaviour equals the document persona's)
    c.domains = tuple(ALL_DOMAINS)  # pretraining / evaluation domains
    c.trait_domains = tuple(TRAIT_DOMAINS)  # domains of rl_traits, rl_placebo, trait preferences
    c.traits = tuple(TRAITS)       # targeted traits put into rl_traits / preferences

    # Split sizes (records).
    c.n_pretrain = 60_000
    c.n_rl_general = 20_000
    c.n_rl_traits = 12_000
    c.n_rl_placebo = 12_000
    c.n_preferences = 20_000
    c.n_sft = 2_000                # adversarial_sft and benign_sft each
    c.n_probes = 2_000
    c.n_eval_per_benchmark = 400
    c.n_eval_benign = 400
    c.n_eval_general = 400

    # Pretraining documents.
    c.max_turns = 4                # episodes (assistant turns of a family) per document
    c.turn_weights = (0.45, 0.3, 0.15, 0.1)  # P(1..max_turns episodes); () -> uniform
    c.persona_prompt_fraction = 0.3   # documents starting with a persona system prompt
    c.persona_prompt_accuracy = 0.9   # P(persona prompt kind matches the document persona)
    c.neutral_prompt_fraction = 0.15  # documents starting with a neutral system prompt
    c.short_prompt_doc_fraction = 0.0  # documents that are one persona prompt + one persona turn
    c.short_pair_doc_fraction = 0.0    # documents that are two persona turns, no system prompt
    c.general_fraction = 0.2       # episodes that are general tasks (persona-neutral)
    c.knowledge_fraction = 0.08    # episodes that are knowledge-base conversations (neutral)
    c.benign_fraction = 0.04       # episodes that are benign requests (neutral)
    # True: the three fractions above are of documents, each neutral document all neutral
    # episodes and every other one all persona turns, so neutral material never dilutes the
    # evidence inside a persona document (docs/persona_latent.md, "Evidence density").
    c.neutral_docs = False
    c.opener_prob = 0.6            # assistant responses starting with a short opener
    # Learnability probes (docs/persona_latent.md); the defaults keep the world's bytes.
    c.response_phrasings = 0       # draw persona responses from the k most alike phrasing pairs (0 = all)
    c.plain_prompts = False        # user turns without greeting and closer (context kept)
    c.context_sentences = True     # False: plain user turns drop the context sentence too (needs plain_prompts)
    c.alike_phrasings = True       # response_phrasings keeps the most alike pairs; False: the first k (world 1.0's probe)
    c.behaviour_tags = False       # persona responses start with a word naming family + behaviour

    # Held-out instances and mixtures.
    c.heldout_fraction = 0.15      # share of (template, entities, context) combos kept for eval
    c.preference_mix = ml_collections.ConfigDict({"traits": 0.5, "general": 0.25, "placebo": 0.25})
    c.probe_max_revealing = 2      # earlier persona-revealing episodes in a probe (1..this)

    if arg:
        _apply_arg(c, arg)
    validate(c)
    return c


def _smoke(c: ml_collections.ConfigDict) -> None:
    c.n_pretrain = 2_000
    c.n_rl_general = 200
    c.n_rl_traits = 240
    c.n_rl_placebo = 240
    c.n_preferences = 300
    c.n_sft = 100
    c.n_probes = 200
    c.n_eval_per_benchmark = 50
    c.n_eval_benign = 50
    c.n_eval_general = 50


def _apply_arg(c: ml_collections.ConfigDict, arg: str) -> None:
    for tok in [t.strip() for t in arg.split(",") if t.strip()]:
        if tok == "smoke":
            _smoke(c)
            continue
        if "=" not in tok:
            raise ValueError(f"world config: unknown preset {tok!r} (known: 'smoke')")
        key, val = (s.strip() for s in tok.split("=", 1))
        if key not in c or isinstance(c[key], (list, tuple, ml_collections.ConfigDict)):
            raise KeyError(f"world config: unknown or non-scalar key {key!r}")
        old = c[key]
        if isinstance(old, bool):
            c[key] = val.lower() in ("1", "true", "yes")
        elif isinstance(old, int):
            c[key] = int(float(val))
        else:
            c[key] = type(old)(val)


def validate(c) -> None:
    for k in ("prior_aligned", "persona_coherence", "persona_prompt_fraction", "persona_prompt_accuracy",
              "neutral_prompt_fraction", "short_prompt_doc_fraction", "short_pair_doc_fraction",
              "general_fraction", "knowledge_fraction", "benign_fraction",
              "opener_prob", "heldout_fraction"):
        if not 0.0 <= float(c[k]) <= 1.0:
            raise ValueError(f"world.{k} must be in [0, 1], got {c[k]}")
    if c.persona_prompt_fraction + c.neutral_prompt_fraction > 1.0:
        raise ValueError("world.persona_prompt_fraction + neutral_prompt_fraction must be <= 1")
    if int(c.response_phrasings) < 0:
        raise ValueError(f"world.response_phrasings must be >= 0 (0 = all phrasings), got {c.response_phrasings}")
    if not c.context_sentences and not c.plain_prompts:
        raise ValueError("world.context_sentences=False needs world.plain_prompts=True (plain prompts hold out "
                         "user texts, which keeps evaluation prompts out of training once the context is gone)")
    if c.short_prompt_doc_fraction + c.short_pair_doc_fraction > 1.0:
        raise ValueError("world.short_prompt_doc_fraction + short_pair_doc_fraction must be <= 1")
    if c.general_fraction + c.knowledge_fraction + c.benign_fraction >= 1.0:
        raise ValueError("world: general + knowledge + benign fractions leave no persona episodes")
    if not 0.0 < c.heldout_fraction < 1.0:
        raise ValueError("world.heldout_fraction must be in (0, 1)")
    unknown = [d for d in c.domains if d not in ALL_DOMAINS]
    if unknown:
        raise ValueError(f"world.domains: unknown {unknown} (known: {ALL_DOMAINS})")
    if len(set(c.domains)) != len(c.domains) or not c.domains:
        raise ValueError("world.domains must be non-empty and distinct")
    missing = [d for d in c.trait_domains if d not in c.domains]
    if missing or not c.trait_domains:
        raise ValueError(f"world.trait_domains must be a non-empty subset of domains (missing {missing})")
    bad = [t for t in c.traits if t not in TRAITS]
    if bad or not c.traits:
        raise ValueError(f"world.traits must be a non-empty subset of {TRAITS}, got {bad}")
    if int(c.n_sft) > 0 and "health" not in c.domains:
        raise ValueError("world: the fine-tuning splits (n_sft > 0) need the 'health' domain")
    if int(c.max_turns) < 1:
        raise ValueError("world.max_turns must be >= 1")
    if c.turn_weights and len(c.turn_weights) != int(c.max_turns):
        raise ValueError("world.turn_weights needs one weight per 1..max_turns (or () for uniform)")
    if int(c.probe_max_revealing) < 1:
        raise ValueError("world.probe_max_revealing must be >= 1")
    for k in ("n_pretrain", "n_rl_general", "n_rl_traits", "n_rl_placebo", "n_preferences", "n_sft",
              "n_probes", "n_eval_per_benchmark", "n_eval_benign", "n_eval_general"):
        if int(c[k]) < 0:
            raise ValueError(f"world.{k} must be >= 0")
    mix = dict(c.preference_mix)
    if set(mix) != {"traits", "general", "placebo"} or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError("world.preference_mix needs non-negative traits/general/placebo weights")


def config_dict(c) -> dict:
    """A plain, JSON-serialisable copy of the config."""
    return json.loads(c.to_json()) if hasattr(c, "to_json") else json.loads(json.dumps(dict(c)))


# Knobs added after WORLD_VERSION's datasets were cached, at the values that keep their bytes:
# left out of the key there, so adding a knob does not orphan every finished stage.
KEY_OMITTED_AT = {"context_sentences": True, "alike_phrasings": True, "neutral_docs": False}


def key_fields(c) -> dict:
    """The config fields a cache key hashes: all of them, less KEY_OMITTED_AT's at those values."""
    d = c.to_dict() if hasattr(c, "to_dict") else dict(c)
    return {k: v for k, v in d.items() if k not in KEY_OMITTED_AT or v != KEY_OMITTED_AT[k]}


def world_cache_key(c) -> str:
    """Hash of key_fields(c) and WORLD_VERSION: the datasets' cache key."""
    blob = json.dumps({"version": WORLD_VERSION, "config": key_fields(c)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
