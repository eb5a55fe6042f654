"""Cross-family persona inference on the minimal token world; prints the gap as it trains.

    python launch/token_world.py --config=configs/token_world.py [--config.model.tie_embeddings=True]
"""
import pathlib
import sys

from absl import app
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/token_world.py", lock_config=True)


def main(argv):
    del argv
    from beneficial.token_world import train

    c = _CONFIG.value
    print(f"world {c.world.to_dict()}\nmodel overrides of `tiny`: {c.model.to_dict()}\ntrain {c.train.to_dict()}", flush=True)
    train(c.world, c.model.to_dict(), **c.train.to_dict(), log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    app.run(main)
