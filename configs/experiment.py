"""The whole experiment in one command: every arm over seeds on the default world, the
treatment/baseline pair on the control world (persona coherence 0.5), persona steering
and fine-tuning resistance for every arm, learning curves, a linear probe of the persona
latent, and the comparison report in <workdir>/report/.

    python launch/main.py --config=configs/experiment.py
    python launch/main.py --config=configs/experiment.py:smoke                 # all of it, tiny
    python launch/main.py --config=configs/experiment.py --config.experiment.fractions='(0,0.01,0.05,0.2)'
    python launch/main.py --config=configs/experiment.py --config.experiment.seeds=5
    python launch/main.py --config=configs/experiment.py --config.experiment.fractions='(0,1.0)' \
        --config.experiment.placebo_fractions='(1.0,)'                   # + placebo at the same fraction

Interrupt it at any moment (Ctrl-C, SIGTERM, kill -9) and rerun the same command: shared
stages are cached, each arm-seed resumes from its last checkpoint, finished evaluations
are read from disk.

The arms are the arm files themselves (treatment.py, baseline.py, health_only.py,
placebo.py): their `rl` fields that define an arm are copied here, so an arm is defined
once.
"""
import importlib

import ml_collections

from beneficial.config import parse_arg
from beneficial.experiment import ARM_FIELDS
from configs.common import ARG_DEFAULTS, get_base_config

ARMS = ("treatment", "baseline", "health_only", "placebo")


def get_config(arg=None):
    a = parse_arg(arg, **ARG_DEFAULTS)
    c = get_base_config(arg)
    c.arm = "experiment"
    c.stages = ("experiment",)
    c.workdir = a.workdir or ("workdir/experiment_smoke" if a.smoke else "workdir/experiment")

    if a.smoke:  # every part of the experiment, small enough for a test (a few minutes on 2 cores)
        c.pretrain.steps, c.pretrain.eval_every, c.reward.steps, c.reward.norm_samples = 60, 60, 30, 16
        c.pretrain.competence.update(n_general=16, n_per_benchmark=1, n_probes=16)
        c.rl.iterations, c.rl.checkpoint_every = 4, 2
        c.eval.update(n_per_benchmark=8, n_general=16, n_benign=16)
        c.eval.steering.n_per_benchmark = 2
        c.eval.finetune.update(steps=(0, 4), n_per_benchmark=2)

    e = c.experiment = ml_collections.ConfigDict()
    e.arms = ml_collections.ConfigDict()
    for name in ARMS:
        rl = importlib.import_module(f"configs.{name}").get_config(arg).rl
        e.arms[name] = {k: (tuple(rl[k]) if isinstance(rl[k], (list, tuple)) else rl[k]) for k in ARM_FIELDS}
    # A trait-fraction sweep replaces the arms: fraction 0 is 'baseline', the others
    # 'fraction_<f>' (treatment with that fraction). () = the arms above.
    e.fractions = ()
    # With a sweep: placebo arms 'placebo_<f>' at these fractions (trait content vs any conversation data).
    e.placebo_fractions = ()
    e.seeds = 2 if a.smoke else 3          # RL seeds per arm (paired across arms)
    e.base_seeds = 1                       # bases (and reward models) trained; RL seed k uses base k % base_seeds
    # The mechanism control: the same pair in a world whose personas do not carry across
    # families; broad generalisation should vanish there.
    e.control_world = True
    e.control_coherence = 0.5
    e.control_arms = ("treatment", "baseline")
    # Learning curves: untargeted aligned rate on a subsample, at these PPO iterations
    # (iteration 0 is the base model).
    e.curve_iterations = (2, 4) if a.smoke else (20, 40, 60)
    e.curve_n_per_benchmark = 4 if a.smoke else 20
    e.curve_formats = ("chat", "multi_turn", "agentic")   # generated formats; () = all
    # Linear probe of the persona latent (beneficial/probe.py).
    e.probe = True
    e.probe_config = c.pretrain.competence.probe  # one knob: the `persona_probe` stage reads it too
    return c
