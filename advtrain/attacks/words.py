"""Splitting text into words while keeping every separator, so that a text rebuilt from its words is the original.

MR/SST text is space-tokenised and lower-cased (``"it 's a charming , funny film ."``); punctuation and clitics stay in
the separators, so a word swap never touches them and ``Words.split(text).text == text`` always holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A word: letters/digits, optionally joined by inner apostrophes or hyphens ("don't", "well-made").
WORD_PATTERN = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*")


def is_word(token: str) -> bool:
    """Whether `token` is exactly one word for `Words.split` (so a substitute never changes the word count)."""
    return WORD_PATTERN.fullmatch(token) is not None


@dataclass(frozen=True)
class Words:
    """A text as alternating separators and words: ``seps[0] + words[0] + seps[1] + ... + words[-1] + seps[-1]``.

    Args:
        words (`tuple[str, ...]`): the words, in order.
        seps (`tuple[str, ...]`): the ``len(words) + 1`` separators around them (possibly empty strings).
    """

    words: tuple[str, ...]
    seps: tuple[str, ...]

    @classmethod
    def split(cls, text: str) -> Words:
        """Splits `text` into words and separators."""
        parts = WORD_PATTERN.split(text)
        words = tuple(WORD_PATTERN.findall(text))
        # re.split without a capturing group returns exactly the len(words) + 1 pieces between matches.
        return cls(words, tuple(parts))

    @property
    def text(self) -> str:
        out = [self.seps[0]]
        for word, sep in zip(self.words, self.seps[1:]):
            out.append(word)
            out.append(sep)
        return "".join(out)

    def __len__(self) -> int:
        return len(self.words)

    def spans(self) -> list[tuple[int, int]]:
        """Character span ``(start, end)`` of each word in `text`."""
        spans, pos = [], len(self.seps[0])
        for word, sep in zip(self.words, self.seps[1:]):
            spans.append((pos, pos + len(word)))
            pos += len(word) + len(sep)
        return spans

    def replace(self, position: int, word: str) -> Words:
        """A copy with the word at `position` replaced by `word`."""
        words = list(self.words)
        words[position] = word
        return Words(tuple(words), self.seps)

    def num_changed(self, other: Words) -> int:
        """Number of positions whose word differs from `other`'s (same number of words)."""
        return sum(a != b for a, b in zip(self.words, other.words))
