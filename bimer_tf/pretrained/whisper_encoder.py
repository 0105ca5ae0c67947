"""The pretrained Whisper speech encoder as a Keras model.

`load_whisper_encoder(source)` returns the encoder of a keras-hub
`WhisperBackbone` (two GELU convolutions, sinusoidal positions, pre-norm
transformer layers, a final layer norm) as a functional `keras.Model` from
Whisper log-mel features `[batch, frames, 80]` (see
`bimer_tf.layers.WhisperLogMel`) to hidden states `[batch, frames // 2,
hidden]`. The decoder is never part of it.

Weights come from:
- a CTranslate2 Whisper folder (`whisper-tiny-offline`,
  `whisper-base-offline` or a folder path, see
  `bimer_tf.pretrained.whisper_sources`): keras-hub 0.32 has no converter for
  Whisper, so this module maps the CTranslate2 tensors onto the keras-hub
  layers itself (`tests/pretrained/test_whisper_encoder.py` checks the result against the
  CTranslate2 runtime);
- a keras-hub preset name such as `whisper_tiny_en` (downloaded once, needs
  network) or a keras-hub preset folder.

Frames may be any even number up to 3000 (30 s): the position table is
sliced to the sequence, so clip-length input costs what the clip costs.

`split_whisper_encoder(encoder, trainable_layers)` cuts the encoder into a
frozen-friendly bottom and a fine-tunable top sharing the same weights, and
`whisper_encoder_dims(encoder)` reports its sizes.
"""

from __future__ import annotations

from pathlib import Path

import keras
import keras_hub
import numpy as np

from bimer_tf.errors import InputError
from bimer_tf.pretrained.ctranslate2_reader import dequantized, read_ctranslate2_model
from bimer_tf.pretrained.whisper_sources import OFFLINE_WHISPER_SOURCES, ctranslate2_model_dir

# Names of the encoder's layers: keras-hub's own for the layers taken from
# `WhisperBackbone`, plus three stateless layers standing in for the
# backbone's inline `gelu` calls and its unregistered `Padder`.
CONV_1 = "encoder_token_embedding_conv_layer_1"
CONV_2 = "encoder_token_embedding_conv_layer_2"
GELU_1 = "encoder_conv_1_gelu"
GELU_2 = "encoder_conv_2_gelu"
PAD_2 = "encoder_conv_2_padding"
POSITION_EMBEDDING = "encoder_position_embedding"
EMBEDDINGS_ADD = "encoder_embeddings_add"
EMBEDDINGS_DROPOUT = "encoder_embeddings_dropout"
TRANSFORMER_LAYER = "transformer_encoder_layer_{}"
FINAL_LAYER_NORM = "encoder_layer_norm"


def load_whisper_encoder(source: str) -> keras.Model:
    """The Whisper encoder of `source` with pretrained float32 weights.

    Args:
        source: "whisper-tiny-offline", "whisper-base-offline", a CTranslate2
            Whisper folder (holding `model.bin`), or a keras-hub Whisper
            preset name or folder (e.g. "whisper_tiny_en", needs network once).

    Returns:
        A functional `keras.Model` named "whisper_encoder": input
        "encoder_features" float32 `[batch, frames, num_mels]`, output the
        final layer-norm states `[batch, frames // 2, hidden_dim]`.

    Raises:
        InputError: the source is unknown, not installed, corrupt, or not a
            Whisper model.
    """
    source = str(source)
    if source in OFFLINE_WHISPER_SOURCES or (Path(source).expanduser() / "model.bin").is_file():
        backbone = whisper_backbone_from_ctranslate2(ctranslate2_model_dir(source), encoder_only=True)
    else:
        try:
            backbone = keras_hub.models.WhisperBackbone.from_preset(source, dtype="float32")
        except (ValueError, OSError, FileNotFoundError) as error:
            raise InputError(
                f"cannot load Whisper source '{source}' ({error}); use "
                f"{' or '.join(OFFLINE_WHISPER_SOURCES)}, a CTranslate2 Whisper folder, or a "
                "keras-hub Whisper preset such as 'whisper_tiny_en' (needs network once)"
            ) from None
    return whisper_encoder_from_backbone(backbone)


def whisper_encoder_from_backbone(backbone, name: str = "whisper_encoder") -> keras.Model:
    """The encoder half of a keras-hub `WhisperBackbone`, as its own functional model.

    Calls the backbone's encoder layers (shared, same weights) on a new
    "encoder_features" input; the GELUs and the padding before the second
    convolution become `Activation` and `ZeroPadding1D` layers, which compute
    what the backbone computes and serialize without custom objects.
    """
    features = keras.Input(shape=(None, backbone.num_mels), dtype="float32", name="encoder_features")
    layers = {
        CONV_1: backbone.encoder_conv_layer_1,
        CONV_2: backbone.encoder_conv_layer_2,
        GELU_1: keras.layers.Activation("gelu", dtype=backbone.dtype_policy, name=GELU_1),
        GELU_2: keras.layers.Activation("gelu", dtype=backbone.dtype_policy, name=GELU_2),
        PAD_2: keras.layers.ZeroPadding1D(padding=1, dtype=backbone.dtype_policy, name=PAD_2),
        POSITION_EMBEDDING: backbone.encoder_position_embedding,
        EMBEDDINGS_ADD: backbone.encoder_embeddings_add,
        EMBEDDINGS_DROPOUT: backbone.encoder_embeddings_dropout,
        FINAL_LAYER_NORM: backbone.encoder_layer_norm,
    }
    x = _embed(features, layers.__getitem__)
    for layer in backbone.encoder_transformer_layers:
        x = layer(x)
    x = layers[FINAL_LAYER_NORM](x)
    return keras.Model(features, x, name=name)


def _embed(features, layer):
    """Convolution stem + positions: features -> first transformer input."""
    x = layer(GELU_1)(layer(CONV_1)(features))
    x = layer(GELU_2)(layer(CONV_2)(layer(PAD_2)(x)))
    positions = layer(POSITION_EMBEDDING)(x)
    x = layer(EMBEDDINGS_ADD)((x, positions))
    return layer(EMBEDDINGS_DROPOUT)(x)


def _transformer_layers(encoder: keras.Model) -> list:
    layers = []
    while True:
        try:
            layers.append(encoder.get_layer(TRANSFORMER_LAYER.format(len(layers))))
        except ValueError:
            break
    if not layers:
        raise InputError(
            f"model '{encoder.name}' has no layer '{TRANSFORMER_LAYER.format(0)}'; pass the model "
            "returned by `load_whisper_encoder`"
        )
    return layers


def whisper_encoder_dims(encoder: keras.Model) -> dict:
    """Sizes of an encoder from `load_whisper_encoder`.

    Returns:
        dict with `num_layers`, `hidden_dim`, `num_heads`, `intermediate_dim`,
        `num_mels` and `max_frames` (the longest input, in log-mel frames).
    """
    layers = _transformer_layers(encoder)
    return {
        "num_layers": len(layers),
        "hidden_dim": int(encoder.get_layer(CONV_1).filters),
        "num_heads": int(layers[0].num_heads),
        "intermediate_dim": int(layers[0].intermediate_dim),
        "num_mels": int(encoder.input.shape[-1]),
        "max_frames": 2 * int(encoder.get_layer(POSITION_EMBEDDING).sequence_length),
    }


def split_whisper_encoder(
    encoder: keras.Model,
    trainable_layers: int,
    num_layers: int | None = None,
    all_states: bool = False,
) -> tuple[keras.Model, keras.Model | None]:
    """Cuts an encoder into a bottom and a top that share its weights.

    Args:
        encoder: a model from `load_whisper_encoder`.
        trainable_layers: how many of the last transformer layers go to the
            top, from 0 to the encoder's `num_layers`.
        num_layers: use only the first `num_layers` transformer layers (the
            middle layers of a speech encoder often carry more about how
            something is said than the last ones). The final layer norm
            belongs to the last layer and is applied only when all layers are
            used. Defaults to all.
        all_states: the bottom returns every hidden state, stacked: the
            embedding output and each of the `num_layers` layers' outputs
            (the last after the final layer norm when all layers are used),
            `[batch, steps, num_layers + 1, hidden_dim]` (for a learned
            weighted sum of layers). Needs `trainable_layers == 0`.

    Returns:
        `(bottom, top)`. `bottom`: log-mel `[batch, frames, num_mels]` ->
        states after the first `num_layers - trainable_layers` transformer
        layers (after the final layer norm too when `trainable_layers == 0`).
        `top`: `[batch, steps, hidden_dim]` -> the remaining layers and the
        final layer norm, or None when `trainable_layers == 0`. Both call the
        encoder's own layer objects, so `top(bottom(x))` equals `encoder(x)`,
        training either changes the encoder, and `bottom.trainable = False`
        freezes those layers in `encoder` as well.
    """
    all_layers = _transformer_layers(encoder)
    if num_layers is None:
        num_layers = len(all_layers)
    if not isinstance(num_layers, int) or not 1 <= num_layers <= len(all_layers):
        raise InputError(
            f"num_layers must be an integer from 1 to {len(all_layers)} (the encoder's "
            f"transformer layers), got {num_layers!r}"
        )
    layers = all_layers[:num_layers]
    final_norm = [encoder.get_layer(FINAL_LAYER_NORM)] if num_layers == len(all_layers) else []
    if not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= len(layers):
        raise InputError(
            f"trainable_layers must be an integer from 0 to {len(layers)} (the transformer "
            f"layers used), got {trainable_layers!r}"
        )
    if all_states and trainable_layers:
        raise InputError("all_states needs trainable_layers=0: the stacked states are what the cache holds")
    cut = len(layers) - trainable_layers
    features = keras.Input(shape=(None, encoder.input.shape[-1]), dtype="float32", name="encoder_features")
    x = _embed(features, encoder.get_layer)
    states = [x]
    for layer in layers[:cut]:
        x = layer(x)
        states.append(x)
    if trainable_layers == 0:
        for layer in final_norm:
            x = layer(x)
        if all_states:
            x = keras.ops.stack(states[:-1] + [x], axis=2)
        return keras.Model(features, x, name=f"{encoder.name}_bottom"), None
    bottom = keras.Model(features, x, name=f"{encoder.name}_bottom")

    hidden_dim = int(encoder.get_layer(CONV_1).filters)
    states = keras.Input(shape=(None, hidden_dim), dtype="float32", name="hidden_states")
    y = states
    for layer in layers[cut:] + final_norm:
        y = layer(y)
    top = keras.Model(states, y, name=f"{encoder.name}_top")
    return bottom, top


# === CTranslate2 -> keras-hub ===


def whisper_backbone_from_ctranslate2(folder, encoder_only: bool = False):
    """A keras-hub `WhisperBackbone` (float32) with a CTranslate2 model's encoder weights.

    Sizes come from the CTranslate2 variables: layers (the encoder's; the
    backbone repeats that count for its decoder), heads
    (`encoder/num_heads`), hidden and mel sizes (the first convolution),
    feed-forward size, vocabulary (decoder embeddings) and both position
    tables. Only the encoder weights are copied: with `encoder_only=True`
    the decoder bytes are not even read, and the decoder keeps its random
    initialization (use the model for its encoder only).

    Mapping, CTranslate2 (PyTorch layouts) -> keras-hub:
      conv{1,2}/weight [out, in, k]         -> Conv1D kernel [k, in, out]
      layer_i/self_attention/linear_0       -> query, key, value, split in three
        weight [3h, h], bias [3h]              along the rows; kernels [h, heads,
                                               head_dim]; the key bias is dropped
                                               (zero in Whisper, and a constant per
                                               query under softmax anyway)
      layer_i/self_attention/linear_1       -> attention_output [heads, head_dim, h]
      layer_i/ffn/linear_{0,1}              -> feedforward_{intermediate,output}_dense
                                               (kernels transposed)
      .../layer_norm/{gamma,beta}           -> LayerNormalization gamma, beta
      position_encodings/encodings          -> encoder_position_embedding
      layer_norm                            -> encoder_layer_norm
    Quantized (int8/int16) weights are dequantized with their scales.
    """
    folder = Path(folder)
    model = read_ctranslate2_model(folder, include="encoder/" if encoder_only else None)
    if model.spec_name != "WhisperSpec":
        raise InputError(
            f"{folder / 'model.bin'} holds a CTranslate2 {model.spec_name}, not a Whisper model; "
            "convert a Whisper checkpoint with `ct2-transformers-converter`"
        )
    shapes = model.shapes
    num_layers = 0
    while f"encoder/layer_{num_layers}/ffn/linear_0/weight" in shapes:
        num_layers += 1
    hidden_dim, num_mels, _ = shapes["encoder/conv1/weight"]
    backbone = keras_hub.models.WhisperBackbone(
        vocabulary_size=shapes["decoder/embeddings/weight"][0],
        num_layers=num_layers,
        num_heads=int(model["encoder/num_heads"]),
        hidden_dim=hidden_dim,
        intermediate_dim=shapes["encoder/layer_0/ffn/linear_0/weight"][0],
        num_mels=num_mels,
        max_encoder_sequence_length=2 * shapes["encoder/position_encodings/encodings"][0],
        max_decoder_sequence_length=shapes["decoder/position_encodings/encodings"][0],
        dtype="float32",
        name="whisper_backbone",
    )
    _copy_encoder_weights(model, backbone)
    return backbone


def _copy_encoder_weights(model, backbone) -> None:
    encoder_layers = [
        backbone.encoder_conv_layer_1,
        backbone.encoder_conv_layer_2,
        backbone.encoder_position_embedding,
        *backbone.encoder_transformer_layers,
        backbone.encoder_layer_norm,
    ]
    variables = {v.path: v for layer in encoder_layers for v in layer.weights}
    assigned = set()

    def assign(path, value):
        variable = variables[path]
        if tuple(variable.shape) != value.shape:
            raise InputError(
                f"{model.path}: shape {value.shape} does not fit {path} {tuple(variable.shape)}; "
                "the file is not a standard Whisper encoder"
            )
        variable.assign(value.astype(np.float32))
        assigned.add(path)

    def weight(name):
        return dequantized(model, name)

    def layer_norm(ct2, keras_name):
        assign(f"{keras_name}/gamma", weight(f"{ct2}/gamma"))
        assign(f"{keras_name}/beta", weight(f"{ct2}/beta"))

    def dense(ct2, keras_name):
        assign(f"{keras_name}/kernel", weight(f"{ct2}/weight").T)
        assign(f"{keras_name}/bias", weight(f"{ct2}/bias"))

    for i in (1, 2):
        assign(f"encoder_token_embedding_conv_layer_{i}/kernel", weight(f"encoder/conv{i}/weight").transpose(2, 1, 0))
        assign(f"encoder_token_embedding_conv_layer_{i}/bias", weight(f"encoder/conv{i}/bias"))
    assign("encoder_position_embedding/embeddings", weight("encoder/position_encodings/encodings"))
    layer_norm("encoder/layer_norm", "encoder_layer_norm")

    for i, layer in enumerate(backbone.encoder_transformer_layers):
        ct2, name = f"encoder/layer_{i}", f"transformer_encoder_layer_{i}"
        hidden = backbone.hidden_dim
        heads = layer.num_heads
        head_dim = hidden // heads
        qkv_weight = weight(f"{ct2}/self_attention/linear_0/weight")  # [3h, h]
        qkv_bias = weight(f"{ct2}/self_attention/linear_0/bias")  # [3h]
        for j, part in enumerate(("query", "key", "value")):
            rows = slice(j * hidden, (j + 1) * hidden)
            kernel = qkv_weight[rows].T.reshape(hidden, heads, head_dim)
            assign(f"{name}/self_attention_layer/{part}/kernel", kernel)
            if part != "key":
                assign(f"{name}/self_attention_layer/{part}/bias", qkv_bias[rows].reshape(heads, head_dim))
        out_weight = weight(f"{ct2}/self_attention/linear_1/weight")  # [h, h]
        assign(f"{name}/self_attention_layer/attention_output/kernel", out_weight.T.reshape(heads, head_dim, hidden))
        assign(f"{name}/self_attention_layer/attention_output/bias", weight(f"{ct2}/self_attention/linear_1/bias"))
        layer_norm(f"{ct2}/self_attention/layer_norm", f"{name}/self_attention_layer_norm")
        layer_norm(f"{ct2}/ffn/layer_norm", f"{name}/feedforward_layer_norm")
        dense(f"{ct2}/ffn/linear_0", f"{name}/feedforward_intermediate_dense")
        dense(f"{ct2}/ffn/linear_1", f"{name}/feedforward_output_dense")

    missing = sorted(set(variables) - assigned)
    if missing:  # keras-hub renamed something: fail loudly rather than keep random weights.
        raise RuntimeError(f"encoder weights left unassigned: {', '.join(missing)}")
