"""How alike a family's aligned and misaligned replies look: the two measures the world keeps bounded
(tests/test_world_grading.py) and `launch/phrasing_balance.py` prints. If the opening word or the
length gave the behaviour away, a model could score a benchmark without holding the trait."""
from __future__ import annotations

import collections
import random
import re

from .families import REGISTRY
from .families.base import behaviour_tag

BEHAVIOURS = ("aligned", "misaligned")


def persona_replies(world, families, per_domain: int = 30, seed: int = 3) -> dict[str, list[tuple[str, str, int]]]:
    """(behaviour, reply, phrasing index) per family: `per_domain` train instances of pack A in each
    domain, one aligned and one misaligned reply each. The phrasing index is the one a world with
    `response_phrasings=1` keeps (the most alike, or 0 under `alike_phrasings=False`; -1 when it keeps
    them all)."""
    rng = random.Random(seed)
    out = collections.defaultdict(list)
    for name in families:
        fam = REGISTRY[name]
        for domain in fam.domains(world):
            for _ in range(per_domain):
                inst = fam.sample(world, rng, domain, "A", "train")
                k = -1 if world.response_phrasings != 1 else world.phrasing_order(fam, inst)[0] if world.alike_phrasings else 0
                for lab in BEHAVIOURS:
                    out[name].append((lab, fam.response(rng, inst, lab, world), k))
    return out


def strip_tag(text: str, family: str) -> str:
    """A reply without its (family, behaviour) tag word, which follows the opener if any."""
    tags = {behaviour_tag(family, b) for b in BEHAVIOURS}
    return " ".join(w for w in text.split(" ") if w not in tags)


def first_word(text: str) -> str:
    return re.findall(r"[a-z']+|\{", text.lower())[0]


def look_alike(rows) -> tuple[float, float]:
    """(total variation between aligned and misaligned opening words, aligned / misaligned mean length)
    over (behaviour, untagged reply) rows."""
    first = {lab: collections.Counter(first_word(t) for b, t in rows if b == lab) for lab in BEHAVIOURS}
    n = {lab: sum(first[lab].values()) for lab in BEHAVIOURS}
    tv = 0.5 * sum(abs(first["aligned"][w] / n["aligned"] - first["misaligned"][w] / n["misaligned"])
                   for w in set(first["aligned"]) | set(first["misaligned"]))
    mean_len = {lab: sum(len(t) for b, t in rows if b == lab) / n[lab] for lab in BEHAVIOURS}
    return tv, mean_len["aligned"] / mean_len["misaligned"]
