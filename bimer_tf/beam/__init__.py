"""Apache Beam pipelines: the offline data work and batch prediction on many machines.

    python -m bimer_tf.beam.shard   --manifest M [--splits S] [--methods ...] --out DIR [Beam options]
    python -m bimer_tf.beam.predict --saved-model DIR (--manifest M | --inputs GLOB) --output PREFIX

`shard` decodes, augments (the same code and per-clip seeds as
`python -m bimer_tf.data.augment`) and writes the sharded TFRecord format of
`bimer_tf.data.shards`; `predict` runs an export through Beam's RunInference
with `RecognizerModelHandler`, writing the rows of `python -m bimer_tf.predict`.
The embedded runner is the DirectRunner in `multi_processing` mode; other
runners take their usual options (docs/beam.md).

Needs the `beam` extra (`pip install -e '.[beam]'`). Nothing outside this
package imports it, so `import bimer_tf`, training and serving never load
apache_beam.
"""
