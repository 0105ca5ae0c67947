"""Where the ImageNet weights of a `keras.applications` backbone come from.

`model.speech.resnet50_crnn_at.weights` and `model.speech.mobilenet.weights`
are `none`, `imagenet` or the path of a local weights file. `imagenet` needs the file `keras.applications` would download; on a
machine without network access the user fetches it elsewhere and passes its
path, and this module says exactly which file that is. Also here: what every
`keras.applications` backbone of the project needs to train on a small corpus
(`set_batch_norm_momentum`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import keras

from bimer_tf.errors import InputError

# Where keras.applications downloads its weights from, and the md5 of each
# no-top file (keras/src/applications/resnet.py); MobileNet files carry none.
RESNET_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
RESNET50_NO_TOP = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_NO_TOP_MD5 = "4d473c1dd8becc155b73f8504c6f6626"
MOBILENET_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
# ImageNet MobileNets exist for these width multipliers only.
MOBILENET_ALPHAS = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}
# keras.applications.MobileNet loads the 224 x 224 weights for any input that
# is not a square of 128, 160, 192 or 224, as every spectrogram (time varies).
MOBILENET_ROWS = 224

APPLICATIONS = ("resnet50", "mobilenet")
# The config key that names each application's weights.
WEIGHTS_KEYS = {
    "resnet50": "model.speech.resnet50_crnn_at.weights",
    "mobilenet": "model.speech.mobilenet.weights",
}

# Seconds a silent connection may stall before the download counts as failed.
DOWNLOAD_TIMEOUT_S = 20.0


def imagenet_file(application: str, alpha: float = 1.0) -> tuple[str, str, str | None]:
    """`(file name, URL, md5 or None)` of the no-top ImageNet weights of `application`."""
    if application == "resnet50":
        return RESNET50_NO_TOP, RESNET_BASE_URL + RESNET50_NO_TOP, RESNET50_NO_TOP_MD5
    if application == "mobilenet":
        if alpha not in MOBILENET_ALPHAS:
            raise InputError(
                f"model.speech.mobilenet.alpha {alpha}: ImageNet MobileNet weights exist only for "
                f"alpha in {sorted(MOBILENET_ALPHAS)}; choose one of them or set "
                f"{WEIGHTS_KEYS['mobilenet']}=none"
            )
        name = f"mobilenet_{MOBILENET_ALPHAS[alpha]}_{MOBILENET_ROWS}_tf_no_top.h5"
        return name, MOBILENET_BASE_URL + name, None
    raise ValueError(f"application must be one of {APPLICATIONS}, got {application!r}")


def keras_cache_dir() -> Path:
    """The folder keras.applications saves weights into: `$KERAS_HOME/models`.

    `KERAS_HOME` defaults to `~/.keras` (`/tmp/.keras` when the home folder
    is not writable), as in Keras.
    """
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home) / "models"


def resolve_imagenet_weights(
    weights: str | None, application: str, alpha: float = 1.0
) -> str | None:
    """The weights file to initialise a `keras.applications` backbone with.

    Args:
        weights: `None` or `"none"` (random initialisation), `"imagenet"`, or
            the path of a local `.h5` / `.weights.h5` file holding the no-top
            weights of the same application.
        application: `"resnet50"` or `"mobilenet"`.
        alpha: float. MobileNet's width multiplier (it names the file).

    Returns:
        `None`, or the path of an existing weights file: `weights` itself, or
        for `"imagenet"` the file in the Keras cache (`~/.keras/models/`),
        downloaded there first if it is missing.

    Raises:
        InputError: the path does not exist, or `"imagenet"` is not cached
            and cannot be downloaded (the message names the URL to fetch on
            a connected machine and how to pass the file).
    """
    if application not in APPLICATIONS:
        raise ValueError(f"application must be one of {APPLICATIONS}, got {application!r}")
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights).lower() != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError(
                f"{WEIGHTS_KEYS[application]}: no weights file at {weights}; pass an existing "
                "`.h5` / `.weights.h5` file, `imagenet` or `none`"
            )
        return str(path)

    file_name, url, md5 = imagenet_file(application, alpha)
    cached = keras_cache_dir() / file_name
    if cached.is_file():
        return str(cached)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return keras.utils.get_file(
            file_name,
            url,
            cache_dir=str(keras_cache_dir().parent),
            cache_subdir="models",
            file_hash=md5,
        )
    except Exception as error:  # noqa: BLE001 - any download failure means the same
        raise InputError(
            f"{WEIGHTS_KEYS[application]}=imagenet: cannot download the {application} ImageNet "
            f"weights (no network? {type(error).__name__}: {error}). On a connected "
            f"machine fetch {url} and pass its path with "
            f"`--set {WEIGHTS_KEYS[application]}=/path/to/{file_name}`, or copy it into "
            f"{keras_cache_dir()}/"
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def set_batch_norm_momentum(model: keras.Model, momentum: float = 0.9) -> None:
    """Sets the momentum of every `BatchNormalization` layer of `model`.

    `keras.applications` builds its batch normalisation with Keras' 0.99: the
    moving statistics then take several hundred steps to forget their start
    (mean 0 and variance 1, or ImageNet's) and follow the spectrograms, longer
    than a small corpus trains, and until they do the inference-mode model
    gives one class for every input. At 0.9 (as in `ResidualBlock`) they
    settle within a few dozen steps. The momentum is part of each layer's
    config, so a saved model keeps it.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
