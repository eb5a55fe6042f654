"""The minimal token-level persona world (beneficial/token_world.py): does a model shape learn
cross-family persona inference? About a minute per run on 2 CPU cores.

    python launch/token_world.py --config=configs/token_world.py                          # untied (our default)
    python launch/token_world.py --config=configs/token_world.py --config.model.tie_embeddings=True
    python launch/token_world.py --config=configs/token_world.py --config.world.variants=4 \
        --config.world.branch_len=4 --config.world.filler_len=8 --config.world.copy=2 --config.world.openers=4
"""
import ml_collections

from beneficial.token_world import token_world_config


def get_config():
    c = ml_collections.ConfigDict()
    c.world = token_world_config()
    # Overrides of the `tiny` preset (d=64, 2 layers, 4 heads): the shape WORLD.md's evidence used.
    c.model = ml_collections.ConfigDict(dict(tie_embeddings=False))
    c.train = ml_collections.ConfigDict(dict(steps=1500, batch_size=32, lr=3e-3, warmup_steps=100,
                                             weight_decay=0.01, seed=0, eval_every=250))
    return c
