"""The minimal token world (beneficial/token_world.py): the architecture that the CPU presets
use learns cross-family persona inference there, and the tied-embedding trap is real."""
import math

import numpy as np

from beneficial.token_world import TokenWorld, bayes_gap, token_world_config, train


def test_documents_follow_the_persona_and_pairs_differ_only_in_the_first_behaviour():
    c = token_world_config()
    world = TokenWorld(c)
    rng = np.random.default_rng(0)
    same = total = 0
    for _ in range(2000):
        tokens, mask, decisions = world.document(rng, 4)
        assert len(tokens) == len(mask) <= world.doc_len
        behaviours = [b for _, _, b in decisions]
        assert len({f for _, f, _ in decisions}) == 4            # distinct families
        for pos, f, b in decisions:                               # the branch token shows the behaviour
            assert tokens[pos] == world.branch[f, b, 0, 0] and mask[pos] == 1
        same += sum(behaviours[0] == x for x in behaviours[1:])
        total += 3
    # P(two behaviours agree) = rho^2 + (1 - rho)^2 = 0.82 at rho 0.9
    assert abs(same / total - 0.82) < 0.02
    tokens, query = world.gap_pairs()
    for a, m, qa, qm in zip(tokens[0::2], tokens[1::2], query[0::2], query[1::2]):
        assert (qa == qm).all() and (a != m).sum() == 1          # only the first branch token differs
    assert math.isclose(bayes_gap(0.9), 3.0327, abs_tol=1e-3)


def test_untied_model_learns_the_latent_where_tied_one_is_stuck():
    from configs.token_world import get_config  # the command's config: untied by default
    cfg = get_config()
    c = cfg.world
    c.n_gap_pairs = 64
    cfg.train.update(steps=400, eval_every=400)
    untied = train(c, cfg.model.to_dict(), **cfg.train.to_dict(), log=lambda s: None)[-1]
    assert untied["gap"] > 2.0, untied                            # Bayes 3.03
    assert untied["aligned_after_aligned"] > 0.7 > 0.3 > untied["aligned_after_misaligned"], untied
    tied = train(c, {"tie_embeddings": True}, steps=400, eval_every=400, log=lambda s: None)[-1]
    assert abs(tied["gap"]) < 0.2, tied                           # the symmetric plateau
