"""The perturbation site (`adv_site`): ``δ`` added to the hidden states output by transformer block ``N`` (latent
adversarial training) instead of the word embeddings.

δ lands on block N's output and nowhere else (probe hooks on every block and the embeddings); δ = 0 there gives the
model's own logits with right and left padding; one PGD-AT step at ``"layer:1"`` equals the objective written by hand
(value and parameter gradients) for a classifier and a causal LM; every trainer takes the field; accumulation 4×1 ≡ 1×4;
the fast first step stays exact; bad values and block indices are refused with messages; gradient checkpointing gives
the same step, and is refused for blocks that are not their own checkpoint; the autocast warning still fires.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import HfArgumentParser
from transformers.modeling_outputs import SequenceClassifierOutput

from advtrain import (
    ALUMConfig,
    ALUMTrainer,
    FreeLBConfig,
    FreeLBTrainer,
    LDSConfig,
    LDSTrainer,
    PGDATConfig,
    PGDATTrainer,
    R3FConfig,
    R3FTrainer,
    TATConfig,
    TATTrainer,
)
from advtrain.trainers.site import parse_site, transformer_blocks
from conftest import batch_of, grads_of, make_model, tokenized
from test_causal_lm import _ce, _l2_ball, _l2_step, fixed_init, lm_batch, make_causal_lm
from test_matrix import _args as matrix_args
from test_matrix import _relative_difference, _train, deterministic_init

TEXTS = ["a gorgeous , witty , seductive movie .", "the film is bad", "it 's a cold , dull , empty story ."]
LABELS = [1, 0, 0]
# Each family's blocks, spelled out (the library finds them generically: `transformer_blocks`).
BLOCKS = {
    "bert": lambda m: m.bert.encoder.layer,
    "roberta": lambda m: m.roberta.encoder.layer,
    "distilbert": lambda m: m.distilbert.transformer.layer,
    "deberta-v2": lambda m: m.deberta.encoder.layer,
    "electra": lambda m: m.electra.encoder.layer,
    "modernbert": lambda m: m.model.layers,
    "llama": lambda m: m.model.layers,
    "gpt2": lambda m: m.transformer.h,
}
BLOCK_PATHS = {"bert": "bert.encoder.layer", "roberta": "roberta.encoder.layer",
               "distilbert": "distilbert.transformer.layer", "deberta-v2": "deberta.encoder.layer",
               "electra": "electra.encoder.layer", "modernbert": "model.layers", "llama": "model.layers",
               "gpt2": "transformer.h"}
# Steps large enough for δ to matter at this scale.
STEP = dict(adv_norm="l2", adv_step_norm="l2", adv_epsilon=0.5, adv_step_size=0.3)


def deep_model(family: str, layers: int, seed: int = 0) -> nn.Module:
    """A tiny classifier of `family` (conftest's sizes, dropout off) with `layers` blocks."""
    config = make_model(family).config
    config.num_hidden_layers = layers
    torch.manual_seed(seed)
    return type(make_model(family))(config)


def _trainer(trainer_cls, config_cls, tmp_path, model, **fields):
    args = config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, **fields)
    trainer = trainer_cls(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); training_step divides by it
    return trainer


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


class Probes:
    """Records, for every forward, the embeddings' output and every block's input and output (before any later hook,
    so a block's recorded output is what the block itself computed)."""

    def __init__(self, model: nn.Module, blocks: nn.ModuleList):
        self.seen: dict[str, list[torch.Tensor]] = {}
        self.handles = [model.get_input_embeddings().register_forward_hook(self._output("embeddings"))]
        for i, block in enumerate(blocks):
            self.handles.append(block.register_forward_hook(self._output(f"out{i}")))
            self.handles.append(block.register_forward_pre_hook(self._input(f"in{i}"), with_kwargs=True))

    def _output(self, name):
        return lambda module, args, output: self.seen.setdefault(name, []).append(_hidden(output).detach().clone())

    def _input(self, name):
        def pre_hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            self.seen.setdefault(name, []).append(hidden.detach().clone())

        return pre_hook

    def __getitem__(self, name):
        return self.seen[name]

    def remove(self):
        for handle in self.handles:
            handle.remove()


# ----------------------------------------------------------------------------------------------------------------
# Where δ lands.


@pytest.mark.parametrize("family", ["bert", "deberta-v2", "llama", "gpt2"])
@pytest.mark.parametrize("site,index", [("layer:1", 1), ("layer:-2", 2)])
def test_delta_lands_on_the_chosen_blocks_output_and_nowhere_else(tmp_path, tokenizer, family, site, index):
    model = deep_model(family, 4, seed=1).train()
    probes = Probes(model, BLOCKS[family](model))
    trainer = _trainer(PGDATTrainer, PGDATConfig, tmp_path, model, adv_site=site)
    batch = batch_of(tokenizer, TEXTS, LABELS)
    assert bool((batch["attention_mask"] == 0).any())
    with torch.no_grad():
        clean = trainer._clean_forward(model, batch)
        torch.manual_seed(0)
        delta = torch.randn(clean.embeds.shape) * clean.mask  # a known δ, zero on padding
        trainer._perturbed_logits(model, clean, delta, live_embeds=False)
    probes.remove()
    # Two forwards were recorded: [clean, perturbed]. The trainer's `e` is the clean hidden state of block N.
    assert all(len(v) == 2 for name, v in probes.seen.items() if name != "embeddings")
    assert torch.equal(clean.embeds, probes[f"out{index}"][0])
    lookups = probes["embeddings"]  # GPT-2 also embeds its token_type_ids with the word embeddings: 2 per forward
    half = len(lookups) // 2
    assert all(torch.equal(after, before) for before, after in zip(lookups[:half], lookups[half:]))
    for i in range(index + 1):  # block N itself and the blocks below it compute what they did without δ
        assert torch.equal(probes[f"in{i}"][1], probes[f"in{i}"][0]), i
        assert torch.equal(probes[f"out{i}"][1], probes[f"out{i}"][0]), i
    assert torch.equal(probes[f"in{index + 1}"][1], probes[f"out{index}"][0] + delta)  # what block N passes on
    for i in range(index + 1, 4):
        assert not torch.allclose(probes[f"out{i}"][1], probes[f"out{i}"][0], atol=1e-3), i


@pytest.mark.parametrize("family", ["bert", "modernbert", "llama", "gpt2"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("site", ["layer:0", "layer:-1"])
def test_zero_delta_at_a_latent_site_gives_the_models_logits(tmp_path, tokenizer, family, padding_side, site):
    model = make_model(family, 2, seed=3).train()  # dropout off: train mode computes what eval mode does
    trainer = _trainer(PGDATTrainer, PGDATConfig, tmp_path, model, adv_site=site)
    tokenizer.padding_side = padding_side
    try:
        batch = batch_of(tokenizer, TEXTS, LABELS)
    finally:
        tokenizer.padding_side = "right"
    assert bool((batch["attention_mask"] == 0).any())  # the batch is padded on that side
    with torch.no_grad():
        reference = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        clean = trainer._clean_forward(model, batch)
        assert clean.embeds.shape == (3, batch["input_ids"].shape[1], 32)  # a hidden state, not e
        zero = torch.zeros_like(clean.embeds, dtype=torch.float32)
        for live in (False, True):
            assert torch.equal(trainer._perturbed_logits(model, clean, zero, live_embeds=live), reference)
    assert torch.equal(clean.logits, reference)


# ----------------------------------------------------------------------------------------------------------------
# One PGD-AT step by hand at "layer:1".


def _hand_pgd_at(model, block, batch, h, loss):
    """PGD-AT with δ on `block`'s output, written out with a plain forward hook: δ₀ = `fixed_init` at the clean hidden
    state, K steps ``δ ← Π(δ + η·g/‖g‖)`` with ``g = ∇δ Σ CE`` (the hidden state detached), then
    ``CE(clean) + α·CE(h + δ)`` with the hidden state live."""
    state = {}

    def hook(module, args, output):
        hidden = _hidden(output)
        state.setdefault("clean", hidden.detach())
        if "delta" in state:
            hidden = (hidden.detach() if state["detach"] else hidden) + state["delta"]
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = block.register_forward_hook(hook)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels, mask = batch["labels"], batch["attention_mask"].float().unsqueeze(-1)
    clean_logits = model(**inputs).logits
    delta = fixed_init(state["clean"], mask, h["init_std"])
    for _ in range(h["steps"]):
        state.update(delta=delta.detach().requires_grad_(), detach=True)
        (grad,) = torch.autograd.grad(loss(model(**inputs).logits, labels, "sum"), state["delta"])
        delta = _l2_ball((state["delta"].detach() + h["step_size"] * _l2_step(grad, mask)) * mask, h["epsilon"])
    state.update(delta=delta, detach=False)
    adv_logits = model(**inputs).logits
    handle.remove()
    return loss(clean_logits, labels, "mean") + h["weight"] * loss(adv_logits, labels, "mean")


def _classifier_ce(logits, labels, reduction):
    return F.cross_entropy(logits, labels, reduction=reduction)


HAND = dict(steps=2, step_size=0.3, epsilon=0.5, init_std=0.05, weight=0.7)


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
def test_pgd_at_step_at_layer_1_equals_the_hand_computed_objective(tmp_path, tokenizer, monkeypatch, task):
    monkeypatch.setattr("advtrain.perturbation.init_delta", fixed_init)
    if task == "classification":
        make, blocks, loss = (lambda: deep_model("bert", 3, seed=2)), BLOCKS["bert"], _classifier_ce
        batch = batch_of(tokenizer, TEXTS, LABELS)
    else:
        make, blocks, loss = (lambda: make_causal_lm("llama", seed=2, layers=3)), BLOCKS["llama"], _ce
        batch = lm_batch(tokenizer)
    fields = dict(adv_site="layer:1", adv_steps=HAND["steps"], adv_step_size=HAND["step_size"],
                  adv_epsilon=HAND["epsilon"], adv_init_std=HAND["init_std"], adv_norm="l2", adv_step_norm="l2",
                  adv_weight=HAND["weight"])
    model = make().train()
    expected = _hand_pgd_at(model, blocks(model)[1], batch, HAND, loss)
    expected.backward()
    expected_grads = grads_of(model)

    model = make().train()
    trainer = _trainer(PGDATTrainer, PGDATConfig, tmp_path, model, **fields)
    value = trainer.compute_loss(model, batch)
    torch.testing.assert_close(value, expected.detach(), atol=1e-5, rtol=0)
    assert trainer._adv_metrics["adv/loss"][-1] > trainer._adv_metrics["clean/loss"][-1]  # δ ascended the loss
    model.zero_grad()
    trainer.training_step(model, batch)  # the split path: clean backward, then the term's
    grads = grads_of(model)
    assert grads.keys() == expected_grads.keys() and len(grads) > 10
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


# ----------------------------------------------------------------------------------------------------------------
# Every trainer takes the field.


def _mlm_batch(tokenizer):
    batch = batch_of(tokenizer, TEXTS, LABELS)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 1:3] = batch["input_ids"][:, 1:3]
    batch["input_ids"] = batch["input_ids"].clone()
    batch["input_ids"][:, 1:3] = tokenizer.mask_token_id
    batch["labels"] = labels
    return batch


# name: (trainer, config, fields, model, batch)
CELLS = {
    "pgd_at": (PGDATTrainer, PGDATConfig, {}, "classifier"),
    "pgd_at-fast": (PGDATTrainer, PGDATConfig, {"adv_fast_first_step": True, "adv_init_std": 0.0}, "classifier"),
    "lds": (LDSTrainer, LDSConfig, {"adv_init_std": 0.05}, "classifier"),
    "tat": (TATTrainer, TATConfig, {}, "classifier"),
    "alum": (ALUMTrainer, ALUMConfig, {}, "classifier"),
    "alum-recompute": (ALUMTrainer, ALUMConfig, {"adv_backward": "recompute"}, "classifier"),
    "freelb": (FreeLBTrainer, FreeLBConfig, {"adv_init_mag": 0.3}, "classifier"),
    "r3f": (R3FTrainer, R3FConfig, {"adv_init_std": 0.05}, "classifier"),
    "alum-masked_lm": (ALUMTrainer, ALUMConfig, {}, "masked_lm"),
    "pgd_at-causal_lm": (PGDATTrainer, PGDATConfig, {}, "causal_lm"),
}


@pytest.mark.parametrize("cell", CELLS)
def test_every_trainer_perturbs_the_chosen_block(tmp_path, tokenizer, cell):
    trainer_cls, config_cls, fields, kind = CELLS[cell]
    if kind == "classifier":
        model, batch, blocks = make_model("bert", 2, seed=4), batch_of(tokenizer, TEXTS, LABELS), BLOCKS["bert"]
    elif kind == "masked_lm":
        model, batch, blocks = make_model("bert", masked_lm=True, seed=4), _mlm_batch(tokenizer), BLOCKS["bert"]
    else:
        model, batch, blocks = make_causal_lm("llama", seed=4), lm_batch(tokenizer), BLOCKS["llama"]
    probes = Probes(model, blocks(model))
    trainer = _trainer(trainer_cls, config_cls, tmp_path, model, adv_site="layer:0", **{**STEP, **fields})
    model.train()
    torch.manual_seed(5)
    loss = trainer.training_step(model, batch)
    probes.remove()
    assert bool(torch.isfinite(loss)) and loss > 0
    norm = trainer._adv_metrics["adv/delta_norm"][-1]
    assert bool(torch.isfinite(norm)) and norm > 0
    assert trainer._adv_metrics["adv/skipped"][-1] == 0
    # In every forward the embeddings are the clean ones; what block 1 receives is block 0's output plus δ, and δ is
    # zero on padding. At least one forward is perturbed (the inner steps and the term's).
    padding = batch["attention_mask"] == 0
    assert all(torch.equal(e, probes["embeddings"][0]) for e in probes["embeddings"])
    added = [after - before for before, after in zip(probes["out0"], probes["in1"])]
    assert sum(bool(d.abs().max() > 0) for d in added) >= 1
    assert all(not bool(d[padding].any()) for d in added)
    assert any(float(d.flatten(1).norm(dim=1).mean()) == pytest.approx(float(norm), rel=1e-3) for d in added)


@pytest.mark.parametrize("cell,site", [("pgd_at-split", "layer:0"), ("freelb-joint", "layer:-1")])
def test_accumulation_4x1_equals_1x4_at_a_latent_site(tmp_path, tokenizer, monkeypatch, cell, site, one_thread):
    monkeypatch.setattr("advtrain.perturbation.init_delta", deterministic_init)  # the same δ₀ in both layouts
    trainer_cls = {"pgd_at-split": PGDATTrainer, "freelb-joint": FreeLBTrainer}[cell]
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    before = make_model("bert", 2, seed=4).double().state_dict()
    weights = []
    for batch_size, accumulation in ((4, 1), (1, 4)):
        model = make_model("bert", 2, seed=4).double()
        args = matrix_args(cell, tmp_path, adv_site=site, per_device_train_batch_size=batch_size,
                           gradient_accumulation_steps=accumulation)
        trainer = _train(trainer_cls, args, model, data, tokenizer)
        assert trainer.state.global_step == 1
        weights.append({n: p.detach().clone() for n, p in model.state_dict().items()})
    moved = max(float((weights[0][n] - before[n]).abs().max()) for n in before)
    assert moved > 1e-3
    assert _relative_difference(weights[0], weights[1], before) <= 1e-5


@pytest.mark.parametrize("steps", [1, 2])
def test_fast_first_step_at_a_latent_site_equals_the_exact_path(tmp_path, tokenizer, steps):
    batch = batch_of(tokenizer, TEXTS, LABELS)
    results = []
    for fast in (False, True):
        model = make_model("bert", 2, seed=3).train()
        trainer = _trainer(PGDATTrainer, PGDATConfig, tmp_path, model, adv_site="layer:0", adv_steps=steps,
                           adv_fast_first_step=fast, adv_init_std=0.0, **STEP)
        loss = trainer.training_step(model, batch)
        results.append((loss, trainer._adv_metrics["adv/delta_norm"][-1], grads_of(model)))
    (exact_loss, exact_norm, exact), (fast_loss, fast_norm, fast) = results
    assert exact_norm > 0
    torch.testing.assert_close(fast_loss, exact_loss, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fast_norm, exact_norm, atol=1e-6, rtol=1e-5)
    for name, grad in exact.items():
        torch.testing.assert_close(fast[name], grad, atol=1e-6, rtol=1e-4, msg=name)


# ----------------------------------------------------------------------------------------------------------------
# Finding the blocks, and the messages.


def test_blocks_are_found_in_every_family_and_under_peft():
    import peft

    for family, path in BLOCK_PATHS.items():
        model = make_model(family)
        assert transformer_blocks(model) == (path, BLOCKS[family](model)), family
    masked_lm, causal_lm = make_model("bert", masked_lm=True), make_causal_lm("llama", layers=1)
    assert transformer_blocks(masked_lm) == ("bert.encoder.layer", masked_lm.bert.encoder.layer)
    assert transformer_blocks(causal_lm) == ("model.layers", causal_lm.model.layers)
    wrapped = peft.get_peft_model(make_model("llama"), peft.LoraConfig(task_type="SEQ_CLS", r=2,
                                                                      target_modules=["q_proj"]))
    assert transformer_blocks(wrapped) == ("model.layers", wrapped.get_base_model().model.layers)


def test_bad_site_values_are_refused_with_the_accepted_forms(tmp_path):
    for bad in ("layer:x", "layers:1", "layer:", "layer:1.5", "embedding", "", 3, None):
        with pytest.raises(ValueError, match=r"`adv_site` must be 'embeddings' or 'layer:N' with N an integer"):
            PGDATConfig(output_dir=str(tmp_path), adv_site=bad)
    assert [parse_site(s) for s in ("embeddings", "layer:0", "layer:11", "layer:-1")] == [None, 0, 11, -1]
    (parsed,) = HfArgumentParser((PGDATConfig,)).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--adv_site", "layer:-2"])
    assert parsed.adv_site == "layer:-2" and parsed.to_dict()["adv_site"] == "layer:-2"
    assert PGDATConfig(output_dir=str(tmp_path)).adv_site == "embeddings"


def test_a_block_index_out_of_range_is_refused_with_the_models_block_count(tmp_path, tokenizer):
    message = (r"`adv_site='layer:{}'` names block {}, but BertForSequenceClassification has 2 transformer blocks "
               r"\(bert.encoder.layer\): use 'layer:0' to 'layer:1' \(or 'layer:-2' to 'layer:-1', from the end\)")
    for index in (2, -3):
        with pytest.raises(ValueError, match=message.format(index, index)):
            PGDATTrainer(model=make_model("bert"), args=PGDATConfig(output_dir=str(tmp_path), adv_site=f"layer:{index}"))
    # Set after the trainer was built: refused when training starts, before the first step.
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    trainer = PGDATTrainer(model=make_model("bert"), args=PGDATConfig(output_dir=str(tmp_path), report_to=[],
                                                                     use_cpu=True, max_steps=1),
                           train_dataset=data)
    trainer.args.adv_site = "layer:5"
    with pytest.raises(ValueError, match=message.format(5, 5)):
        trainer.train()
    assert trainer.state.global_step == 0


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, hidden):
        return self.linear(hidden).tanh()


class _TinyModel(nn.Module):
    """A model outside transformers: word embeddings, 2 plain blocks (`layers`), a head; optionally a second list of
    blocks (`decoder_layers`, as an encoder-decoder has), every block run `repeat` times (shared weights), or the
    blocks run on the tokens flattened to ``(batch · seq_len, hidden)`` (an unpadded layout)."""

    def __init__(self, blocks: int = 2, second_stack: bool = False, repeat: int = 1, flat: bool = False):
        super().__init__()
        self.embeddings = nn.Embedding(400, 8)
        self.layers = nn.ModuleList([_Block() for _ in range(blocks)])
        self.decoder_layers = nn.ModuleList([_Block()]) if second_stack else None
        self.head = nn.Linear(8, 2)
        self.repeat, self.flat = repeat, flat

    def get_input_embeddings(self):
        return self.embeddings

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        hidden = self.embeddings(input_ids)
        hidden = hidden.flatten(0, 1) if self.flat else hidden
        for block in [*self.layers, *(self.decoder_layers or [])]:
            for _ in range(self.repeat):
                hidden = block(hidden)
        hidden = hidden.reshape(*input_ids.shape, -1)
        return SequenceClassifierOutput(logits=self.head(hidden[:, 0]))


def test_models_whose_blocks_cannot_be_found_or_perturbed_are_refused_by_name(tmp_path):
    args = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, adv_site="layer:0")
    with pytest.raises(ValueError, match=r"_TinyModel cannot be perturbed at a latent site: .* and found several "
                                         r"\(layers, decoder_layers\)\. Use adv_site='embeddings'"):
        PGDATTrainer(model=_TinyModel(second_stack=True), args=PGDATConfig(**args))
    with pytest.raises(ValueError, match=r"and found no such list \(none\)"):
        PGDATTrainer(model=_TinyModel(blocks=0), args=PGDATConfig(**args))
    model = _TinyModel()
    assert transformer_blocks(model) == ("layers", model.layers)
    PGDATTrainer(model=_TinyModel(second_stack=True), args=PGDATConfig(output_dir=str(tmp_path), report_to=[],
                                                                       use_cpu=True))  # the embedding site: accepted
    # A block run twice in one forward (shared weights) would get δ twice.
    model = _TinyModel(repeat=2)
    trainer = _trainer(PGDATTrainer, PGDATConfig, tmp_path, model, adv_site="layer:1")
    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "labels": torch.tensor([1])}
    with pytest.raises(ValueError, match=r"_TinyModel ran its block 1 \(layers.1\) 2 times in one forward"):
        trainer._clean_forward(model, batch)
    # Hidden states in another layout than the batch's (batch, seq_len): the padding mask would not line up.
    model = _TinyModel(flat=True)
    trainer = _trainer(PGDATTrainer, PGDATConfig, tmp_path, model, adv_site="layer:0")
    with pytest.raises(ValueError, match=r"_TinyModel's block 0 \(layers.0\) returns \(4, 8\), not a tensor of shape "
                                         r"\(batch, seq_len, hidden\) with \(batch, seq_len\) = \(1, 4\) \(or a tuple"):
        trainer._clean_forward(model, batch)


@pytest.mark.parametrize("site", ["layer:0", "layer:-1"])
def test_gradient_checkpointing_gives_the_same_step_at_a_latent_site(tmp_path, tokenizer, site):
    batch = batch_of(tokenizer, TEXTS, LABELS)
    results = []
    for checkpointing in (False, True):
        model = make_model("bert", 2, seed=8)
        trainer = _trainer(PGDATTrainer, PGDATConfig, tmp_path, model, adv_site=site, adv_init_std=0.05,
                           gradient_checkpointing=checkpointing, **STEP)
        if checkpointing:  # what Trainer.train() does first
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)
            assert model.is_gradient_checkpointing
            trainer._check_training_inputs()  # each BertLayer is its own checkpoint: accepted
        model.train()
        calls = []  # calls of a linear layer inside both checkpointed blocks (forward hooks do not see the recompute)
        for block in model.bert.encoder.layer:
            dense = block.output.dense
            dense.forward = lambda x, forward=dense.forward, calls=calls: calls.append(1) or forward(x)
        torch.manual_seed(9)
        loss = trainer.training_step(model, batch)
        results.append((loss, grads_of(model), len(calls)))
    (loss_a, grads_a, calls_a), (loss_b, grads_b, calls_b) = results
    assert calls_b > calls_a  # the checkpointed blocks were recomputed in the backward
    assert trainer._adv_metrics["adv/loss"][-1] > trainer._adv_metrics["clean/loss"][-1]  # δ ascended the loss
    torch.testing.assert_close(loss_b, loss_a, atol=1e-6, rtol=1e-5)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-6, rtol=1e-4, msg=name)


def test_gradient_checkpointing_is_refused_for_blocks_that_are_not_their_own_checkpoint(tmp_path, tokenizer):
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    args = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, adv_site="layer:0",
                       gradient_checkpointing=True)
    trainer = PGDATTrainer(model=_TinyModel(), args=args, train_dataset=data)
    with pytest.raises(ValueError, match=r"`gradient_checkpointing=True` with `adv_site='layer:0'`: _TinyModel's "
                                         r"block 0 \(layers.0\) is a _Block, not a transformers "
                                         r"GradientCheckpointingLayer.*Turn gradient_checkpointing off"):
        trainer.train()
    trainer.args.adv_site = "embeddings"  # the embedding site has no such condition
    trainer._check_training_inputs()


def test_autocast_warning_at_a_latent_site(tmp_path, mr_small, collator, monkeypatch):
    # transformers 4's TrainingArguments exports bf16 as ACCELERATE_MIXED_PRECISION (see tests/test_resilience.py).
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    args = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, save_strategy="no",
                       per_device_train_batch_size=4, bf16=True, adv_site="layer:-1", logging_steps=1)
    trainer = PGDATTrainer(model=make_model("bert", 2), args=args, train_dataset=mr_small, data_collator=collator)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train()
    finally:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    assert len([w for w in caught if "under bfloat16 autocast" in str(w.message)]) == 1
    log = next(entry for entry in trainer.state.log_history if "adv/delta_norm" in entry)
    assert log["adv/delta_norm"] == pytest.approx(3e-3, rel=1e-3)  # the L2 ball, reached by the 3 default steps
