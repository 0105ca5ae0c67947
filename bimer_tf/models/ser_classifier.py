"""Speech emotion recognition (SER): one speech backbone and a softmax head."""

from __future__ import annotations

import keras

from bimer_tf.models.emotion_classifier import EmotionClassifier


@keras.saving.register_keras_serializable(package="bimer_tf")
class SERClassifier(EmotionClassifier):
    """Speech-only emotion classifier: backbone feature -> dropout -> dense softmax.

    The head of BiMER's unimodal speech models (ResNet-CNN: dropout 0.5, then
    the dense classifier). The input is the speech backbone's own input
    (`"log_mel"`, or `"whisper_features"` for the Whisper branch), in a dict
    so that the exported signature and the input pipeline treat every task
    alike. The output is `[batch, num_classes]` probabilities, float32 under
    mixed precision too.

    Args:
        speech_backbone: a `keras.Model` with one named input, returning a
            dict with `"pooled_output"`.
        num_classes: int. Number of emotion classes.
        dropout: float. Dropout before the classifier. Defaults to `0.5`.
        **kwargs: other keyword arguments passed to `keras.Model`, e.g. `name`.
    """

    def __init__(self, speech_backbone, num_classes, dropout=0.5, **kwargs):
        kwargs.setdefault("name", "ser_classifier")

        # === Layers ===
        self.speech_backbone = speech_backbone
        self.classifier_dropout = keras.layers.Dropout(dropout, name="classifier_dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, activation="softmax", dtype="float32", name="probabilities"
        )

        # === Functional Model ===
        speech_input = speech_backbone.input
        features = speech_backbone(speech_input)["pooled_output"]
        outputs = self.output_dense(self.classifier_dropout(features))
        super().__init__(inputs={speech_input.name: speech_input}, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.dropout = dropout

    def head_after_encoder(self, name: str | None = None) -> keras.Model:
        """The classifier from the states its backbone's trained encoder layers
        put out (`SpeechWhisperBackbone.top_encoder`) to probabilities: the
        backbone's pooling and this model's head, sharing their weights.
        ValueError when the backbone has no trained encoder layers."""
        pooling = self.speech_backbone.pooling_head()
        states = keras.Input(shape=pooling.input.shape[1:], name="encoder_states")
        probabilities = self.output_dense(self.classifier_dropout(pooling(states)))
        return keras.Model(states, probabilities, name=name or f"{self.name}_head")

    def head_config(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "dropout": self.dropout,
        }
