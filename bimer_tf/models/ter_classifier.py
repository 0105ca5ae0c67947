"""Text emotion recognition (TER): a fine-tuned BERT-style encoder and a softmax head."""

from __future__ import annotations

import keras

from bimer_tf.models.emotion_classifier import EmotionClassifier
from bimer_tf.models.text_pooling import check_text_pooling, freeze_unused_cls_head, pool_text


@keras.saving.register_keras_serializable(package="bimer_tf")
class TERClassifier(EmotionClassifier):
    """Text-only emotion classifier: encoder -> pooling -> dropout -> dense softmax.

    BiMER's text model (BERT, dropout, a dense classifier; fine-tuned with
    Adam at 2e-5). Inputs are the text backbone's own inputs as made by
    `bimer_tf.models.build_text_preprocessor`; the output is `[batch,
    num_classes]` probabilities, float32 under mixed precision too.

    Args:
        text_backbone: a `keras_hub.models.BertBackbone` or `RobertaBackbone`.
        num_classes: int. Number of emotion classes.
        text_pooling: `"mean"` (mean of the token sequence over real tokens)
            or `"cls"` (BERT's `pooled_output`; RoBERTa's first token).
            Defaults to `"mean"`.
        dropout: float. Dropout before the classifier. Defaults to `0.1`.
        **kwargs: other keyword arguments passed to `keras.Model`, e.g. `name`.
    """

    def __init__(self, text_backbone, num_classes, text_pooling="mean", dropout=0.1, **kwargs):
        kwargs.setdefault("name", "ter_classifier")
        check_text_pooling(text_pooling)

        # === Layers ===
        self.text_backbone = text_backbone
        if text_pooling == "mean":
            freeze_unused_cls_head(text_backbone)
        self.text_pooling_layer = keras.layers.GlobalAveragePooling1D(name="text_mean_pooling")
        self.classifier_dropout = keras.layers.Dropout(dropout, name="classifier_dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, activation="softmax", dtype="float32", name="probabilities"
        )

        # === Functional Model ===
        text_inputs = text_backbone.input
        text = pool_text(text_backbone(text_inputs), text_inputs, text_pooling, self.text_pooling_layer)
        outputs = self.output_dense(self.classifier_dropout(text))
        super().__init__(inputs=dict(text_inputs), outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.text_pooling = text_pooling
        self.dropout = dropout

    def head_config(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "text_pooling": self.text_pooling,
            "dropout": self.dropout,
        }
