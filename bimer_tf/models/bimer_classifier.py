"""BiMER: intermediate fusion of a speech backbone and a BERT text backbone."""

from __future__ import annotations

import keras

from bimer_tf.models.emotion_classifier import EmotionClassifier
from bimer_tf.models.text_pooling import check_text_pooling, freeze_unused_cls_head, pool_text


@keras.saving.register_keras_serializable(package="bimer_tf")
class BiMERClassifier(EmotionClassifier):
    """Emotion classifier over a speech backbone and a BERT-style text backbone.

    The speech backbone's `pooled_output` (512 wide in the BiMER paper) and a
    text feature are concatenated (768 in the paper) and classified by one
    dense softmax layer. The text feature pools the text backbone's output
    (`"mean"`: the mean of `sequence_output` over real tokens, the pooling
    sentence encoders such as MiniLM are trained with; `"cls"`: its
    `pooled_output`), then applies dropout and a dense layer (256 in the
    paper).

    Inputs are a dict of already-preprocessed tensors: the speech backbone's
    input under its own name (`"log_mel"` `[batch, frames, bins, channels]`,
    or `"whisper_features"` for the Whisper branch) and the text backbone's
    inputs (`"token_ids"`, `"segment_ids"`, `"padding_mask"` `[batch,
    seq_len]` for BERT, as made by `build_text_preprocessor`; `padding_mask`
    may be bool or int). The output is `[batch, num_classes]` class probabilities,
    float32 even under a mixed precision policy.

    Both backbones are saved inside the model's config, so a `.keras` file
    holds everything needed to rebuild it. To freeze the text encoder, set
    `text_backbone.trainable = False` before building the classifier.

    Args:
        speech_backbone: a `keras.Model` with one named input, returning a
            dict with `"pooled_output"`, e.g.
            `bimer_tf.models.SpeechResNetCRNNBackbone`.
        text_backbone: a `keras_hub.models.BertBackbone` or
            `RobertaBackbone` (any backbone taking a dict with
            `padding_mask` and returning its token sequence).
        num_classes: int. Number of emotion classes.
        text_pooling: `"mean"` or `"cls"`. Defaults to `"mean"`.
        text_dropout: float. Dropout before the text feature layer.
            Defaults to `0.1`.
        text_feature_dim: int. Size of the text feature. Defaults to `256`.
        fusion_dropout: float. Dropout on the concatenated features.
            Defaults to `0.2`.
        **kwargs: other keyword arguments passed to `keras.Model`, e.g. `name`.
    """

    def __init__(
        self,
        speech_backbone,
        text_backbone,
        num_classes,
        text_pooling="mean",
        text_dropout=0.1,
        text_feature_dim=256,
        fusion_dropout=0.2,
        **kwargs,
    ):
        kwargs.setdefault("name", "bimer_classifier")
        check_text_pooling(text_pooling)

        # === Layers ===
        self.speech_backbone = speech_backbone
        self.text_backbone = text_backbone
        if text_pooling == "mean":
            freeze_unused_cls_head(text_backbone)
        self.text_pooling_layer = keras.layers.GlobalAveragePooling1D(name="text_mean_pooling")
        self.text_dropout_layer = keras.layers.Dropout(text_dropout, name="text_dropout")
        self.text_dense = keras.layers.Dense(text_feature_dim, activation="relu", name="text_features")
        self.fusion = keras.layers.Concatenate(name="fusion")
        self.fusion_dropout_layer = keras.layers.Dropout(fusion_dropout, name="fusion_dropout")
        # float32 output: softmax probabilities stay exact under mixed precision.
        self.output_dense = keras.layers.Dense(
            num_classes, activation="softmax", dtype="float32", name="probabilities"
        )

        # === Functional Model ===
        # The backbones' own Input tensors become the classifier's inputs.
        speech_input = speech_backbone.input
        text_inputs = text_backbone.input
        inputs = {speech_input.name: speech_input, **text_inputs}
        speech_features = speech_backbone(speech_input)["pooled_output"]
        text = pool_text(
            text_backbone(text_inputs), text_inputs, text_pooling, self.text_pooling_layer
        )
        text_features = self.text_dense(self.text_dropout_layer(text))
        fused = self.fusion([speech_features, text_features])
        outputs = self.output_dense(self.fusion_dropout_layer(fused))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.text_pooling = text_pooling
        self.text_dropout = text_dropout
        self.text_feature_dim = text_feature_dim
        self.fusion_dropout = fusion_dropout

    def head_config(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "text_pooling": self.text_pooling,
            "text_dropout": self.text_dropout,
            "text_feature_dim": self.text_feature_dim,
            "fusion_dropout": self.fusion_dropout,
        }
