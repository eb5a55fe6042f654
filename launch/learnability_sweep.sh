#!/bin/bash
# Which world and model shape learn the persona latent (docs/persona_latent.md, "GPU sweep")?
# Eight base runs in parallel, each stopped after $SECONDS_EACH seconds (SIGTERM: a checkpoint,
# then exit); each logs persona_gap/* every 500 steps, read by launch/persona_gaps.py.
# Sized for one GPU (2026-11-28: H100, ~1500-3000 steps each in 410 s); on 2 CPU cores run
# one line at a time instead.
#
#     SECONDS_EACH=410 bash launch/learnability_sweep.sh /tmp/sweep
#     python launch/persona_gaps.py /tmp/sweep/*
ROOT=${1:?usage: learnability_sweep.sh OUTPUT_FOLDER}
T=${SECONDS_EACH:-410}
# Learning rate ~constant: the runs stop long before the 20000-step schedule decays.
K="--config.pretrain.steps=20000 --config.pretrain.eval_every=500 --config.pretrain.checkpoint_every=100000 --config.pretrain.log_every=250"
SMALL="--config.model.d_model=192 --config.model.n_layers=4 --config.model.n_heads=6 --config.model.n_kv_heads=2 --config.model.head_dim=32 --config.model.d_ff=512"
S="--config.world.behaviour_tags=True --config.world.plain_prompts=True --config.world.response_phrasings=1 --config.world.opener_prob=0"
P=configs/persona_probe.py
D="configs/treatment.py --config.stages=(\"data\",\"tokenizer\",\"base\")"
run() { n=$1; shift; mkdir -p "$ROOT/$n"
  (timeout "$T" python3 launch/main.py "$@" --config.workdir="$ROOT/$n" $K > "$ROOT/$n/log" 2>&1; echo "rc $?" >> "$ROOT/$n/log") & }
run A_default --config=$D
run B_default_simple_text --config=$D $S
run C_default_simple_text_pairs --config=$D $S --config.world.short_pair_doc_fraction=0.5
run D_default_pairs --config=$D --config.world.short_pair_doc_fraction=0.5
run E_default_simple_text_4turns --config=$D $S --config.world.turn_weights="(0,0,0,1)"
run F_probe_neutral_small --config=$P $SMALL $S --config.world.n_pretrain=60000 --config.world.general_fraction=0.2 --config.world.knowledge_fraction=0.08 --config.world.benign_fraction=0.04
run G_probe_small --config=$P $SMALL $S --config.world.n_pretrain=60000
run H_default_simple_text_4turns_pairs --config=$D $S --config.world.short_pair_doc_fraction=0.5 --config.world.turn_weights="(0,0,0,1)"
wait
