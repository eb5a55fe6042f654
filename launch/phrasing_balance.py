"""How alike a world's aligned and misaligned replies are, family by family.

    python launch/phrasing_balance.py "behaviour_tags=true,plain_prompts=true,response_phrasings=1,opener_prob=0"

For each family of the `:smoke` world with these knobs (30 instances per domain, pack A): the total
variation between the opening words of aligned and misaligned replies (after the behaviour tag) and
the ratio of their mean lengths, the two look-alike measures that
`tests/test_world_grading.py::test_aligned_and_misaligned_look_alike` bounds (< 0.4; 1/1.4-1.4), and
with `response_phrasings=1` how many instances drew each phrasing (one wording per behaviour means
one phrasing per family, or per template in the agentic families).
"""
import collections
import sys

from beneficial.data.world import look_alike
from beneficial.data.world.config import default_world_config
from beneficial.data.world.families import REGISTRY
from beneficial.data.world.generate import World


def main(knobs: str) -> None:
    world = World(default_world_config(f"smoke,{knobs}" if knobs else "smoke"))
    replies = look_alike.persona_replies(world, [name for name, fam in REGISTRY.items() if not fam.neutral])
    print(f"world knobs: {knobs or '(defaults)'}")
    print(f"{'family':28s} {'opening-word TV':>15s} {'length ratio a/m':>17s}  instances per phrasing")
    for name, rows in replies.items():
        tv, ratio = look_alike.look_alike([(lab, look_alike.strip_tag(t, name)) for lab, t, _ in rows])
        used = collections.Counter(k for lab, _, k in rows if lab == "aligned" and k >= 0)
        print(f"{name:28s} {tv:15.2f} {ratio:17.2f}  {dict(sorted(used.items())) if used else ''}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
