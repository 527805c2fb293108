"""Word-level activations of any layer(s) of a Hugging Face encoder.

A "neuron" is one unit of a layer's hidden state (`hidden_states[layer][..., unit]`); with several layers the units
are concatenated, layer after layer. Words are aligned to sub-tokens with a fast tokenizer's `word_ids()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from datasets import ClassLabel, Dataset

from .data import check_tagged_corpus

POOLINGS = ("first", "mean", "last")


@dataclass
class WordActivations:
    """One row of activations per word.

    Attributes:
        activations (`torch.Tensor`): `(num_words, num_neurons)`, float32, on the CPU.
        words (`list[str]`): the word of each row.
        tags (`list[str]`): its gold tag (empty strings when no tags were given).
        sentence_ids (`torch.Tensor`): `(num_words,)`, the row of the dataset each word comes from.
        layers (`list[int]`): the `hidden_states` indices the neurons come from (0 = the embedding output), in order.
        hidden_size (`int`): neurons per layer.
        pooling (`str`): how sub-tokens were merged into a word (`first`, `mean` or `last`).
        num_skipped_words (`int`): words that got no sub-token (cut by `max_length`, or empty for the tokenizer).
    """

    activations: torch.Tensor
    words: list[str]
    tags: list[str]
    sentence_ids: torch.Tensor
    layers: list[int] = field(default_factory=lambda: [0])
    hidden_size: int | None = None
    pooling: str = "first"
    num_skipped_words: int = 0

    def __post_init__(self):
        n = self.activations.shape[0]
        if self.activations.dim() != 2 or len(self.words) != n or len(self.tags) != n or self.sentence_ids.shape != (n,):
            raise ValueError(
                f"WordActivations needs (num_words, num_neurons) activations and one word, tag and sentence id per row; "
                f"got activations {tuple(self.activations.shape)}, {len(self.words)} words, {len(self.tags)} tags, "
                f"sentence_ids {tuple(self.sentence_ids.shape)}."
            )
        if self.hidden_size is None:
            self.hidden_size = self.activations.shape[1] // max(1, len(self.layers))

    def __len__(self) -> int:
        return self.activations.shape[0]

    @property
    def num_neurons(self) -> int:
        return self.activations.shape[1]

    def neuron_name(self, index: int) -> str:
        """`"L<layer>:<unit>"`, e.g. `L6:123` is unit 123 of `hidden_states[6]`."""
        layer, unit = divmod(int(index), self.hidden_size)
        return f"L{self.layers[layer]}:{unit}"

    def select(self, rows: torch.Tensor | Sequence[int]) -> WordActivations:
        """The words at `rows` (indices or a boolean mask)."""
        rows = torch.as_tensor(rows)
        if rows.dtype == torch.bool:
            rows = rows.nonzero().flatten()
        picked = rows.tolist()
        return WordActivations(
            activations=self.activations[rows], words=[self.words[i] for i in picked], tags=[self.tags[i] for i in picked],
            sentence_ids=self.sentence_ids[rows], layers=list(self.layers), hidden_size=self.hidden_size,
            pooling=self.pooling, num_skipped_words=0,
        )

    def split(self, test_size: float = 0.2, *, seed: int = 0) -> tuple[WordActivations, WordActivations]:
        """`(train, test)` split by sentence (all words of a sentence on one side), seeded.

        With `test_size=0` both sides are all the words (probe and word lists on the same data).
        """
        if not 0.0 <= test_size < 1.0:
            raise ValueError(f"test_size must be in [0, 1), got {test_size}.")
        if test_size == 0.0:
            return self, self
        sentences = torch.unique(self.sentence_ids)
        generator = torch.Generator().manual_seed(seed)
        shuffled = sentences[torch.randperm(len(sentences), generator=generator)]
        num_test = max(1, round(test_size * len(sentences)))
        if num_test >= len(sentences):
            raise ValueError(f"{len(sentences)} sentences are too few to hold out {test_size:.0%} of them.")
        is_test = torch.isin(self.sentence_ids, shuffled[:num_test])
        return self.select(~is_test), self.select(is_test)


def _layer_indices(layers: int | str | Sequence[int], num_states: int) -> list[int]:
    if layers == "all":
        return list(range(num_states))
    requested = [layers] if isinstance(layers, int) else list(layers)
    resolved = []
    for layer in requested:
        if not -num_states <= int(layer) < num_states:
            raise ValueError(
                f"Layer {layer} does not exist: the model returns {num_states} hidden states (0 = embeddings, "
                f"{num_states - 1} = last layer; negative indices count from the end)."
            )
        resolved.append(int(layer) % num_states)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"layers={requested} names a layer twice.")
    return resolved


def _tag_names(data: Dataset, tags_column: str | None) -> list[str] | None:
    """The names of a `ClassLabel` tag column (integers are turned into these), or None."""
    if tags_column is None:
        return None
    inner = getattr(data.features[tags_column], "feature", None)  # the element feature of a List/Sequence column
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def _pool_words(states: torch.Tensor, word_ids: list[int | None], num_words: int, pooling: str):
    """`(pooled, kept)`: one vector per word that has a sub-token in `states` (T, H), and those words' indices."""
    word_index = torch.tensor([-1 if w is None else w for w in word_ids])
    real = word_index >= 0
    token_words, token_states = word_index[real], states[real]
    counts = torch.bincount(token_words, minlength=num_words)
    present = counts > 0
    if pooling == "mean":
        sums = torch.zeros(num_words, states.shape[-1]).index_add_(0, token_words, token_states)
        pooled = sums[present] / counts[present].unsqueeze(1)
    else:
        # Each sub-token carries its word's index; a word's first (last) sub-token is its smallest (largest) position.
        positions = torch.arange(len(word_index))[real]
        reduce, fill = ("amin", len(word_index)) if pooling == "first" else ("amax", -1)
        chosen = torch.full((num_words,), fill).scatter_reduce(0, token_words, positions, reduce=reduce)
        pooled = states[chosen[present]]
    return pooled, present.nonzero().flatten().tolist()


@torch.no_grad()
def extract_activations(
    model: torch.nn.Module,
    tokenizer,
    data: Dataset,
    *,
    layers: int | str | Sequence[int] = -1,
    pooling: str = "first",
    tokens_column: str = "tokens",
    tags_column: str | None = "tags",
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | torch.device | None = None,
) -> WordActivations:
    """Runs `model` over pre-split sentences and returns one activation vector per word.

    Args:
        model (`torch.nn.Module`): any Hugging Face model that returns `hidden_states` when called with
            `output_hidden_states=True` (`AutoModel`, `AutoModelForSequenceClassification`, ...). It is run in eval mode
            and its training mode is restored afterwards.
        tokenizer: a fast tokenizer (`tokenizer.is_fast`), needed for `word_ids()`. Byte-level BPE tokenizers
            (RoBERTa, GPT-2) must be loaded with `add_prefix_space=True` to take pre-split words.
        data (`datasets.Dataset`): one sentence per row, `tokens_column` a list of words, `tags_column` a list of tags.
        layers (`int`, `list[int]` or `"all"`, defaults to `-1`): indices into `hidden_states` (0 = embedding output,
            -1 = last layer). Several layers are concatenated.
        pooling (`str`, defaults to `"first"`): a word's vector is its `first` sub-token's, the `mean` of its
            sub-tokens, or its `last` sub-token's.
        tokens_column (`str`), tags_column (`str` or `None`): the column names; `tags_column=None` extracts without tags.
        batch_size (`int`, defaults to 32): sentences per forward pass.
        max_length (`int`, *optional*): sub-token limit per sentence (default: the tokenizer's `model_max_length`,
            at most 512); words beyond it are skipped and counted in `num_skipped_words`.
        device (`str` or `torch.device`, *optional*): defaults to the model's device.

    Returns:
        `WordActivations` (float32, on the CPU).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}: choose one of {POOLINGS}.")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("extract_activations needs a fast tokenizer (its word_ids() align words to sub-tokens); "
                         "load it with AutoTokenizer.from_pretrained(path) (use_fast is the default).")
    check_tagged_corpus(data, tokens_column=tokens_column, tags_column=tags_column)
    names = _tag_names(data, tags_column)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    max_length = max_length or min(getattr(tokenizer, "model_max_length", 512), 512)

    all_tokens = [[str(word) for word in sentence] for sentence in data[tokens_column]]
    all_tags = list(data[tags_column]) if tags_column else [[""] * len(s) for s in all_tokens]
    # Batches of similar length waste less compute on padding; results go back to dataset order below.
    order = sorted(range(len(all_tokens)), key=lambda i: len(all_tokens[i]))
    pooled_by_sentence: dict[int, tuple[torch.Tensor, list[int]]] = {}
    resolved_layers = None
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            encoding = tokenizer([all_tokens[i] for i in indices], is_split_into_words=True, truncation=True,
                                 max_length=max_length, padding=True, return_tensors="pt")
            outputs = model(**{key: value.to(device) for key, value in encoding.items()}, output_hidden_states=True,
                            return_dict=True)
            hidden_states = getattr(outputs, "hidden_states", None)
            if hidden_states is None:
                raise ValueError(f"{type(model).__name__} returned no hidden_states with output_hidden_states=True.")
            if resolved_layers is None:
                resolved_layers = _layer_indices(layers, len(hidden_states))
            states = torch.cat([hidden_states[layer] for layer in resolved_layers], dim=-1).float().cpu()
            for row, index in enumerate(indices):
                pooled_by_sentence[index] = _pool_words(states[row], encoding.word_ids(row), len(all_tokens[index]), pooling)
    finally:
        model.train(was_training)

    chunks, words, tags, sentence_ids = [], [], [], []
    skipped = 0
    for index in range(len(all_tokens)):
        pooled, kept = pooled_by_sentence[index]
        chunks.append(pooled)
        skipped += len(all_tokens[index]) - len(kept)
        words.extend(all_tokens[index][j] for j in kept)
        tags.extend((names[all_tags[index][j]] if names is not None else str(all_tags[index][j])) for j in kept)
        sentence_ids.extend([index] * len(kept))
    if not words:
        raise ValueError("No word got a sub-token: is the dataset empty?")
    activations = torch.cat(chunks)
    return WordActivations(
        activations=activations, words=words, tags=tags, sentence_ids=torch.tensor(sentence_ids), layers=resolved_layers,
        hidden_size=activations.shape[1] // len(resolved_layers), pooling=pooling, num_skipped_words=skipped,
    )
