"""tf.distribute strategy set-up and the Keras 3 multi-worker workarounds."""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from bimer_tf.errors import InputError


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by `runtime.strategy`."""
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise InputError("runtime.strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise InputError(
        f"unknown runtime.strategy '{name}'; choose auto, mirrored, multi_worker or default"
    )


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory.

    True except on the non-chief workers of a multi-worker cluster: the chief
    is the `chief` task if TF_CONFIG names one, otherwise worker 0.
    """
    resolver = strategy.cluster_resolver
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def patch_keras_distributed(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Works around two Keras 3 `fit` failures with more than one replica, on `model` only.

    1. Before the first step, Keras builds the metrics from one input batch that
       it gets by MEAN-reducing a distributed batch across replicas. That fails
       on our inputs: across workers `Strategy.reduce` takes one tensor, so dict
       features fail with "Attempt to convert a value ({'log_mel':
       PerReplica...}) ... to a Tensor" (keras-team/keras#20329); on one machine
       with several devices (MirroredStrategy) the sum behind the mean fails on
       the tokenizer's boolean `padding_mask` ("Value for attr 'T' of bool is
       not in the list of allowed values ... AddN"). The build needs shapes
       only: it now gets this worker's first local replica batch, with no
       cross-replica communication.
    2. Across workers only, each step's logs are averaged with
       `strategy.reduce("MEAN", log, axis=0)`, which fails on scalars with
       "Invalid reduction dimension 0 for input with 0 dimensions"
       (tensorflow/tensorflow#72388). The steps now return their logs with a
       leading axis of one, the axis that reduction averages over.

    One replica takes Keras' plain path and is left alone.
    """
    if strategy.num_replicas_in_sync == 1:
        return
    symbolic_build = model._maybe_symbolic_build

    def build_from_local_replica(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], next(batches)
                )
                break
        symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = build_from_local_replica
    if strategy.num_replicas_in_sync == len(strategy.extended.worker_devices):
        return  # one machine: Keras' single-machine log reduction works

    def with_leading_axis(step):
        return lambda data: tf.nest.map_structure(lambda log: tf.expand_dims(log, 0), step(data))

    model.train_step = with_leading_axis(model.train_step)
    model.test_step = with_leading_axis(model.test_step)
