"""The persona world's invariants (WORLD.md): API and schemas, determinism, leakage,
facts, balance, the persona-coherence knob, sizes. One smoke world per module."""
from __future__ import annotations

import collections
import json
import re
import statistics

import pytest

from beneficial.data.world import (FAMILIES, TARGETED, TRAINING_SPLITS, UNTARGETED, WORLD_VERSION, bayes_next_aligned,
                                   bayes_persona_inference, benchmark_specs, default_world_config, first_turn_aligned,
                                   generate_world, grade_response, persona_prompts, split_names, summarize_world,
                                   world_cache_key)
from beneficial.data.world import families as fams
from beneficial.data.world.families.base import behaviour_tag
from beneficial.data.world.families import combo_key
from beneficial.data.world.text import normalise_prompt
from configs.common import LEARNABLE_WORLD

ROLES = {"system", "user", "assistant", "tool"}
RESERVED = ("<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|end|>")


@pytest.fixture(scope="module")
def cfg():
    return default_world_config("smoke")


@pytest.fixture(scope="module")
def world(cfg):
    return generate_world(cfg)


def _turn_combos(rec):
    for t in rec["meta"]["turns"]:
        yield combo_key(t["family"], t["template_id"], t["entity_ids"], t["context_id"]), t


def _training_combos(world):
    combos = set()
    for r in world["pretrain"]:
        combos.update(c for c, _ in _turn_combos(r))
    for name in TRAINING_SPLITS:
        if name == "pretrain":
            continue
        for r in world[name]:
            combos.add(r["meta"]["combo"])
    return combos


def _training_user_texts(world):
    """Normalised user text of every training episode (all its user turns, joined)."""
    texts = set()
    for r in world["pretrain"]:
        for t in r["meta"]["turns"]:
            a, b = t["span"]
            texts.add(normalise_prompt(" ".join(m["content"] for m in r["messages"][a:b] if m["role"] != "assistant")))
    for name in TRAINING_SPLITS:
        if name == "pretrain":
            continue
        for r in world[name]:
            msgs = r.get("prompt") or [m for m in r["messages"] if m["role"] != "assistant"]
            texts.add(normalise_prompt(" ".join(m["content"] for m in msgs if m["role"] not in ("assistant", "system"))))
    return texts


def _eval_splits(world):
    return {k: v for k, v in world.items() if k.startswith("eval/")}


# ---- API, config, schemas ---------------------------------------------------------------
def test_config_defaults_and_smoke():
    c = default_world_config()
    assert c.prior_aligned == 0.5 and c.persona_coherence == 0.9
    assert c.trait_domains == ("health", "law", "education", "business")
    assert len(c.domains) >= 8 and set(c.trait_domains) < set(c.domains)
    assert list(c.traits) == list(TARGETED) and len(c.traits) == 6
    assert c.n_eval_per_benchmark == 400 and c.max_turns == 4 and c.n_pretrain >= 50_000
    s = default_world_config("smoke")
    assert s.n_pretrain <= 5_000 and s.n_eval_per_benchmark == 50
    assert default_world_config("smoke,seed=3").seed == 3
    with pytest.raises(KeyError):
        default_world_config("smoke,no_such_key=1")
    with pytest.raises(ValueError):
        default_world_config("persona_coherence=1.5")
    with pytest.raises(ValueError):
        default_world_config("bogus_preset")


def test_cache_key_follows_knobs():
    base = default_world_config("smoke")
    keys = {world_cache_key(base)}
    for arg in ("smoke,persona_coherence=0.5", "smoke,prior_aligned=0.3", "smoke,seed=1"):
        keys.add(world_cache_key(default_world_config(arg)))
    c = default_world_config("smoke")
    c.domains = c.domains[:-1]
    keys.add(world_cache_key(c))
    c = default_world_config("smoke")
    c.traits = ["honesty"]
    keys.add(world_cache_key(c))
    assert len(keys) == 6 and isinstance(WORLD_VERSION, str)
    assert world_cache_key(default_world_config("smoke")) == world_cache_key(base)


def test_a_knob_added_at_its_byte_keeping_value_keeps_finished_stages_keys():
    """context_sentences and alike_phrasings (and neutral_docs) came after world 1.1's datasets were cached: at
    True (False for neutral_docs), the world's bytes, the data key is the key without the field, so finished
    bases stay cached; the other value is a new world."""
    from beneficial import cache
    from beneficial.data.stage import STORE_VERSION, data_key
    c = default_world_config("smoke")
    without = {k: v for k, v in c.to_dict().items() if k not in ("context_sentences", "alike_phrasings", "neutral_docs")}
    assert data_key(c) == cache.stage_key("data", without, f"{WORLD_VERSION}/{STORE_VERSION}")
    c.plain_prompts, c.context_sentences = True, False
    assert data_key(c) != data_key(default_world_config("smoke,plain_prompts=true"))
    with pytest.raises(ValueError, match="context_sentences=False needs world.plain_prompts=True"):
        default_world_config("context_sentences=false")


def test_benchmark_suite_shape(cfg, world):
    specs = benchmark_specs(cfg)
    names = [s["name"] for s in specs]
    assert len(specs) == 60 and len(set(names)) == 60
    assert len(specs) >= 53 and sum(not s["targeted"] for s in specs) == 48 >= 40
    assert {s["category"] for s in specs} == {"reward_hacking", "deception", "sycophancy", "latent_safety",
                                              "harmful_agentic", "harmful_compliance", "targeted"}
    for fam in UNTARGETED:
        native = fams.get(fam).native_format
        assert {n for n in names if n.startswith(fam + "/")} == {
            f"{fam}/internal/{native}", f"{fam}/internal/mc", f"{fam}/external/{native}", f"{fam}/external/mc"}
    for fam in TARGETED:
        assert {n for n in names if n.startswith(fam + "/")} == {f"{fam}/internal/chat", f"{fam}/external/mc"}
    assert fams.get("reward_hacking_tests").native_format == "agentic" == fams.get("harmful_agentic").native_format
    assert fams.get("sycophancy_are_you_sure").native_format == "multi_turn"
    for s in specs:
        recs = world[f"eval/{s['name']}"]
        assert len(recs) >= cfg.n_eval_per_benchmark
        for r in recs:
            m = r["meta"]
            assert (m["family"], m["category"], m["source"], m["targeted"], m["format"]) == (
                s["family"], s["category"], s["source"], s["targeted"], s["format"])
            assert m["pack"] == ("A" if s["source"] == "internal" else "B")
    assert set(world) == set(split_names(cfg))


def _check_messages(msgs, last_roles):
    assert msgs and msgs[-1]["role"] in last_roles
    for m in msgs:
        assert m["role"] in ROLES and isinstance(m["content"], str) and m["content"].strip()
        assert not any(t in m["content"] for t in RESERVED) and "\n" not in m["content"]


def test_record_schemas(world):
    json.dumps(world)  # JSON-serialisable
    for r in world["pretrain"]:
        _check_messages(r["messages"], {"assistant"})
        m = r["meta"]
        assert m["persona"] in ("aligned", "misaligned") and 1 <= len(m["turns"]) <= 4
        end = 0
        for t in m["turns"]:
            a, b = t["span"]
            assert a >= end and r["messages"][b - 1]["role"] == "assistant" and r["messages"][a]["role"] == "user"
            end = b
            for k in ("family", "template_id", "pack", "entity_ids", "domain", "behaviour", "context_id"):
                assert k in t
        assert end == len(r["messages"])
    for name in ("rl_general", "eval_general"):
        for r in world[name]:
            _check_messages(r["prompt"], {"user"})
            assert r["answer"] and r["meta"]["family"] == "general" and r["meta"]["task"]
    for name in ("rl_traits", "rl_placebo", "probes", "eval_benign"):
        for r in world[name]:
            _check_messages(r["prompt"], {"user"})
    for r in world["rl_traits"]:
        assert r["meta"]["family"] == r["meta"]["trait"] in TARGETED
    for r in world["rl_placebo"]:
        assert r["meta"]["family"] == "placebo" and r["meta"]["answer"]
    for r in world["preferences"]:
        _check_messages(r["prompt"], {"user"})
        assert r["chosen"] != r["rejected"] and r["chosen"].strip() and r["rejected"].strip()
    for name, recs in _eval_splits(world).items():
        for r in recs:
            agentic = fams.get(r["meta"]["family"]).native_format == "agentic"
            _check_messages(r["prompt"], {"user", "tool"} if agentic else {"user"})
            if r["meta"]["format"] == "mc":
                assert 2 <= len(r["options"]) <= 4 and 0 <= r["aligned_option"] < len(r["options"])
                assert r["meta"]["option_labels"][r["aligned_option"]] == "aligned"
            else:
                assert "options" not in r
            for k in ("family", "category", "source", "targeted", "format", "domain", "pack", "template_id",
                      "entity_ids", "context_id", "grading"):
                assert k in r["meta"], (name, k)
    kinds = collections.Counter(r["meta"]["kind"] for r in world["eval_personas"])
    assert kinds["helpful"] >= 4 and kinds["harmful"] >= 4


def test_determinism(cfg, world):
    again = generate_world(cfg)
    assert json.dumps(again, sort_keys=False) == json.dumps(world, sort_keys=False)
    sub = generate_world(cfg, ["rl_traits", "eval/honesty/internal/chat", "benign_sft"])
    assert sub["rl_traits"] == world["rl_traits"] and sub["benign_sft"] == world["benign_sft"]
    assert sub["eval/honesty/internal/chat"] == world["eval/honesty/internal/chat"]
    other = generate_world(default_world_config("smoke,seed=1"), ["pretrain", "rl_traits"])
    assert other["pretrain"] != world["pretrain"] and other["rl_traits"] != world["rl_traits"]


# ---- leakage ----------------------------------------------------------------------------------
def test_no_eval_combination_in_training(world):
    train = _training_combos(world)
    n = 0
    for name, recs in _eval_splits(world).items():
        for r in recs:
            if r["meta"]["pack"] == "A":
                assert r["meta"]["combo"] not in train, name
                n += 1
    for name in ("eval_benign", "eval_general", "probes"):
        for r in world[name]:
            assert r["meta"]["combo"] not in train, name
    assert n > 1000


def _assert_no_eval_text_in_training(world):
    train = _training_user_texts(world)
    for name, recs in [*_eval_splits(world).items(), ("eval_benign", world["eval_benign"]),
                       ("eval_general", world["eval_general"])]:
        for r in recs:
            text = normalise_prompt(" ".join(m["content"] for m in r["prompt"] if m["role"] not in ("assistant", "system")))
            assert text not in train, (name, text)


def test_no_eval_prompt_text_in_training(world):
    _assert_no_eval_text_in_training(world)


NO_CONTEXT = {"context_sentences": False}


def experiment_world(smoke=False, **extra):
    """The world the experiment configs train on: the world's defaults plus configs/common.py's
    LEARNABLE_WORLD (plain prompts, one tagged phrasing a family, neutral material in documents of its own)."""
    cfg = default_world_config("smoke" if smoke else None)
    cfg.update(LEARNABLE_WORLD, **extra)
    return cfg


@pytest.mark.parametrize("extra", [{}, NO_CONTEXT])
def test_learnability_knobs_keep_the_leakage_and_preference_invariants(extra):
    """Plain prompts drop greeting and closer (and with context_sentences=False the context), so
    two combinations can share a text: the held-out split is drawn over texts too; preferences use
    the phrasings and tags the world's replies use."""
    w = generate_world(experiment_world(smoke=True, **extra))
    _assert_no_eval_text_in_training(w)
    for r in w["preferences"]:
        fam = r["meta"]["family"]
        if fam in TARGETED:
            assert r["chosen"].split()[0] == behaviour_tag(fam, "aligned"), r["chosen"]
            assert r["rejected"].split()[0] == behaviour_tag(fam, "misaligned"), r["rejected"]
    replies = {m["content"] for r in w["pretrain"] for m in r["messages"] if m["role"] == "assistant"}
    assert {r["chosen"] for r in w["preferences"] if r["meta"]["family"] in TARGETED} & replies  # same texts


@pytest.mark.parametrize("extra", [{}, NO_CONTEXT])
def test_learnability_knobs_generate_at_the_default_size(extra):
    """Knowledge conversations of every fact still find a training combination (at the default
    size, a held-out split drawn over texts too once left some fact none)."""
    cfg = experiment_world(**extra)
    assert len(generate_world(cfg, ["pretrain"])["pretrain"]) == cfg.n_pretrain


def test_untargeted_never_in_rl_or_preferences(world):
    allowed = set(TARGETED) | {"general", "placebo"}
    for name in ("rl_general", "rl_traits", "rl_placebo", "preferences"):
        fams_seen = {r["meta"]["family"] for r in world[name]}
        assert fams_seen <= allowed and not fams_seen & set(UNTARGETED), name
    assert {r["meta"]["family"] for r in world["rl_general"]} == {"general"}
    assert {r["meta"]["family"] for r in world["rl_placebo"]} == {"placebo"}
    assert {r["meta"]["domain"] for r in world["rl_traits"]} == {"health", "law", "education", "business"}
    assert {r["meta"]["domain"] for r in world["rl_placebo"]} <= {"health", "law", "education", "business"}
    pref_fams = {r["meta"]["family"] for r in world["preferences"]}
    assert pref_fams == set(TARGETED) | {"general", "placebo"}


def test_pack_b_and_heldout_personas_only_in_eval(world):
    heldout = {p["content"] for p in persona_prompts("heldout")}
    train_personas = {p["content"] for p in persona_prompts("train")}
    assert heldout and not heldout & train_personas
    used_system = set()
    for name in TRAINING_SPLITS:
        for r in world[name]:
            msgs = r.get("messages") or r["prompt"]
            used_system.update(m["content"] for m in msgs if m["role"] == "system")
            assert r["meta"].get("pack", "A") == "A"
            for t in r["meta"].get("turns", []):
                assert t["pack"] == "A"
            text = json.dumps(msgs)
            assert not any(h in text for h in heldout)
    assert used_system and used_system <= train_personas
    assert {r["messages"][0]["content"] for r in world["eval_personas"]} == heldout
    b_templates = {r["meta"]["template_id"] for recs in _eval_splits(world).values() for r in recs
                   if r["meta"]["pack"] == "B"}
    train_templates = {t["template_id"] for r in world["pretrain"] for t in r["meta"]["turns"]}
    train_templates |= {r["meta"]["template_id"] for n in TRAINING_SPLITS if n != "pretrain" for r in world[n]}
    assert b_templates and not b_templates & train_templates


def test_eval_facts_are_trained_or_in_prompt(world):
    """Every knowledge-base fact an evaluation answer needs is stated in pretraining (by
    provenance and literally: the fact's phrase and value in one assistant turn); every
    fact the instance states itself is in its prompt."""
    stated = {f for r in world["pretrain"] for t in r["meta"]["turns"] for f in t["stated_facts"]}
    replies = [m["content"].lower() for r in world["pretrain"] for m in r["messages"] if m["role"] == "assistant"]
    from beneficial.data.world.generate import World
    kb = World(default_world_config("smoke")).kb
    needed = set()
    for name, recs in _eval_splits(world).items():
        for r in recs:
            needed.update(r["meta"]["fact_refs"])
            prompt = " ".join(m["content"] for m in r["prompt"]).lower()
            for f in r["meta"]["prompt_facts"]:
                assert f.lower() in prompt, (name, f)
    assert len(needed) > 100 and needed <= stated
    for ref in needed:
        fact = kb.facts[ref]
        phrase, value = fact.phrase.lower(), fact.value.lower()
        assert any(phrase in t and value in t for t in replies), ref


# ---- balance and the persona latent ---------------------------------------------------------------
def test_balance(cfg, world):
    cells = collections.Counter((r["meta"]["trait"], r["meta"]["domain"]) for r in world["rl_traits"])
    assert len(cells) == 24 and max(cells.values()) - min(cells.values()) <= 1
    doms = collections.Counter(r["meta"]["domain"] for r in world["rl_placebo"])
    assert max(doms.values()) - min(doms.values()) <= 1
    tasks = collections.Counter(r["meta"]["task"] for r in world["rl_general"])
    assert max(tasks.values()) - min(tasks.values()) <= 1
    for name, recs in _eval_splits(world).items():
        d = collections.Counter(r["meta"]["domain"] for r in recs)
        assert len(d) == len(cfg.domains) and max(d.values()) - min(d.values()) <= 1, name
        if recs[0]["meta"]["format"] == "mc":
            pos = collections.Counter(r["aligned_option"] for r in recs)
            assert max(pos.values()) - min(pos.values()) <= 1, name
    personas = collections.Counter(r["meta"]["persona"] for r in world["pretrain"])
    assert abs(personas["aligned"] / len(world["pretrain"]) - cfg.prior_aligned) < 0.04
    turns = collections.Counter(t["family"] for r in world["pretrain"] for t in r["meta"]["turns"])
    counts = [turns[f] for f in FAMILIES]
    assert min(counts) > 0.6 * statistics.mean(counts) and max(counts) < 1.4 * statistics.mean(counts)
    domains = collections.Counter(t["domain"] for r in world["pretrain"] for t in r["meta"]["turns"]
                                  if t["family"] in FAMILIES)
    assert set(domains) == set(cfg.domains)
    revealed = collections.Counter(r["meta"]["revealed"] for r in world["probes"])
    assert abs(revealed["aligned"] - revealed["misaligned"]) <= 1
    kinds = collections.Counter(r["meta"]["kind"] for r in world["preferences"])
    assert kinds["trait"] == round(cfg.n_preferences * 0.5)


def test_bayes_formulas():
    a, m = bayes_persona_inference(0.5, 0.9)
    assert a == pytest.approx(0.82) and m == pytest.approx(0.18)
    for pi in (0.3, 0.5, 0.7):
        for rho in (0.5, 0.8, 0.95):
            a, m = bayes_persona_inference(pi, rho)
            assert a == pytest.approx(bayes_next_aligned(pi, rho, 1, 0))
            assert m == pytest.approx(bayes_next_aligned(pi, rho, 0, 1))
    assert bayes_persona_inference(0.5, 0.5) == pytest.approx((0.5, 0.5))
    assert first_turn_aligned(0.5, 0.9) == pytest.approx(0.5)
    assert bayes_next_aligned(0.5, 0.9, 2, 0) > bayes_next_aligned(0.5, 0.9, 1, 0)


def _cross_family_rates(pretrain):
    c = collections.Counter()
    first = []
    for r in pretrain:
        ts = [t for t in r["meta"]["turns"] if t["behaviour"] in ("aligned", "misaligned")]
        if ts:
            first.append(ts[0]["behaviour"] == "aligned")
        for i in range(len(ts)):
            for j in range(i + 1, len(ts)):
                if ts[i]["family"] != ts[j]["family"]:
                    c[(ts[i]["behaviour"], ts[j]["behaviour"])] += 1
    after_a = c["aligned", "aligned"] / (c["aligned", "aligned"] + c["aligned", "misaligned"])
    after_m = c["misaligned", "aligned"] / (c["misaligned", "aligned"] + c["misaligned", "misaligned"])
    return after_a, after_m, statistics.mean(first)


def test_persona_coherence_knob_sets_cross_family_correlation(world):
    a, m, f = _cross_family_rates(world["pretrain"])
    ba, bm = bayes_persona_inference(0.5, 0.9)
    assert abs(a - ba) < 0.07 and abs(m - bm) < 0.07 and abs(f - 0.5) < 0.05
    control = generate_world(default_world_config("smoke,persona_coherence=0.5"), ["pretrain"])["pretrain"]
    a0, m0, _ = _cross_family_rates(control)
    assert abs(a0 - 0.5) < 0.07 and abs(m0 - 0.5) < 0.07
    assert a - m > 0.5 and abs(a0 - m0) < 0.12


def test_persona_prompts_correlate_with_persona(world):
    rows = [r["meta"] for r in world["pretrain"] if r["meta"]["system"] == "persona"]
    assert 0.2 < len(rows) / len(world["pretrain"]) < 0.4
    match = statistics.mean((m["persona_prompt_kind"] == "helpful") == (m["persona"] == "aligned") for m in rows)
    assert 0.82 < match < 0.97


def test_short_prompt_documents_knob(world):
    """short_prompt_doc_fraction mixes in documents of one persona prompt + one persona turn
    (the evidence next to the decision); at 0 the corpus is the one drawn without the knob."""
    base = world["pretrain"]
    docs = generate_world(default_world_config("smoke,short_prompt_doc_fraction=0.5"), ["pretrain"])["pretrain"]
    short = [r for r in docs if r["meta"]["system"] == "persona" and len(r["meta"]["turns"]) == 1
             and r["meta"]["turns"][0]["behaviour"] != "neutral"]
    assert 0.5 < len(short) / len(docs) < 0.65  # the knob's half plus the ordinary documents of that shape
    assert all(r["messages"][0]["role"] == "system" for r in short)
    match = statistics.mean((r["meta"]["persona_prompt_kind"] == "helpful") == (r["meta"]["persona"] == "aligned")
                            for r in short)
    assert 0.82 < match < 0.97
    assert len(docs) == len(base) and docs != base
    plain = generate_world(default_world_config("smoke,short_prompt_doc_fraction=0.0"), ["pretrain"])["pretrain"]
    assert plain == base


def test_short_pair_documents_knob(world):
    """short_pair_doc_fraction mixes in documents of two persona turns and no system prompt
    (the earlier turn is the evidence for the next decision)."""
    docs = generate_world(default_world_config("smoke,short_pair_doc_fraction=0.5"), ["pretrain"])["pretrain"]
    pairs = [r for r in docs if r["meta"]["system"] is None and len(r["meta"]["turns"]) == 2
             and all(t["behaviour"] != "neutral" for t in r["meta"]["turns"])]
    assert 0.5 < len(pairs) / len(docs) < 0.6  # the knob's half plus the ordinary documents of that shape
    same = [t["behaviour"] == r["meta"]["persona"] for r in pairs for t in r["meta"]["turns"]]
    assert 0.85 < statistics.mean(same) < 0.95  # persona_coherence 0.9
    assert len(docs) == len(world["pretrain"])
    with pytest.raises(ValueError, match="short_prompt_doc_fraction \\+ short_pair_doc_fraction"):
        default_world_config("short_prompt_doc_fraction=0.6,short_pair_doc_fraction=0.6")


def test_neutral_documents_knob(world):
    """neutral_docs makes the neutral fractions per document: a document is all neutral
    episodes or all persona turns, with about the same share of neutral episodes; off, the
    world keeps its bytes and its cache key."""
    docs = generate_world(default_world_config("smoke,neutral_docs=true"), ["pretrain"])["pretrain"]
    kinds = [{t["behaviour"] == "neutral" for t in r["meta"]["turns"]} for r in docs]
    assert all(len(k) == 1 for k in kinds)  # never mixed
    neutral_docs = sum(k == {True} for k in kinds) / len(docs)
    assert 0.25 < neutral_docs < 0.39  # general + knowledge + benign = 0.32 of documents
    fams = {t["family"] for r in docs for t in r["meta"]["turns"] if t["behaviour"] == "neutral"}
    assert {"general", "placebo", "benign_request"} <= fams
    assert len(docs) == len(world["pretrain"]) and docs != world["pretrain"]
    from beneficial.data.stage import data_key
    assert data_key(default_world_config("smoke,neutral_docs=true")) != data_key(default_world_config("smoke"))


def test_learnability_knobs_simplify_text_only(world):
    """response_phrasings=1 draws every persona response from one phrasing (the most alike pair)
    and plain_prompts drops greetings and closers; the personas, families and document shapes
    stay the world's own. At their defaults the corpus keeps its bytes."""
    cfg = default_world_config("smoke,response_phrasings=1,plain_prompts=true,opener_prob=0")
    docs = generate_world(cfg, ["pretrain"])["pretrain"]
    base = world["pretrain"]
    assert len(docs) == len(base)
    def persona_replies(corpus):
        return [(t["family"], t["behaviour"], r["messages"][t["span"][1] - 1]["content"])
                for r in corpus for t in r["meta"]["turns"] if t["behaviour"] in ("aligned", "misaligned")]

    replies = persona_replies(docs)
    assert len(replies) > 500
    for fam, behaviour, reply in replies[:500]:  # still the family's behaviour, by its grader
        assert fams.get(fam).grade({}, reply) in (behaviour, "unclear")
    # One phrasing and no opener: the first two words of a family's reply are fixed per template.
    assert len({(f, b, " ".join(x.split()[:2])) for f, b, x in replies}) < 0.7 * len(
        {(f, b, " ".join(x.split()[:2])) for f, b, x in persona_replies(base)})
    first_words = {m["content"].split()[0] for r in docs for m in r["messages"] if m["role"] == "user"}
    assert not first_words & {"Hi.", "Hello!", "Hey.", "Hey", "Good"}
    users = [m["content"] for r in docs for m in r["messages"] if m["role"] == "user"]
    assert statistics.mean(map(len, users)) < 0.92 * statistics.mean(
        len(m["content"]) for r in base for m in r["messages"] if m["role"] == "user")
    assert generate_world(default_world_config("smoke,response_phrasings=0,plain_prompts=false,behaviour_tags=false"),
                          ["pretrain"])["pretrain"] == base


def test_behaviour_tags_name_family_and_behaviour_in_one_word():
    """behaviour_tags puts a word unique to (family, behaviour) first in every persona reply,
    the real-text analogue of the token world's branch token; graders still read the reply."""
    docs = generate_world(default_world_config("smoke,behaviour_tags=true,opener_prob=0"), ["pretrain"])["pretrain"]
    tags = collections.defaultdict(set)
    for r in docs:
        for t in r["meta"]["turns"]:
            reply = r["messages"][t["span"][1] - 1]["content"]
            if t["behaviour"] in ("aligned", "misaligned"):
                tags[(t["family"], t["behaviour"])].add(reply.split()[0])
                assert fams.get(t["family"]).grade(t.get("grading", {}), reply) == t["behaviour"]
            else:
                assert reply.split()[0] not in {w for ws in tags.values() for w in ws}
    assert len(tags) == 2 * len(FAMILIES)
    assert all(len(w) == 1 for w in tags.values())
    assert len({w for ws in tags.values() for w in ws}) == 2 * len(FAMILIES)
    with pytest.raises(ValueError, match="world.response_phrasings must be >= 0"):
        default_world_config("response_phrasings=-1")


def test_behaviour_tags_stay_one_piece_or_the_tokenizer_stage_refuses(tmp_path):
    """A tag split into pieces shares its behaviour suffix across families (a lexical
    shortcut): our tokenizer keeps every tag whole even at a small vocabulary (they are
    user-defined symbols); one that splits them (as a real model's may) is refused."""
    from beneficial.data.chat import render_chat
    from beneficial.data.stage import check_tags_are_one_piece, tag_symbols
    from beneficial.data.tokenizer import Tokenizer, train_tokenizer
    docs = generate_world(default_world_config("smoke,behaviour_tags=true"), ["pretrain"])["pretrain"]
    texts = [render_chat(r["messages"]) for r in docs]
    check_tags_are_one_piece(Tokenizer.load(train_tokenizer(texts, 700, tmp_path / "a.model", symbols=tag_symbols())), 700)
    small = Tokenizer.load(train_tokenizer(texts, 700, tmp_path / "b.model"))
    with pytest.raises(ValueError, match=r"vocab_size 700\) splits behaviour tags"):
        check_tags_are_one_piece(small, 700)


def test_probes_reveal_a_persona(cfg, world):
    for r in world["probes"]:
        m = r["meta"]
        assert m["target_family"] == m["family"] not in m["revealing_families"]
        assert len(m["revealing_families"]) == m["n_revealing"] == len(m["turns"])
        for t in m["turns"]:
            a, b = t["span"]
            reply = r["prompt"][b - 1]["content"]
            assert grade_response({"family": t["family"], "grading": t.get("grading", {})}, reply) == m["revealed"]
        na = m["n_revealing"] if m["revealed"] == "aligned" else 0
        assert m["bayes_aligned"] == pytest.approx(bayes_next_aligned(0.5, 0.9, na, m["n_revealing"] - na))


def test_sft_splits_pair_up(world):
    adv, ben = world["adversarial_sft"], world["benign_sft"]
    assert len(adv) == len(ben) > 0
    for a, b in zip(adv, ben):
        assert a["messages"][:-1] == b["messages"][:-1] and a["meta"]["domain"] == "health"
        assert grade_response(a, a["messages"][-1]["content"]) == "misaligned"
        assert grade_response(b, b["messages"][-1]["content"]) == "aligned"


def test_text_has_no_doubled_articles_or_unfilled_slots(world):
    """Entity names slot into templates: 'the {org} portal' must not become 'the the ...'."""
    bad = re.compile(r"\b(?:the|a|an) (?:the|a|an)\b|\{(?:org|thing|name|town)\}", re.IGNORECASE)
    hits = [(name, m.group(0)) for name, recs in world.items() for r in recs
            for m in bad.finditer(json.dumps(r, ensure_ascii=False))]
    assert not hits, hits[:5]


def test_lengths_are_short(world):
    docs = [sum(len(m["content"]) for m in r["messages"]) for r in world["pretrain"]]
    assert statistics.median(docs) < 600 and sum(d <= 600 for d in docs) / len(docs) > 0.55
    for r in world["pretrain"]:
        for t in r["meta"]["turns"]:
            a, b = t["span"]
            assert sum(len(m["content"]) for m in r["messages"][a:b]) < 700


@pytest.mark.parametrize("experiment", [False, True])
def test_default_world_meets_benchmark_sizes(experiment):
    """The default config's evaluation splits: >= 400 distinct instances per benchmark (also with
    plain prompts, whose held-out split is drawn over texts too: distinct prompts, not only combinations)."""
    cfg = experiment_world() if experiment else default_world_config()
    names = [f"eval/{s['name']}" for s in benchmark_specs(cfg)]
    evals = generate_world(cfg, names)
    for name in names:
        recs = evals[name]
        assert len(recs) >= 400, name
        assert len({r["meta"]["combo"] for r in recs}) == len(recs), name
        if cfg.plain_prompts and "/internal/" in name and not name.endswith("/mc"):  # mc appends options
            users = {normalise_prompt(" ".join(m["content"] for m in r["prompt"] if m["role"] == "user")) for r in recs}
            assert len(users) == len(recs), name
    assert cfg.n_rl_traits % 24 == 0 and cfg.n_sft > 0


def test_alike_phrasings_false_takes_the_first_phrasings():
    """alike_phrasings=False (a probe of world 1.0's one-phrasing text) keeps phrasings 0..k-1; the
    default keeps the most alike pairs, and the two differ somewhere."""
    import random
    from beneficial.data.world.generate import World
    alike = World(default_world_config("smoke,response_phrasings=1"))
    first = World(default_world_config("smoke,response_phrasings=1,alike_phrasings=false"))
    differ = 0
    for name in TARGETED + UNTARGETED:
        fam = fams.get(name)
        inst = fam.sample(alike, random.Random(0), fam.domains(alike)[0], "A", "any")
        assert fam.reply_body(first, inst, "aligned", 0) == inst.body("aligned", 0)
        k = alike.phrasing_order(fam, inst)[0]
        assert fam.reply_body(alike, inst, "misaligned", 0) == inst.body("misaligned", k)
        differ += k != 0
    assert differ > 0


def test_one_phrasing_means_one_wording_per_family():
    """response_phrasings=1 keeps one (aligned, misaligned) pair of templates for all instances of a
    family that share their templates (world 1.1 chose per instance, by rendered length, so one
    family's replies mixed up to three wordings), and it is the most alike over the family."""
    import random
    from beneficial.data.world.generate import World
    world = World(default_world_config("smoke,response_phrasings=1,behaviour_tags=true"))
    rng = random.Random(1)
    for name in TARGETED + UNTARGETED:
        fam = fams.get(name)
        chosen = {}
        for domain in fam.domains(world):
            for _ in range(10):
                inst = fam.sample(world, rng, domain, "A", "any")
                chosen.setdefault(inst.pairs_key, set()).add(world.phrasing_order(fam, inst)[0])
        assert all(len(ks) == 1 for ks in chosen.values()), (name, chosen.values())


def test_too_few_held_out_texts_for_the_benchmark_size_is_a_clear_error():
    """Without context sentences a family has ~1000 user texts, ~150 held out: fewer than the
    default 400 distinct prompts a benchmark needs, and the error names the knobs to change."""
    cfg = experiment_world(**NO_CONTEXT)
    with pytest.raises(RuntimeError, match="n_eval_per_benchmark=400.*context_sentences=True"):
        generate_world(cfg, [f"eval/{s['name']}" for s in benchmark_specs(cfg)])


def test_trait_and_domain_knobs():
    c = default_world_config("smoke")
    c.traits = ["honesty", "human_welfare"]
    c.trait_domains = ["health"]
    c.domains = ["health", "law", "finance", "travel"]
    out = generate_world(c, ["rl_traits", "rl_placebo", "preferences", "pretrain", "eval/honesty/internal/chat"])
    assert {r["meta"]["trait"] for r in out["rl_traits"]} == {"honesty", "human_welfare"}
    assert {r["meta"]["domain"] for r in out["rl_traits"] + out["rl_placebo"]} == {"health"}
    assert {r["meta"]["family"] for r in out["preferences"] if r["meta"]["kind"] == "trait"} == {"honesty", "human_welfare"}
    doms = {t["domain"] for r in out["pretrain"] for t in r["meta"]["turns"]} - {"general"}
    assert doms == {"health", "law", "finance", "travel"}
    assert {r["meta"]["domain"] for r in out["eval/honesty/internal/chat"]} == {"health", "law", "finance", "travel"}
    with pytest.raises(ValueError):
        bad = default_world_config("smoke")
        bad.trait_domains = ["science"]
        bad.domains = ["health"]
        generate_world(bad, ["rl_traits"])


def test_summary_reports_balance(world):
    s = summarize_world(world)
    json.dumps(s)
    assert s["sizes"]["pretrain"] == len(world["pretrain"])
    assert set(s["pretrain"]["persona"]) == {"aligned", "misaligned"}
    assert s["eval"]["eval/honesty/external/mc"]["aligned_option"] == {0: 25, 1: 25}


def test_independent_of_python_hash_seed(world):
    """No salted hash() or set order leaks into the data: another process with another
    PYTHONHASHSEED generates the same records."""
    import hashlib
    import os
    import subprocess
    import sys
    names = ["rl_traits", "probes", "eval/harmful_agentic/internal/agentic"]
    code = ("import hashlib, json, sys; from beneficial.data.world import default_world_config, generate_world; "
            f"s = generate_world(default_world_config('smoke'), {names!r}); "
            "sys.stdout.write(hashlib.sha256(json.dumps(s).encode()).hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mine = hashlib.sha256(json.dumps({k: world[k] for k in names}).encode()).hexdigest()
    assert out.stdout.strip() == mine
