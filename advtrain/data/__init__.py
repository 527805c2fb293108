"""Small data sets shipped inside the package, so that `advtrain demo` runs with no network and no data folder.

`mr_sample/` holds a seeded, class-balanced sample of MR (Pang & Lee 2005, sentence polarity v1.0; 0 negative,
1 positive): ``train.jsonl`` from MR's training split and ``test.jsonl`` from its test split, one ``{"text", "label"}``
object a line. `make_mr_sample` regenerates both from a full copy of MR (see its docstring).
"""

from __future__ import annotations

from pathlib import Path

MR_SAMPLE = Path(__file__).resolve().parent / "mr_sample"


def mr_sample_path() -> str:
    """The folder of the bundled MR sample (``train.jsonl``, ``test.jsonl``)."""
    if not (MR_SAMPLE / "train.jsonl").is_file():
        raise FileNotFoundError(
            f"The bundled MR sample is missing from {MR_SAMPLE}: the package was installed without its data files "
            "(reinstall advtrain, or regenerate them with `python -m advtrain.data.make_mr_sample --source <mr folder>`)."
        )
    return str(MR_SAMPLE)


def _looks_like_a_path(spec: str) -> bool:
    # A Hub dataset name is "name" or "owner/name"; anything else that does not exist locally is a mistyped path.
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or spec.endswith((".jsonl", ".json", ".csv"))


def load_text_dataset(spec: str, config_name: str | None = None):
    """Loads a text-classification data set as a `datasets.DatasetDict`, without any network access for local data.

    Args:
        spec (`str`): one of
            - a folder of JSON Lines (or CSV) files, one per split, named after the split (``train.jsonl``,
              ``dev.jsonl``, ``test.jsonl``, ...), or a folder written by `DatasetDict.save_to_disk`;
            - one JSON Lines / JSON / CSV file: a single split named after the file (``test.jsonl`` → ``"test"``);
            - a Hugging Face Hub name, loaded with `datasets.load_dataset` (needs the network or the local cache).
        config_name (`str`, *optional*): the Hub data set's configuration (e.g. ``"sst2"`` of ``"glue"``).

    Raises `FileNotFoundError` for a missing local path and `ValueError` when the Hub cannot provide `spec`; both name
    `spec` and say what was tried.
    """
    import datasets

    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
        files = {f.stem: f for f in sorted(path.iterdir()) if f.suffix in (".jsonl", ".json", ".csv") and f.is_file()}
        if not files:
            raise FileNotFoundError(
                f"{spec}: a folder without data files; expected one JSON Lines file per split (train.jsonl, dev.jsonl, "
                "test.jsonl) or a DatasetDict.save_to_disk folder."
            )
        return datasets.DatasetDict({split: _load_file(f) for split, f in files.items()})
    if path.is_file():
        return datasets.DatasetDict({path.name.split(".")[0]: _load_file(path)})
    if _looks_like_a_path(spec):
        raise FileNotFoundError(f"{spec}: no such file or folder.")
    try:
        loaded = datasets.load_dataset(spec, config_name)
    except (OSError, ValueError) as err:  # DatasetNotFoundError, ConnectionError, OfflineModeIsEnabled, bad config
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"{spec}: not a local file or folder, and the Hugging Face Hub could not provide it ({reason}). Offline "
            "(HF_DATASETS_OFFLINE=1 or no network), only data sets already in the local cache load; pass a folder of "
            "JSON Lines files instead."
        ) from None
    return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})


def _load_file(path: Path):
    import datasets

    kind = "csv" if path.suffix == ".csv" else "json"
    return datasets.load_dataset(kind, data_files=str(path), split="train")


def pick_split(data, name: str | None, fallbacks: tuple[str, ...] = ()) -> str | None:
    """The split of `data` to use: `name` if given (a `ValueError` listing the splits if absent), else the first of
    `fallbacks` present, else the only split when there is one, else `None`."""
    if name is not None:
        if name in data:
            return name
        if len(data) == 1 and not fallbacks:
            return next(iter(data))
        raise ValueError(f"no split {name!r}; the data set has {sorted(data)}.")
    for candidate in fallbacks:
        if candidate in data:
            return candidate
    return next(iter(data)) if len(data) == 1 else None


def encode_labels(data, label_column: str = "label", text_column: str = "text", label_names=None):
    """Checks the columns and turns the labels into class ids.

    Returns ``(data, label_names, num_labels)``: `ClassLabel` features keep their names; string labels become ids in
    sorted order, or in the order of `label_names` when given (a model's classes; an unknown name is a `ValueError`);
    integer labels are kept and ``num_labels`` is the largest one plus one over every split (``label_names`` is
    `None`).
    """
    import datasets

    for split, ds in data.items():
        missing = [c for c in (text_column, label_column) if c not in ds.column_names]
        if missing:
            raise ValueError(
                f"split {split!r} has no column {', '.join(map(repr, missing))}; its columns are {ds.column_names} "
                "(choose them with --text_column / --label_column)."
            )
    first = next(iter(data.values()))
    feature = first.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return data, list(feature.names), feature.num_classes
    dtype = getattr(feature, "dtype", None)
    if dtype == "string":
        found = sorted({label for ds in data.values() for label in ds[label_column]})
        names = list(label_names) if label_names else found
        unknown = [name for name in found if name not in names]
        if unknown:
            raise ValueError(f"column {label_column!r} has labels {unknown} that the model does not know ({names}).")
        index = {name: i for i, name in enumerate(names)}
        data = data.map(lambda row: {label_column: index[row[label_column]]})
        return data, names, len(names)
    if dtype is None or not dtype.startswith(("int", "uint")):
        raise ValueError(
            f"column {label_column!r} holds {feature}; the command line trains classifiers, whose labels are class "
            "ids (integers), class names (strings) or a ClassLabel."
        )
    values = [label for ds in data.values() for label in ds[label_column]]
    if min(values) < 0:
        raise ValueError(f"column {label_column!r} has a negative label ({min(values)}); class ids start at 0.")
    return data, None, max(values) + 1
