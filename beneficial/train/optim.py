"""AdamW with linear warmup then a cosine, linear, constant or warmup-stable-decay ("wsd") learning
rate, and global-norm clipping."""
import jax
import optax

DECAYS = ("cosine", "linear", "constant", "wsd")


def learning_rate_schedule(lr: float, total_steps: int, warmup_steps: int, decay: str = "cosine",
                           final_fraction: float = 0.1, cooldown_fraction: float = 0.2):
    """"wsd" holds lr, then decays linearly to lr * final_fraction over the last cooldown_fraction of
    the steps: a run learns at full rate for as long as it can and still ends on a settled model."""
    if decay not in DECAYS:
        raise ValueError(f"decay={decay!r}; use one of {DECAYS}")
    if decay == "wsd" and not 0 < cooldown_fraction <= 1:
        raise ValueError(f"cooldown_fraction={cooldown_fraction!r}; use a fraction in (0, 1]")
    warmup = optax.linear_schedule(0.0, lr, max(warmup_steps, 1))
    rest = max(total_steps - warmup_steps, 1)
    if decay == "cosine":
        after = optax.cosine_decay_schedule(lr, rest, alpha=final_fraction)
    elif decay == "linear":
        after = optax.linear_schedule(lr, lr * final_fraction, rest)
    elif decay == "wsd":
        cooldown = min(max(int(round(total_steps * cooldown_fraction)), 1), rest)
        after = optax.join_schedules([optax.constant_schedule(lr),
                                      optax.linear_schedule(lr, lr * final_fraction, cooldown)],
                                     [rest - cooldown])
    else:
        after = optax.constant_schedule(lr)
    return optax.join_schedules([warmup, after], [max(warmup_steps, 1)])


def make_optimizer(opt, total_steps: int):
    """`opt` is a config section with lr, warmup_steps, decay, final_lr_fraction, cooldown_fraction,
    weight_decay, b1, b2, eps, clip_norm. Weight decay applies to matrices only."""
    schedule = learning_rate_schedule(opt.lr, total_steps, opt.warmup_steps, opt.decay,
                                      opt.final_lr_fraction, opt.cooldown_fraction)
    decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
    tx = optax.chain(
        optax.clip_by_global_norm(opt.clip_norm),
        optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                    mask=decay_mask),
    )
    return tx, schedule


def optimizer_config(lr=1e-3, warmup_steps=100, decay="cosine", final_lr_fraction=0.1,
                     cooldown_fraction=0.2, weight_decay=0.01, b1=0.9, b2=0.95, eps=1e-8, clip_norm=1.0):
    import ml_collections
    return ml_collections.ConfigDict(dict(lr=lr, warmup_steps=warmup_steps, decay=decay,
                                          final_lr_fraction=final_lr_fraction,
                                          cooldown_fraction=cooldown_fraction, weight_decay=weight_decay,
                                          b1=b1, b2=b2, eps=eps, clip_norm=clip_norm))
