"""The base of the task models: how a classifier over backbones is saved and rebuilt."""

from __future__ import annotations

import keras

BACKBONE_ARGUMENTS = ("speech_backbone", "text_backbone")


class EmotionClassifier(keras.Model):
    """A classifier whose constructor takes its backbones and rebuilds the graph.

    `get_config()` is not chained to the functional model's: it serialises the
    backbones the task holds (`speech_backbone` and/or `text_backbone`) and
    the head's own arguments, which a subclass lists in `head_config()`;
    `from_config()` deserialises the backbones and calls the constructor.
    """

    def head_config(self) -> dict:
        """The constructor arguments other than the backbones, `name` and `trainable`."""
        raise NotImplementedError

    def get_config(self):
        config = {
            key: keras.saving.serialize_keras_object(getattr(self, key))
            for key in BACKBONE_ARGUMENTS
            if hasattr(self, key)
        }
        config.update(self.head_config())
        config.update({"name": self.name, "trainable": self.trainable})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in BACKBONE_ARGUMENTS:
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
