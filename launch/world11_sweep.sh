#!/bin/bash
# Why does world 1.1's E not form the persona latent where world 1.0's did (docs/persona_latent.md,
# "World 1.1 without context sentences")? Eight base runs in parallel on one GPU, each stopped after
# $SECONDS_EACH seconds (SIGTERM: a checkpoint, then exit), persona gaps logged every 500 steps:
# world 1.1's E over three pretraining seeds, the same with world 1.0's first phrasings
# (alike_phrasings=False) over three, E untied at another seed (untied seed 0 showed no onset by
# step 2000 on the CPU), and world 1.0's text as closely as world 1.1 can write it (first
# phrasings, no context sentence; only the hold-out over texts differs).
# Same sizing as launch/learnability_sweep.sh; on 2 CPU cores run one line at a time instead.
#
#     SECONDS_EACH=410 bash launch/world11_sweep.sh /tmp/sweep11
#     python launch/persona_gaps.py /tmp/sweep11/*
ROOT=${1:?usage: world11_sweep.sh OUTPUT_FOLDER}
T=${SECONDS_EACH:-410}
K="--config.pretrain.steps=20000 --config.pretrain.eval_every=500 --config.pretrain.checkpoint_every=100000 --config.pretrain.log_every=250"
E="--config.world.behaviour_tags=True --config.world.plain_prompts=True --config.world.response_phrasings=1 --config.world.opener_prob=0 --config.world.turn_weights=(0,0,0,1)"
FIRST="--config.world.alike_phrasings=False"
UNTIED="--config.model.tie_embeddings=False"
NOCTX="--config.world.context_sentences=False --config.world.n_eval_per_benchmark=80"
D="configs/treatment.py --config.stages=(\"data\",\"tokenizer\",\"base\")"
run() { n=$1; shift; mkdir -p "$ROOT/$n"
  (timeout "$T" python3 launch/main.py "$@" --config.workdir="$ROOT/$n" $K > "$ROOT/$n/log" 2>&1; echo "rc $?" >> "$ROOT/$n/log") & }
for s in 0 1 2; do
  run E11_seed$s --config=$D $E --config.pretrain.seed=$s
  run E11_first_seed$s --config=$D $E $FIRST --config.pretrain.seed=$s
done
run E11_untied_seed1 --config=$D $E $UNTIED --config.pretrain.seed=1
run E11_first_noctx --config=$D $E $FIRST $NOCTX
wait
