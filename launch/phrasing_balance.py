"""How alike a world's aligned and misaligned replies are, family by family.

    python launch/phrasing_balance.py "behaviour_tags=true,plain_prompts=true,response_phrasings=1,opener_prob=0"

For each family of the `:smoke` world with these knobs (30 instances per domain, pack A): the total
variation between the opening words of aligned and misaligned replies (after the behaviour tag) and
the ratio of their mean lengths, the two look-alike measures that
`tests/test_world_grading.py::test_aligned_and_misaligned_look_alike` bounds (< 0.4; 0.74-1.36), and
with `response_phrasings=1` how many instances drew each phrasing (one wording per behaviour means
one phrasing per family, or per template in the agentic families).
"""
import collections
import random
import re
import sys

from beneficial.data.world.config import default_world_config
from beneficial.data.world.families import REGISTRY
from beneficial.data.world.families.base import behaviour_tag
from beneficial.data.world.generate import World


def main(knobs: str) -> None:
    world = World(default_world_config(f"smoke,{knobs}" if knobs else "smoke"))
    rng = random.Random(3)
    print(f"world knobs: {knobs or '(defaults)'}")
    print(f"{'family':28s} {'opening-word TV':>15s} {'length ratio a/m':>17s}  instances per phrasing")
    for name, fam in REGISTRY.items():
        if fam.neutral:
            continue
        tags = {behaviour_tag(name, b) for b in ("aligned", "misaligned")}
        rows, used = [], collections.Counter()
        for d in fam.domains(world):
            for _ in range(30):
                inst = fam.sample(world, rng, d, "A", "train")
                if world.response_phrasings == 1:  # world 1.1 (no World.phrasing_order) chose per instance
                    order = (world.phrasing_order(fam, inst) if hasattr(world, "phrasing_order")
                             else fam.balanced_phrasings(inst))
                    used[order[0]] += 1
                for lab in ("aligned", "misaligned"):
                    text = " ".join(w for w in fam.response(rng, inst, lab, world).split(" ") if w not in tags)
                    rows.append((lab, text))
        first = {lab: collections.Counter(re.findall(r"[a-z']+|\{", t.lower())[0] for l, t in rows if l == lab)
                 for lab in ("aligned", "misaligned")}
        na, nm = (sum(first[lab].values()) for lab in ("aligned", "misaligned"))
        tv = 0.5 * sum(abs(first["aligned"][k] / na - first["misaligned"][k] / nm)
                       for k in set(first["aligned"]) | set(first["misaligned"]))
        la = sum(len(t) for l, t in rows if l == "aligned") / na
        lm = sum(len(t) for l, t in rows if l == "misaligned") / nm
        print(f"{name:28s} {tv:15.2f} {la / lm:17.2f}  {dict(sorted(used.items())) if used else ''}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
