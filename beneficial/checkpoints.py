"""Orbax checkpoints of a training run: the state pytree (params, optimizer, step, RNG,
anything else the loop keeps) plus the data iterator's state, so that a resumed run
continues exactly where it stopped. Restores go straight into the target shardings."""
import base64
import logging
import pathlib

import jax
import orbax.checkpoint as ocp

log = logging.getLogger("beneficial")


def encode_iter_state(state):
    # Grain iterators give a dict (dataset API) or bytes (DataLoader); JSON holds either.
    if isinstance(state, bytes):
        return {"__bytes__": base64.b64encode(state).decode()}
    return state


def decode_iter_state(state):
    if isinstance(state, dict) and "__bytes__" in state:
        return base64.b64decode(state["__bytes__"])
    return state


class Checkpointer:
    """A CheckpointManager over {'state': pytree, 'data': iterator state (JSON)}."""

    def __init__(self, directory, max_to_keep: int = 2, save_interval_steps: int = 1):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               save_interval_steps=save_interval_steps)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self):
        return self.manager.latest_step()

    def save(self, step: int, state, data_state=None, force: bool = False, metrics=None) -> bool:
        items = {"state": ocp.args.StandardSave(state)}
        if data_state is not None:
            items["data"] = ocp.args.JsonSave(encode_iter_state(data_state))
        saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        return saved

    def restore(self, abstract_state, step=None, with_data: bool = True):
        """(state, data_state) at `step` (default: latest), placed per abstract_state's shardings."""
        step = self.manager.latest_step() if step is None else step
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if with_data and "data" in self._item_names(step):
            items["data"] = ocp.args.JsonRestore()
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        data = decode_iter_state(out["data"]) if "data" in out and out["data"] is not None else None
        return out["state"], data

    def _item_names(self, step):
        return {p.name for p in (self.directory / str(step)).iterdir() if p.is_dir()}

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_with_shardings(state):
    """ShapeDtypeStructs carrying each array's sharding: the restore target of `state`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
                        if hasattr(x, "sharding") else x, state)
