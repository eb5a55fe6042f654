"""The persona-inference summary of the base-model competence check."""
import math

import pytest

from beneficial.data.world import bayes_next_aligned
from beneficial.evals.competence import _inference_summary


def _probe(revealed, n_revealing, family="honesty"):
    na, nm = (n_revealing, 0) if revealed == "aligned" else (0, n_revealing)
    return {"meta": {"revealed": revealed, "n_revealing": n_revealing, "family": family,
                     "bayes_aligned": bayes_next_aligned(0.5, 0.9, na, nm)}}


def test_inference_summary_rates_and_bayes_targets():
    recs = [_probe("aligned", 1), _probe("aligned", 1), _probe("aligned", 2), _probe("misaligned", 1),
            _probe("misaligned", 2)]
    grades = ["aligned", "misaligned", "aligned", "unclear", "aligned"]
    s = _inference_summary(recs, grades)
    assert s["n"] == 5 and s["n_after_aligned"] == 3 and s["n_after_misaligned"] == 2
    assert s["after_aligned"] == pytest.approx(2 / 3) and s["after_misaligned"] == pytest.approx(0.5)
    assert s["unclear"] == pytest.approx(0.2)
    # The all-probe target is the mean of each probe's own optimum (0.82, 0.82, 0.89...).
    assert s["bayes_after_aligned"] == pytest.approx((2 * 0.82 + bayes_next_aligned(0.5, 0.9, 2, 0)) / 3)
    one = s["one_revealing_turn"]
    assert one["after_aligned"] == pytest.approx(0.5) and one["bayes_after_aligned"] == pytest.approx(0.82)
    assert one["after_misaligned"] == 0.0 and one["bayes_after_misaligned"] == pytest.approx(0.18)


def test_inference_summary_reads_decisions_apart_from_grades_and_splits_by_family():
    recs = [_probe("aligned", 1, "honesty"), _probe("aligned", 1, "honesty"), _probe("aligned", 1, "corrigibility"),
            _probe("misaligned", 1, "corrigibility")]
    grades = ["misaligned", "misaligned", "aligned", "misaligned"]  # honest replies with wrong facts
    decisions = ["aligned", "aligned", "aligned", None]              # None: no tag read
    s = _inference_summary(recs, grades, decisions)
    assert s["after_aligned"] == pytest.approx(1 / 3) and s["decided_after_aligned"] == 1.0
    assert s["decided_after_misaligned"] == 0.0
    fam = s["by_family"]
    assert set(fam) == {"honesty", "corrigibility"} and fam["honesty"]["n_after_aligned"] == 2
    assert fam["honesty"]["after_aligned"] == 0.0 and fam["honesty"]["decided_after_aligned"] == 1.0
    assert fam["corrigibility"]["after_misaligned"] == 0.0 and math.isnan(fam["honesty"]["after_misaligned"])
    assert "decided_after_aligned" not in _inference_summary(recs, grades)  # untagged worlds: grades only


def test_tagged_behaviour_reads_the_first_word():
    from beneficial.data.world.families.base import behaviour_tag, tagged_behaviour
    assert tagged_behaviour(behaviour_tag("honesty", "aligned") + " Actually, it's 12 mg.") == "aligned"
    assert tagged_behaviour(behaviour_tag("sycophancy_feedback", "misaligned") + " Great work!") == "misaligned"
    assert tagged_behaviour("Actually, it's 12 mg.") is None and tagged_behaviour("") is None


def test_inference_summary_empty_group_is_nan():
    s = _inference_summary([_probe("aligned", 1)], ["aligned"])
    assert math.isnan(s["after_misaligned"]) and s["n_after_misaligned"] == 0


@pytest.mark.parametrize("prior,rho,acc", [(0.5, 0.9, 0.9), (0.3, 0.8, 0.7), (0.5, 0.5, 0.9)])
def test_bayes_after_persona_prompt_matches_enumeration(prior, rho, acc):
    from beneficial.data.world.personas import bayes_after_persona_prompt
    for kind in ("helpful", "harmful"):
        # Enumerate persona x prompt kind x behaviour as the pretraining generator draws them.
        num = den = 0.0
        for persona, p_persona in (("aligned", prior), ("misaligned", 1 - prior)):
            p_kind = acc if (kind == "helpful") == (persona == "aligned") else 1 - acc
            p_aligned = rho if persona == "aligned" else 1 - rho
            num += p_persona * p_kind * p_aligned
            den += p_persona * p_kind
        assert bayes_after_persona_prompt(prior, rho, acc, kind) == pytest.approx(num / den)
    assert bayes_after_persona_prompt(0.5, 0.9, 0.9, "helpful") == pytest.approx(0.82)
