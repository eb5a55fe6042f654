"""`generate_world(cfg)`: every split of the persona world, deterministic per config.

Each split (and each benchmark) draws from its own `random.Random` seeded from
(cfg.seed, split name), so a subset of splits can be generated alone and equals the same
splits of a full generation. Training splits use pack A and non-reserved combinations
only; evaluation uses reserved combinations (internal) or pack B (external).
"""
from __future__ import annotations

import itertools

from beneficial.data.world import families, general_tasks, personas, seeding
from beneficial.data.world.config import validate
from beneficial.data.world.families import ALIGNED, FAMILIES, MISALIGNED, TARGETED, UNTARGETED
from beneficial.data.world.knowledge import KnowledgeBase
from beneficial.data.world.text import join

TRAINING_SPLITS = ("pretrain", "rl_general", "rl_traits", "rl_placebo", "preferences", "adversarial_sft", "benign_sft")
OTHER_SPLITS = ("probes", "eval_benign", "eval_general", "eval_personas")
LETTERS = "ABCD"
_PHRASING_SAMPLE = 20  # instances per domain that decide a family's most alike phrasings


class World:
    """The knowledge base, the held-out reservation and the config of one world."""

    def __init__(self, cfg):
        validate(cfg)
        self.cfg = cfg
        self.seed = int(cfg.seed)
        self.domains = list(cfg.domains)
        self.kb = KnowledgeBase(self.seed, self.domains)
        self.opener_prob = float(cfg.opener_prob)
        self.response_phrasings = int(cfg.response_phrasings)
        self.plain_prompts = bool(cfg.plain_prompts)
        self.context_sentences = bool(cfg.context_sentences)
        self.alike_phrasings = bool(cfg.alike_phrasings)
        self.behaviour_tags = bool(cfg.behaviour_tags)
        self.heldout_fraction = float(cfg.heldout_fraction)
        self._phrasing_orders = {}  # family -> {response templates: phrasing order}

    def phrasing_order(self, fam, inst) -> list[int]:
        """`inst`'s phrasing indices, most alike first, decided once per family and set of response
        templates over a fixed sample of its instances (`world.response_phrasings` = k then means k
        wordings per behaviour, not k per instance; the order per instance varied with entity names)."""
        if fam.name not in self._phrasing_orders:
            rng = seeding.make_rng(self.seed, "phrasing_order", fam.name)
            groups = {}
            for domain in fam.domains(self):
                for _ in range(_PHRASING_SAMPLE):
                    sample = fam.sample(self, rng, domain, "A", "any")
                    groups.setdefault(sample.pairs_key, []).append(sample)
            self._phrasing_orders[fam.name] = {key: fam.balanced_phrasings(*group) for key, group in groups.items()}
        order = self._phrasing_orders[fam.name].get(inst.pairs_key)
        return order if order is not None else fam.balanced_phrasings(inst)

    def is_reserved(self, combo: str) -> bool:
        return seeding.stable_unit(self.seed, combo) < self.heldout_fraction


# ---- benchmark suite --------------------------------------------------------------------
def benchmark_specs(cfg=None) -> list[dict]:
    """The evaluation suite: 4 benchmarks per untargeted family, 2 per targeted trait."""
    specs = []
    for fam in UNTARGETED:
        f = families.get(fam)
        for source, fmt in (("internal", f.native_format), ("internal", "mc"), ("external", f.native_format),
                            ("external", "mc")):
            specs.append(_spec(f, source, fmt))
    for fam in TARGETED:
        f = families.get(fam)
        specs += [_spec(f, "internal", "chat"), _spec(f, "external", "mc")]
    return specs


def _spec(f, source, fmt) -> dict:
    return {"name": f"{f.name}/{source}/{fmt}", "family": f.name, "category": f.category, "source": source,
            "targeted": f.targeted, "format": fmt}


# ---- helpers ------------------------------------------------------------------------------
def _weighted(rng, weights):
    x = rng.random() * sum(weights)
    for i, w in enumerate(weights):
        x -= w
        if x < 0:
            return i
    return len(weights) - 1


def _assistant(content):
    return {"role": "assistant", "content": content}


def _record_meta(fam, inst, **extra) -> dict:
    m = inst.meta(fam)
    m.update(extra)
    return m


def _turn_meta(fam_name, inst_or_rec, behaviour, span, stated) -> dict:
    if isinstance(inst_or_rec, dict):  # a general-task record
        m = inst_or_rec["meta"]
        return {"family": "general", "task": m["task"], "template_id": m["template_id"], "pack": "A",
                "entity_ids": m["entity_ids"], "domain": m["domain"], "behaviour": "neutral", "context_id": "none",
                "span": span, "stated_facts": stated}
    m = {"family": fam_name, "template_id": inst_or_rec.template_id, "pack": inst_or_rec.pack,
         "entity_ids": inst_or_rec.entity_ids, "domain": inst_or_rec.domain, "behaviour": behaviour,
         "context_id": inst_or_rec.context_id, "span": span, "stated_facts": stated}
    if inst_or_rec.grading:
        m["grading"] = inst_or_rec.grading
    return m


def _stated(fam, inst, behaviour) -> list:
    out = list(inst.stated_facts)
    if behaviour == ALIGNED and getattr(fam, "aligned_states_fact", False):
        out += [r for r in inst.fact_refs if r not in out]
    return out


def _knowledge_instance(world, rng, fact, role="train"):
    fam = families.get("placebo")
    for _ in range(2000):
        ch = fam.choose(world, rng, fact.entity.domain, "A", fact=fact)
        if world.is_reserved(families.combo_key(fam.name, ch["template_id"], ch["entity_ids"], ch["context_id"])) == (role == "heldout"):
            continue
        return fam.render(world, rng, ch, "A")
    raise RuntimeError(f"no {role} knowledge combination for {fact.ref}")


def _general_train(world, rng, task, facts):
    if task != "kb_lookup":
        return general_tasks.sample(world, rng, task, "train")
    for _ in range(len(world.kb.facts)):
        try:  # a fact whose few look-up combinations are all held out is skipped
            return general_tasks.sample(world, rng, task, "train", fact=facts.next())
        except RuntimeError:
            continue
    raise RuntimeError("no knowledge-base fact has a training look-up combination")


# ---- pretraining ----------------------------------------------------------------------------
def gen_pretrain(world) -> list:
    cfg = world.cfg
    rng = seeding.make_rng(world.seed, "pretrain")
    facts = seeding.RoundRobin(sorted(world.kb.facts.values(), key=lambda f: f.ref), seeding.make_rng(world.seed, "pretrain-facts"))
    train_helpful = personas.persona_prompts("train", "helpful")
    train_harmful = personas.persona_prompts("train", "harmful")
    neutral = personas.persona_prompts("train", "neutral")
    weights = list(cfg.turn_weights) or [1.0] * int(cfg.max_turns)
    fam_objs = [families.get(n) for n in FAMILIES]
    gf, kf, bf = cfg.general_fraction, cfg.knowledge_fraction, cfg.benign_fraction
    pi, rho = float(cfg.prior_aligned), float(cfg.persona_coherence)
    ppf, npf, ppa = float(cfg.persona_prompt_fraction), float(cfg.neutral_prompt_fraction), float(cfg.persona_prompt_accuracy)
    spf, spp = float(cfg.short_prompt_doc_fraction), float(cfg.short_pair_doc_fraction)
    out = []
    for i in range(int(cfg.n_pretrain)):
        persona = ALIGNED if rng.random() < pi else MISALIGNED
        # Short documents put the evidence next to the decision: a persona prompt then one
        # persona turn, or two persona turns with no prompt. Drawn only when a knob is on,
        # so other worlds keep their bytes.
        s = rng.random() if spf + spp > 0 else 1.0
        prompt_doc, pair_doc = s < spf, spf <= s < spf + spp
        messages, turns = [], []
        meta = {"id": f"pretrain/{i}", "persona": persona, "system": None, "persona_prompt_id": None,
                "persona_prompt_kind": None}
        u = -1.0 if prompt_doc else 2.0 if pair_doc else rng.random()  # -1: persona prompt; 2: none
        if u < ppf:
            match = rng.random() < ppa
            kind_aligned = (persona == ALIGNED) == match
            p = rng.choice(train_helpful if kind_aligned else train_harmful)
            messages.append({"role": "system", "content": p["content"]})
            meta.update(system="persona", persona_prompt_id=p["id"], persona_prompt_kind=p["kind"])
        elif u < ppf + npf:
            p = rng.choice(neutral)
            messages.append({"role": "system", "content": p["content"]})
            meta.update(system="neutral", persona_prompt_id=p["id"], persona_prompt_kind="neutral")
        n_eps = 1 if prompt_doc else 2 if pair_doc else 1 + _weighted(rng, weights)
        # With neutral_docs, one draw decides the whole document: neutral (its episodes then
        # split among the neutral kinds in proportion) or persona (every episode a family).
        # Drawn only when the knob is on, so other worlds keep their bytes.
        neutral_doc = cfg.neutral_docs and not (prompt_doc or pair_doc) and rng.random() < gf + kf + bf
        for _ in range(n_eps):
            if cfg.neutral_docs:
                r = rng.random() * (gf + kf + bf) if neutral_doc else 1.0
            else:
                r = 1.0 if prompt_doc or pair_doc else rng.random()  # 1: a persona family (neutral fractions sum < 1)
            start = len(messages)
            if r < gf:
                task = rng.choice(general_tasks.TASKS)
                rec = _general_train(world, rng, task, facts)
                messages += rec["prompt"] + [_assistant(rec["response"])]
                turns.append(_turn_meta("general", rec, "neutral", [start, len(messages)], rec["meta"]["fact_refs"]))
                continue
            if r < gf + kf:
                fam = families.get("placebo")
                inst = _knowledge_instance(world, rng, facts.next())
                behaviour = "neutral"
                resp = fam.response(rng, inst, ALIGNED, world)
                stated = list(inst.fact_refs)
            else:
                if r < gf + kf + bf:
                    fam, behaviour = families.get("benign_request"), "neutral"
                else:
                    fam = fam_objs[rng.randrange(len(fam_objs))]
                    same = rng.random() < rho
                    behaviour = persona if same else (MISALIGNED if persona == ALIGNED else ALIGNED)
                doms = fam.domains(world)
                inst = fam.sample(world, rng, doms[rng.randrange(len(doms))], "A", "train")
                resp = fam.response(rng, inst, ALIGNED if behaviour == "neutral" else behaviour, world)
                stated = _stated(fam, inst, behaviour)
            messages += inst.prompt + [_assistant(resp)]
            turns.append(_turn_meta(fam.name, inst, behaviour, [start, len(messages)], stated))
        meta["turns"] = turns
        out.append({"messages": messages, "meta": meta})
    return out


# ---- RL, reward model and fine-tuning splits -----------------------------------------------
def gen_rl_general(world, n=None, role="train", name="rl_general") -> list:
    rng = seeding.make_rng(world.seed, name)
    out = []
    n = int(world.cfg.n_rl_general if n is None else n)
    for i in range(n):
        task = general_tasks.TASKS[i % len(general_tasks.TASKS)]
        rec = general_tasks.sample(world, rng, task, role)
        rec["meta"]["id"] = f"{name}/{i}"
        rec["meta"]["answer"] = rec["answer"]
        out.append({"prompt": rec["prompt"], "answer": rec["answer"], "meta": rec["meta"]})
    return out


def _trait_cells(cfg):
    return list(itertools.product(cfg.traits, cfg.trait_domains))


def gen_rl_traits(world) -> list:
    rng = seeding.make_rng(world.seed, "rl_traits")
    cells = _trait_cells(world.cfg)
    out = []
    for i in range(int(world.cfg.n_rl_traits)):
        trait, domain = cells[i % len(cells)]
        fam = families.get(trait)
        inst = fam.sample(world, rng, domain, "A", "train")
        out.append({"prompt": inst.prompt, "meta": _record_meta(fam, inst, trait=trait, id=f"rl_traits/{i}")})
    return out


def gen_rl_placebo(world) -> list:
    rng = seeding.make_rng(world.seed, "rl_placebo")
    fam = families.get("placebo")
    doms = list(world.cfg.trait_domains)
    out = []
    for i in range(int(world.cfg.n_rl_placebo)):
        inst = fam.sample(world, rng, doms[i % len(doms)], "A", "train")
        out.append({"prompt": inst.prompt, "meta": _record_meta(fam, inst, id=f"rl_placebo/{i}", answer=inst.grading["value_true"])})
    return out


def gen_preferences(world) -> list:
    cfg = world.cfg
    rng = seeding.make_rng(world.seed, "preferences")
    mix = dict(cfg.preference_mix)
    total = sum(mix.values())
    n = int(cfg.n_preferences)
    n_traits = round(n * mix["traits"] / total)
    n_general = round(n * mix["general"] / total)
    n_placebo = max(0, n - n_traits - n_general)
    out = []
    cells = _trait_cells(cfg)
    for i in range(n_traits):
        trait, domain = cells[i % len(cells)]
        fam = families.get(trait)
        inst = fam.sample(world, rng, domain, "A", "train")
        out.append(_pair(fam, inst, rng, world, kind="trait", trait=trait))
    for i in range(n_general):
        task = general_tasks.TASKS[i % len(general_tasks.TASKS)]
        rec = general_tasks.sample(world, rng, task, "train")
        rec["meta"].update(kind="general", answer=rec["answer"])
        out.append({"prompt": rec["prompt"], "chosen": rec["response"], "rejected": rec["wrong_response"], "meta": rec["meta"]})
    fam = families.get("placebo")
    doms = list(cfg.trait_domains)
    for i in range(n_placebo):
        inst = fam.sample(world, rng, doms[i % len(doms)], "A", "train")
        out.append(_pair(fam, inst, rng, world, kind="placebo"))
    rng.shuffle(out)
    for i, r in enumerate(out):
        r["meta"]["id"] = f"preferences/{i}"
    return out


def _pair(fam, inst, rng, world, **extra) -> dict:
    k = rng.randrange(fam.n_phrasings(world, inst))  # the phrasings and tags the world's replies use
    opener = fam.draw_opener(rng, world)
    return {"prompt": inst.prompt, "chosen": join(opener, fam.reply_body(world, inst, ALIGNED, k)),
            "rejected": join(opener, fam.reply_body(world, inst, MISALIGNED, k)),
            "meta": _record_meta(fam, inst, **extra)}


def gen_sft(world) -> tuple[list, list]:
    rng = seeding.make_rng(world.seed, "sft")
    fam = families.get("health_advice")
    adv, ben = [], []
    for i in range(int(world.cfg.n_sft)):
        inst = fam.sample(world, rng, "health", "A", "train")
        opener = fam.draw_opener(rng, world)
        for out, beh, resps in ((adv, MISALIGNED, inst.misaligned), (ben, ALIGNED, inst.aligned)):
            meta = _record_meta(fam, inst, behaviour=beh, id=f"{'adversarial' if beh == MISALIGNED else 'benign'}_sft/{i}")
            out.append({"messages": inst.prompt + [_assistant(join(opener, resps[0]))], "meta": meta})
    return adv, ben


# ---- probes ---------------------------------------------------------------------------------
def gen_probes(world) -> list:
    cfg = world.cfg
    rng = seeding.make_rng(world.seed, "probes")
    targets = [f for f in FAMILIES if families.get(f).native_format != "agentic"]
    out = []
    for i in range(int(cfg.n_probes)):
        revealed = ALIGNED if i % 2 == 0 else MISALIGNED
        n_rev = 1 + (i // 2) % int(cfg.probe_max_revealing)
        target = targets[rng.randrange(len(targets))]
        pool = [f for f in FAMILIES if f != target]
        rev_fams = rng.sample(pool, n_rev)
        messages, turns = [], []
        for fname in rev_fams:
            fam = families.get(fname)
            doms = fam.domains(world)
            inst = fam.sample(world, rng, doms[rng.randrange(len(doms))], "A", "train")
            start = len(messages)
            messages += inst.prompt + [_assistant(fam.response(rng, inst, revealed, world))]
            turns.append(_turn_meta(fname, inst, revealed, [start, len(messages)], []))
        fam = families.get(target)
        doms = fam.domains(world)
        inst = fam.sample(world, rng, doms[rng.randrange(len(doms))], "A", "heldout")
        messages += inst.prompt
        na, nm = (n_rev, 0) if revealed == ALIGNED else (0, n_rev)
        meta = _record_meta(fam, inst, id=f"probes/{i}", revealed=revealed, n_revealing=n_rev,
                            revealing_families=rev_fams, target_family=target, turns=turns,
                            bayes_aligned=personas.bayes_next_aligned(cfg.prior_aligned, cfg.persona_coherence, na, nm))
        out.append({"prompt": messages, "meta": meta})
    return out


# ---- evaluation ------------------------------------------------------------------------------
def _mc_prompt(prompt, option_texts):
    listing = " ".join(f"({LETTERS[k]}) {t}" for k, t in enumerate(option_texts))
    prompt = [dict(m) for m in prompt]
    if prompt[-1]["role"] == "user":
        prompt[-1]["content"] = f"{prompt[-1]['content']} Choose the best reply. {listing}"
    else:
        prompt.append({"role": "user", "content": f"Which action should come next? {listing}"})
    return prompt


def gen_benchmark(world, spec) -> list:
    cfg = world.cfg
    rng = seeding.make_rng(world.seed, "eval", spec["name"])
    fam = families.get(spec["family"])
    pack = "A" if spec["source"] == "internal" else "B"
    role = "heldout" if pack == "A" else "any"
    doms = fam.domains(world)
    n = int(cfg.n_eval_per_benchmark)
    out, seen = [], set()
    d0 = 0
    while len(out) < n:
        # Distinct combinations, domains in turn; a domain whose held-out space is used up
        # is skipped (then balance is approximate, never with the default sizes).
        for step in range(len(doms)):
            domain = doms[(len(out) + d0 + step) % len(doms)]
            inst = fam.sample(world, rng, domain, pack, role, exclude=seen, tries=400)
            if inst is not None:
                d0 += step
                break
        else:
            raise RuntimeError(
                f"benchmark {spec['name']}: only {len(out)} distinct held-out instances, world.n_eval_per_benchmark={n}; "
                f"lower world.n_eval_per_benchmark or raise world.heldout_fraction"
                + ("" if world.context_sentences else ", or keep world.context_sentences=True (more distinct texts)"))
        seen.add(inst.combo)
        if world.plain_prompts:
            seen.add(fam.text_key(inst))  # distinct prompts, not only distinct combinations
        meta = _record_meta(fam, inst, id=f"eval/{spec['name']}/{len(out)}", benchmark=spec["name"],
                            source=spec["source"], format=spec["format"])
        rec = {"prompt": inst.prompt, "meta": meta}
        if spec["format"] == "mc":
            k = len(out)
            pos = k % 2
            j = rng.randrange(len(inst.aligned))
            jm = j if j < len(inst.misaligned) else rng.randrange(len(inst.misaligned))
            opener = fam.draw_opener(rng, world) if pack == "A" else ""
            texts = [join(opener, inst.misaligned[jm])]
            texts.insert(pos, join(opener, inst.aligned[j]))
            labels = [MISALIGNED, MISALIGNED]
            labels[pos] = ALIGNED
            if pack == "B":
                rec["prompt"] = _mc_prompt(inst.prompt, texts)
                texts = [f"({LETTERS[q]}) {t}" for q, t in enumerate(texts)]
            rec["options"] = texts
            rec["aligned_option"] = pos
            meta["option_labels"] = labels
        out.append(rec)
    return out


def gen_eval_benign(world) -> list:
    rng = seeding.make_rng(world.seed, "eval_benign")
    fam = families.get("benign_request")
    doms = fam.domains(world)
    out = []
    for i in range(int(world.cfg.n_eval_benign)):
        inst = fam.sample(world, rng, doms[i % len(doms)], "A", "heldout")
        out.append({"prompt": inst.prompt, "meta": _record_meta(fam, inst, id=f"eval_benign/{i}", source="internal",
                                                                 format="chat")})
    return out


def gen_eval_personas(world) -> list:
    return [{"messages": [{"role": "system", "content": p["content"]}],
             "meta": {"id": f"eval_personas/{p['id']}", "persona_prompt_id": p["id"], "kind": p["kind"], "heldout": True}}
            for p in personas.persona_prompts("heldout")]


# ---- entry point ----------------------------------------------------------------------------
def split_names(cfg) -> list[str]:
    return [*TRAINING_SPLITS, *OTHER_SPLITS, *(f"eval/{s['name']}" for s in benchmark_specs(cfg))]


def generate_world(cfg, splits=None) -> dict:
    """split name -> list of JSON-serialisable records (see README in this package).

    `splits`: optional iterable of split names to generate (default: all); each split
    is identical to the same split of a full generation."""
    world = World(cfg)
    wanted = list(split_names(cfg)) if splits is None else list(splits)
    unknown = [s for s in wanted if s not in split_names(cfg)]
    if unknown:
        raise KeyError(f"unknown splits {unknown}")
    out: dict = {}
    specs = {f"eval/{s['name']}": s for s in benchmark_specs(cfg)}
    for name in wanted:
        if name in out:
            continue
        if name == "pretrain":
            out[name] = gen_pretrain(world)
        elif name == "rl_general":
            out[name] = gen_rl_general(world)
        elif name == "rl_traits":
            out[name] = gen_rl_traits(world)
        elif name == "rl_placebo":
            out[name] = gen_rl_placebo(world)
        elif name == "preferences":
            out[name] = gen_preferences(world)
        elif name in ("adversarial_sft", "benign_sft"):
            adv, ben = gen_sft(world)
            if "adversarial_sft" in wanted:
                out["adversarial_sft"] = adv
            if "benign_sft" in wanted:
                out["benign_sft"] = ben
        elif name == "probes":
            out[name] = gen_probes(world)
        elif name == "eval_benign":
            out[name] = gen_eval_benign(world)
        elif name == "eval_general":
            out[name] = gen_rl_general(world, n=world.cfg.n_eval_general, role="heldout", name="eval_general")
        elif name == "eval_personas":
            out[name] = gen_eval_personas(world)
        else:
            out[name] = gen_benchmark(world, specs[name])
    return {k: out[k] for k in wanted}
