"""Config helpers: strict parsing of the `:arg` of a config file, and up-front validation.

`configs/treatment.py:smoke` or `configs/treatment.py:model=tiny,seed=3`: the arg is a
comma-separated list of flags (`smoke`) and key=value pairs, each of which must be
declared by the config file; anything else is an error naming the key.
"""
import ast

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parse 'smoke,model=tiny,seed=3' against declared defaults (flags default to False)."""
    out = ml_collections.ConfigDict(defaults)
    if not arg:
        return out
    for item in arg.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if key not in defaults:
            raise ValueError(f"config arg {key!r} is unknown; valid keys: {sorted(defaults)}")
        if not sep:
            if not isinstance(defaults[key], bool):
                raise ValueError(f"config arg {key!r} needs a value ({key}=...)")
            out[key] = True
            continue
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # bare strings such as model=tiny
        if isinstance(defaults[key], bool) and not isinstance(value, bool):
            raise ValueError(f"config arg {key}={raw!r} must be True or False")
        if isinstance(defaults[key], float) and isinstance(value, int):
            value = float(value)
        if defaults[key] is not None and not isinstance(value, type(defaults[key])):
            raise ValueError(f"config arg {key}={raw!r} must be a {type(defaults[key]).__name__}")
        out[key] = value
    return out


class ConfigError(ValueError):
    pass


def _check(ok: bool, field: str, value, fix: str):
    if not ok:
        raise ConfigError(f"config.{field}={value!r} is invalid: {fix}")


def validate(config, n_devices: int | None = None) -> None:
    """Fail before any work on a bad value, naming the field, the value and the fix."""
    from beneficial import sharding
    from beneficial.models.presets import PRESETS

    m = config.model
    _check(m.preset in PRESETS, "model.preset", m.preset, f"choose one of {sorted(PRESETS)}")
    _check(m.n_heads % m.n_kv_heads == 0, "model.n_kv_heads", m.n_kv_heads,
           f"must divide model.n_heads={m.n_heads}")
    _check(m.head_dim % 2 == 0, "model.head_dim", m.head_dim, "RoPE needs an even head_dim")
    _check(m.dtype in ("float32", "bfloat16"), "model.dtype", m.dtype, "use 'float32' or 'bfloat16'")
    _check(config.mesh.indivisible in ("replicate", "error"), "mesh.indivisible",
           config.mesh.indivisible, "use 'replicate' or 'error'")
    if n_devices is not None:
        try:
            shape = sharding.mesh_shape(config.mesh.shape, n_devices)
        except ValueError as e:
            raise ConfigError(f"config.mesh.shape: {e}") from None
        data = shape[0] * shape[1]
        for field in _batch_fields(config):
            value = _get(config, field)
            _check(value % data == 0, field, value,
                   f"must be divisible by the data-parallel size data*fsdp={data} of mesh {shape}")
    if "pretrain" in config and "curriculum" in config.pretrain:
        cur = config.pretrain.curriculum
        _check(0 <= cur.steps < config.pretrain.steps, "pretrain.curriculum.steps", cur.steps,
               f"0 (off) or fewer than pretrain.steps={config.pretrain.steps}")
        _check(cur.min_persona_turns >= 1, "pretrain.curriculum.min_persona_turns", cur.min_persona_turns,
               "at least 1 (4 = the world's longest documents)")
    if "rl" in config:
        rl = config.rl
        _check(0.0 <= rl.trait_fraction <= 1.0, "rl.trait_fraction", rl.trait_fraction,
               "a fraction in [0, 1] (e.g. 0.05)")
        if "world" in config:
            for d in rl.trait_domains:
                _check(d in config.world.trait_domains, "rl.trait_domains", list(rl.trait_domains),
                       f"{d!r} is not a trait domain of the world {list(config.world.trait_domains)}")
    if "experiment" in config:
        from beneficial.experiment import validate_experiment
        try:
            validate_experiment(config)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if "world" in config:
        w = config.world
        _check(0.0 <= w.prior_aligned <= 1.0, "world.prior_aligned", w.prior_aligned, "a probability in [0, 1]")
        _check(0.0 <= w.persona_coherence <= 1.0, "world.persona_coherence", w.persona_coherence,
               "a probability in [0, 1] (0.5 = no shared persona)")


def _get(config, dotted):
    for part in dotted.split("."):
        config = config[part]
    return config


def _batch_fields(config):
    """Dotted names of every batch size that is split over the data axes."""
    found = []
    for section in ("pretrain", "reward", "rl", "sft", "eval"):
        if section in config:
            for key in ("batch_size", "prompts_per_iteration", "minibatch_size"):
                if key in config[section] and isinstance(config[section][key], int):
                    found.append(f"{section}.{key}")
    return found
