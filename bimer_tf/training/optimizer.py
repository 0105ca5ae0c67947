"""The optimizer of a run: Adam or AdamW, a constant or warmup + cosine learning
rate, optionally a learning rate per group of variables and a moving average
of the weights.

`trainer.learning_rate_multipliers` maps glob patterns over variable paths
(`keras.Variable.path`, e.g. `transformer_encoder_layer_3/self_attention_layer/
query/kernel`) to a factor on the learning rate: a pretrained encoder layer is
usually fine-tuned at a fraction of the head's rate, and the few logits of a
learned layer weighting need a larger one to move at all. The factor scales
the whole update of a matched variable, Adam's step and AdamW's decoupled
weight decay alike (as a parameter group's learning rate does in PyTorch).
"""

from __future__ import annotations

import fnmatch

import keras

from bimer_tf.config import ExperimentConfig, check_learning_rate_multipliers
from bimer_tf.errors import InputError


def learning_rate(config: ExperimentConfig, steps_per_epoch: int):
    """`trainer.learning_rate`, or its warmup + cosine decay schedule over all steps."""
    t = config.trainer
    if t.lr_schedule == "constant":
        return t.learning_rate
    total = t.epochs * steps_per_epoch
    warmup = int(round(t.warmup_ratio * total))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total - warmup),
        alpha=0.0,
        warmup_target=t.learning_rate,
        warmup_steps=warmup,
    )


def make_optimizer(config: ExperimentConfig, steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    t = config.trainer
    rate = learning_rate(config, steps_per_epoch)
    multipliers = dict(t.learning_rate_multipliers)
    # Keras keeps the average in the optimizer, updated inside the train step
    # (so under a distribution strategy too); `AveragedWeights` swaps it in.
    average = {"use_ema": True, "ema_momentum": t.ema_momentum} if t.ema_momentum > 0 else {}
    if t.optimizer == "adamw":
        if multipliers:
            return ScaledAdamW(multipliers, learning_rate=rate, weight_decay=t.weight_decay, **average)
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=t.weight_decay, **average)
    if t.optimizer == "adam":
        if multipliers:
            return ScaledAdam(multipliers, learning_rate=rate, **average)
        return keras.optimizers.Adam(learning_rate=rate, **average)
    raise InputError(f"unknown trainer.optimizer '{t.optimizer}'; choose adamw or adam")


def rate_factors(paths: list[str], multipliers: dict) -> list[float]:
    """The learning-rate factor of each variable path (1.0 when no pattern
    matches). A pattern that matches no variable, or two patterns with
    different factors on one variable, are errors: either is a typo that
    would otherwise train at the wrong rate without a word."""
    factors = []
    used = set()
    for path in paths:
        matched = {pattern: float(f) for pattern, f in multipliers.items() if fnmatch.fnmatchcase(path, pattern)}
        used.update(matched)
        if len(set(matched.values())) > 1:
            raise InputError(
                f"trainer.learning_rate_multipliers: variable '{path}' is matched by "
                f"{', '.join(sorted(matched))} with different factors; make the patterns disjoint"
            )
        factors.append(next(iter(matched.values()), 1.0))
    unused = [pattern for pattern in multipliers if pattern not in used]
    if unused:
        tops = sorted({path.split("/", 1)[0] for path in paths})
        raise InputError(
            f"trainer.learning_rate_multipliers: {', '.join(repr(p) for p in unused)} matches no trainable "
            f"variable of this model; patterns match whole variable paths (use '*', e.g. 'name/*'); "
            f"the model's trainable layers: {', '.join(tops)}"
        )
    return factors


class _ScaledRates:
    """Mixin for a Keras optimizer whose `update_step` takes the learning rate:
    each variable's update runs at `learning_rate * factor`."""

    def __init__(self, learning_rate_multipliers: dict, **kwargs):
        super().__init__(**kwargs)
        check_learning_rate_multipliers(learning_rate_multipliers)
        self.learning_rate_multipliers = dict(learning_rate_multipliers)
        self._factors = ()
        self._decay_factor = 1.0

    def build(self, variables):
        super().build(variables)
        self._factors = tuple(rate_factors([v.path for v in variables], self.learning_rate_multipliers))

    def _factor(self, variable) -> float:
        return self._factors[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factor(variable)
        if factor != 1.0:
            learning_rate = learning_rate * factor
        return super().update_step(gradient, variable, learning_rate)

    def _get_current_learning_rate(self):
        rate = super()._get_current_learning_rate()
        return rate * self._decay_factor if self._decay_factor != 1.0 else rate

    def _apply_weight_decay(self, variables):
        # The decay reads `self.learning_rate`; run it once per factor with that
        # rate scaled (Python-level, at trace time), so each group decays at its
        # own rate through the optimizer's own (distribution-aware) code.
        if self.weight_decay is None:
            return
        groups: dict[float, list] = {}
        for variable in variables:
            groups.setdefault(self._factor(variable), []).append(variable)
        for factor, group in groups.items():
            self._decay_factor = factor
            try:
                super()._apply_weight_decay(group)
            finally:
                self._decay_factor = 1.0

    def get_config(self):
        return {**super().get_config(), "learning_rate_multipliers": self.learning_rate_multipliers}


@keras.saving.register_keras_serializable(package="bimer_tf")
class ScaledAdam(_ScaledRates, keras.optimizers.Adam):
    """Adam with `trainer.learning_rate_multipliers`."""

    def __init__(self, learning_rate_multipliers: dict, **kwargs):
        super().__init__(learning_rate_multipliers, **kwargs)


@keras.saving.register_keras_serializable(package="bimer_tf")
class ScaledAdamW(_ScaledRates, keras.optimizers.AdamW):
    """AdamW with `trainer.learning_rate_multipliers`."""

    def __init__(self, learning_rate_multipliers: dict, **kwargs):
        super().__init__(learning_rate_multipliers, **kwargs)
