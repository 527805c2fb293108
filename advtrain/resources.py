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
