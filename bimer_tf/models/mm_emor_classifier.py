"""MM-EMOR: a speech image backbone and a pooled text encoder, concatenated."""

from __future__ import annotations

import keras

from bimer_tf.models.emotion_classifier import EmotionClassifier
from bimer_tf.models.text_pooling import freeze_unused_cls_head, pool_text


@keras.saving.register_keras_serializable(package="bimer_tf")
class MMEMORClassifier(EmotionClassifier):
    """The MM-EMOR fusion head (Adel et al., BDCC 2023).

    The text backbone's token sequence is pooled by `GlobalAveragePooling1D`
    (over real tokens), concatenated with the speech backbone's
    `pooled_output` (MobileNet on the mel + chromagram image in the paper),
    then a dense ReLU layer with an L2 penalty, dropout and a dense softmax.

    Inputs are the speech backbone's own input and the text backbone's
    inputs, as in `BiMERClassifier`; the output is `[batch, num_classes]`
    probabilities, float32 under mixed precision too.

    Args:
        speech_backbone: a `keras.Model` with one named input, returning a
            dict with `"pooled_output"`.
        text_backbone: a `keras_hub.models.RobertaBackbone` (the paper) or
            `BertBackbone`.
        num_classes: int. Number of emotion classes.
        head_units: int. Width of the dense ReLU layer. Defaults to `256`.
        head_l2: float. L2 penalty on that layer's kernel. Defaults to `1e-4`.
        dropout: float. Dropout after it (0.3 in the paper). Defaults to `0.3`.
        **kwargs: other keyword arguments passed to `keras.Model`, e.g. `name`.
    """

    def __init__(
        self,
        speech_backbone,
        text_backbone,
        num_classes,
        head_units=256,
        head_l2=1e-4,
        dropout=0.3,
        **kwargs,
    ):
        kwargs.setdefault("name", "mm_emor_classifier")

        # === Layers ===
        self.speech_backbone = speech_backbone
        self.text_backbone = text_backbone
        freeze_unused_cls_head(text_backbone)
        self.text_pooling_layer = keras.layers.GlobalAveragePooling1D(name="text_mean_pooling")
        self.fusion = keras.layers.Concatenate(name="fusion")
        self.head_dense = keras.layers.Dense(
            head_units,
            activation="relu",
            kernel_regularizer=keras.regularizers.L2(head_l2),
            name="head_dense",
        )
        self.head_dropout = keras.layers.Dropout(dropout, name="head_dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, activation="softmax", dtype="float32", name="probabilities"
        )

        # === Functional Model ===
        speech_input = speech_backbone.input
        text_inputs = text_backbone.input
        inputs = {speech_input.name: speech_input, **text_inputs}
        speech_features = speech_backbone(speech_input)["pooled_output"]
        text = pool_text(text_backbone(text_inputs), text_inputs, "mean", self.text_pooling_layer)
        fused = self.fusion([speech_features, text])
        outputs = self.output_dense(self.head_dropout(self.head_dense(fused)))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.head_units = head_units
        self.head_l2 = head_l2
        self.dropout = dropout

    def head_config(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "head_units": self.head_units,
            "head_l2": self.head_l2,
            "dropout": self.dropout,
        }
