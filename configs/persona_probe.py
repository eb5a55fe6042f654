"""Learnability probe: does a model and budget learn cross-family persona inference at all?

Trains only the base, on the densest cross-family evidence the world makes (every document
four persona turns, no system prompt, no neutral turns: three of four decisions follow
evidence), with the fast CPU model of docs/persona_latent.md, and logs `persona_gap/*` at
every evaluation (Bayes-optimal cross-family gap: 3.03 nats). A model or budget that does not
learn the latent here will not learn it from the default corpus. Run 3 of
docs/persona_latent.md is this config; run 4 adds `--config.pretrain.batch_size=4
--config.pretrain.steps=6000 --config.pretrain.eval_every=750
--config.pretrain.log_every=100`.

    python launch/main.py --config=configs/persona_probe.py
    python launch/main.py --config=configs/persona_probe.py --config.pretrain.steps=6000
"""
from beneficial.config import parse_arg
from configs.common import ARG_DEFAULTS, get_base_config


def get_config(arg=None):
    c = get_base_config(arg)
    c.arm = "persona_probe"
    c.stages = ("data", "tokenizer", "base")
    w = c.world
    w.general_fraction = w.knowledge_fraction = w.benign_fraction = 0.0
    w.persona_prompt_fraction = w.neutral_prompt_fraction = 0.0
    w.turn_weights = (0.0, 0.0, 0.0, 1.0)
    if not parse_arg(arg, **ARG_DEFAULTS).smoke:
        w.n_pretrain = 100_000
        c.model.update(d_model=128, n_layers=2, n_heads=4, d_ff=384)
        c.pretrain.steps = 3000
        c.pretrain.eval_every = 250
        comp = c.pretrain.competence
        comp.n_per_benchmark, comp.n_probes, comp.n_general = 5, 100, 50
    return c
