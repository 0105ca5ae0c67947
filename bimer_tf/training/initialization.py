"""Starting a model's branches from finished runs (`model.init`).

The BiMER paper builds its bimodal model on its unimodal ones: the speech
branch of a finished `ser_*` run and the text branch of a finished `ter_*`
run are copied into the new model before training. Any finished run whose
model has the branch works (a `bimer` run can seed another `bimer`).
"""

from __future__ import annotations

from pathlib import Path

from bimer_tf.errors import InputError
from bimer_tf.training.run_dir import BEST_CHECKPOINT, check_finished_run, load_best_model, read_run_config

# model.init field -> (model attribute holding the branch, config section that
# must match, a model that trains such a branch alone)
BRANCHES = {
    "speech": ("speech_backbone", "speech", "ser_resnet_crnn_at"),
    "text": ("text_backbone", "text", "ter_bert"),
}


def initialize_from_runs(model, config):
    """Copies the branch weights named by `config.model.init` into `model`; returns it."""
    for branch, run in (("speech", config.model.init.speech), ("text", config.model.init.text)):
        if run is not None:
            copy_branch(model, branch, Path(run), config)
    return model


def copy_branch(model, branch: str, run_dir: Path, config) -> None:
    attribute, section, example = BRANCHES[branch]
    key = f"model.init.{branch}"
    target = getattr(model, attribute, None)
    if target is None:
        raise InputError(f"{key}={run_dir}: a '{config.model.type}' model has no {branch} branch")
    check_finished_run(run_dir, what=key, example=example)
    theirs = getattr(read_run_config(run_dir).model, section).type
    ours = getattr(config.model, section).type
    if theirs != ours:
        raise InputError(f"{key}={run_dir} has a {theirs} {branch} branch; this model's is {ours}")
    source = getattr(load_best_model(run_dir), attribute, None)
    if source is None:
        raise InputError(f"{key}={run_dir}: that run's model has no {branch} branch")
    ours_shapes = [tuple(w.shape) for w in target.weights]
    theirs_shapes = [tuple(w.shape) for w in source.weights]
    if ours_shapes != theirs_shapes:
        raise InputError(
            f"{key}={run_dir}: its {branch} branch has other sizes than this config's "
            f"({len(theirs_shapes)} weights there, {len(ours_shapes)} here); "
            f"use the same model.{section} and audio/text settings as that run"
        )
    target.set_weights(source.get_weights())
    print(f"{branch} branch initialised from {run_dir / BEST_CHECKPOINT} ({len(ours_shapes)} weights)")
