"""TRL's `SFTTrainer` with advtrain's objectives (`advtrain.integrations.trl`), on tiny `LlamaForCausalLM` and
`Qwen2ForCausalLM` models built from configs and a word-level tokenizer built from MR's words (nothing downloaded).

What is checked: the configs keep TRL's defaults and the method's, and the trainers `SFTTrainer`'s signature; on a
batch that TRL tokenised and collated, one step of every method through the TRL path gives the parameter gradient of
advtrain's own trainer (δ₀ fixed, dropout off), for text and prompt-completion data (completion-only labels);
`entropy`, `mean_token_accuracy`, `num_tokens` and the clean loss are `SFTTrainer`'s own; padding-free batches give the
step of padded ones with per-token norms; accumulation 4×1 ≡ 1×4; `train()` runs and logs both sides' metrics; LoRA
trains only the adapters; the combinations that would be wrong are refused with a message.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import math
import re
import types

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    HfArgumentParser,
    LlamaConfig,
    LlamaForSequenceClassification,
    MixtralConfig,
    MixtralForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

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
from advtrain.losses import count_predicted
from advtrain.trainers.tat import CAUSAL_LM_REFUSAL
from conftest import VOCAB_SIZE, grads_of, read_jsonl
from test_causal_lm import FAMILIES, fixed_init, fixed_uniform, make_causal_lm

trl = pytest.importorskip("trl")
from trl import SFTConfig, SFTTrainer  # noqa: E402

from advtrain.integrations.trl import (  # noqa: E402
    AdversarialSFTConfigMixin,
    AdversarialSFTMixin,
    ALUMSFTConfig,
    ALUMSFTTrainer,
    FreeLBSFTConfig,
    FreeLBSFTTrainer,
    LDSSFTConfig,
    LDSSFTTrainer,
    PGDATSFTConfig,
    PGDATSFTTrainer,
    R3FSFTConfig,
    R3FSFTTrainer,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]  # ids 0-3: make_causal_lm's pad, -, bos and eos


def build_lm_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over MR's most frequent words that starts every text with ``<s>`` (EOS ``</s>``, padding
    ``<pad>``), as a causal LM's tokenizer does."""
    counts = collections.Counter(w for row in read_jsonl("mr", "train", 3000) for w in row["text"].split())
    words = SPECIALS + [w for w, _ in counts.most_common(vocab_size - len(SPECIALS))]
    model = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=model, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


@pytest.fixture(scope="module")
def lm_tokenizer() -> PreTrainedTokenizerFast:
    return build_lm_tokenizer()


def text_dataset(n: int = 8) -> Dataset:
    """`n` MR sentences as a language-modeling dataset (``text``): TRL tokenises them and appends the EOS."""
    return Dataset.from_list([{"text": row["text"]} for row in read_jsonl("mr", "train", n)])


def prompt_completion_dataset(n: int = 8) -> Dataset:
    """`n` MR sentences cut into a prompt (the first 3 words) and its completion: TRL labels the completion only."""
    rows = []
    for row in read_jsonl("mr", "train", n):
        words = row["text"].split()
        rows.append({"prompt": " ".join(words[:3]), "completion": " " + " ".join(words[3:])})
    return Dataset.from_list(rows)


@pytest.fixture
def fixed_noise(monkeypatch):
    """A fixed, per-token δ₀ (and FreeLB's / R3F's start), the same whatever the batch layout."""
    monkeypatch.setattr("advtrain.perturbation.init_delta", fixed_init)
    monkeypatch.setattr("advtrain.perturbation.uniform_delta", fixed_uniform)


BASE = dict(report_to=[], use_cpu=True, bf16=False, disable_tqdm=True, seed=0)
# The cells: (SFT trainer, SFT config, advtrain trainer, advtrain config, adversarial fields). Strong settings, so that
# the term moves the gradient far above the tolerance.
PGD = dict(adv_steps=2, adv_step_size=0.3, adv_epsilon=0.5, adv_init_std=0.05, adv_weight=0.7)
CELLS = {
    "alum": (ALUMSFTTrainer, ALUMSFTConfig, ALUMTrainer, ALUMConfig,
             dict(adv_init_std=0.05, adv_step_size=0.2, adv_weight=0.7)),
    "pgd_at": (PGDATSFTTrainer, PGDATSFTConfig, PGDATTrainer, PGDATConfig, PGD),
    "lds": (LDSSFTTrainer, LDSSFTConfig, LDSTrainer, LDSConfig, PGD),
    "freelb": (FreeLBSFTTrainer, FreeLBSFTConfig, FreeLBTrainer, FreeLBConfig,
               dict(adv_steps=3, adv_step_size=0.4, adv_epsilon=0.5, adv_init_mag=0.3)),
    "r3f": (R3FSFTTrainer, R3FSFTConfig, R3FTrainer, R3FConfig, dict(adv_init_std=0.3, adv_weight=0.7)),
}
SFT_PAIRS = [(cell[1], cell[3]) for cell in CELLS.values()]


def sft_trainer(trainer_cls, config_cls, tmp_path, model, data, tokenizer, **fields):
    args = config_cls(output_dir=str(tmp_path), **{**BASE, "gradient_checkpointing": False, **fields})
    trainer = trainer_cls(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); training_step divides by it
    return trainer


def collated(trainer, n: int = 4) -> dict[str, torch.Tensor]:
    """The first `n` prepared examples, collated by the trainer's own collator (TRL's)."""
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def step(trainer, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = trainer.training_step(model, batch, num_items_in_batch=count_predicted(batch["labels"], "causal_lm"))
    return loss.detach(), grads_of(model)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and len(a) > 10
    return max(float((a[n] - b[n]).abs().max()) for n in a)


# ----------------------------------------------------------------------------------------------------------------
# 1. Configs and signatures.


@pytest.mark.parametrize(("sft_config", "method_config"), SFT_PAIRS, ids=list(CELLS))
def test_config_keeps_trls_defaults_and_the_methods(sft_config, method_config):
    ours = {f.name: f for f in dataclasses.fields(sft_config)}
    for theirs in (SFTConfig, method_config):
        for f in dataclasses.fields(theirs):
            if theirs is SFTConfig or f.name not in {g.name for g in dataclasses.fields(TrainingArguments)}:
                assert (ours[f.name].default, ours[f.name].default_factory) == (f.default, f.default_factory), f.name
    assert issubclass(sft_config, AdversarialSFTConfigMixin)
    args = sft_config(output_dir="out", use_cpu=True)
    assert args.learning_rate == 2e-5 and args.logging_steps == 10 and args.gradient_checkpointing and args.bf16
    assert args.gradient_checkpointing_kwargs == {"use_reentrant": False}  # advtrain's check ran
    (parsed,) = HfArgumentParser(sft_config).parse_args_into_dataclasses(
        ["--output_dir", "out", "--use_cpu", "true", "--adv_weight", "0.25", "--max_length", "17"])
    assert parsed.adv_weight == 0.25 and parsed.max_length == 17


@pytest.mark.parametrize("trainer_cls", [cell[0] for cell in CELLS.values()], ids=list(CELLS))
def test_trainer_keeps_sfttrainers_signature(trainer_cls):
    ours, theirs = (inspect.signature(c.__init__).parameters for c in (trainer_cls, SFTTrainer))
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [(p.name, p.kind, p.default) for p in theirs.values()]
    for name in ("compute_loss", "training_step", "log"):  # the Hugging Face signatures
        ours, theirs = (inspect.signature(getattr(c, name)).parameters for c in (trainer_cls, Trainer))
        assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in theirs.values()], name
    assert issubclass(trainer_cls, AdversarialSFTMixin) and issubclass(trainer_cls, SFTTrainer)


def test_args_are_upgraded_with_every_field_kept(tmp_path, lm_tokenizer):
    data = text_dataset(4)
    sft = SFTConfig(output_dir=str(tmp_path), max_length=17, completion_only_loss=False, **BASE)
    trainer = ALUMSFTTrainer(model=make_causal_lm(layers=1), args=sft, train_dataset=data, processing_class=lm_tokenizer)
    assert type(trainer.args) is ALUMSFTConfig
    assert trainer.args.max_length == 17 and trainer.args.completion_only_loss is False
    assert trainer.args.adv_step_size == ALUMConfig.adv_step_size and trainer.args.adv_epsilon == 0.0

    alum = ALUMConfig(output_dir=str(tmp_path), adv_step_size=0.3, **BASE)
    trainer = ALUMSFTTrainer(model=make_causal_lm(layers=1), args=alum, train_dataset=data, processing_class=lm_tokenizer)
    assert type(trainer.args) is ALUMSFTConfig and trainer.args.adv_step_size == 0.3
    assert trainer.args.max_length == 1024 and trainer.args.learning_rate == alum.learning_rate

    # A plain TrainingArguments, and a model given as a path (loaded by SFTTrainer, with the tokenizer beside it).
    folder = tmp_path / "tiny-llama"
    make_causal_lm(layers=1).save_pretrained(folder)
    lm_tokenizer.save_pretrained(folder)
    plain = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, **BASE)
    trainer = PGDATSFTTrainer(model=str(folder), args=plain, train_dataset=data)
    assert type(trainer.args) is PGDATSFTConfig and trainer.args.learning_rate == 1e-3
    assert trainer.args.adv_norm == "l2" and trainer.args.max_length == 1024
    assert type(trainer.model).__name__ == "LlamaForCausalLM" and trainer.model.dtype == torch.float32


# ----------------------------------------------------------------------------------------------------------------
# 2. One step through TRL equals advtrain's own step.


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cell", CELLS)
def test_trl_step_equals_the_plain_trainer_step(tmp_path, lm_tokenizer, fixed_noise, family, cell):
    sft_cls, sft_config, plain_cls, plain_config, fields = CELLS[cell]
    model = make_causal_lm(family, seed=3)
    trainer = sft_trainer(sft_cls, sft_config, tmp_path, model, text_dataset(), lm_tokenizer, **fields)
    batch = collated(trainer)
    # TRL's tokenisation: <s> first, </s> appended, right padding, the labels the input ids with -100 on the padding.
    assert bool((batch["input_ids"][:, 0] == 2).all()) and int((batch["input_ids"] == 3).sum()) == 4
    assert bool((batch["labels"] == -100).any()) and torch.equal(batch["labels"] != -100, batch["attention_mask"] == 1)
    loss, grads = step(trainer, model, batch)

    reference = make_causal_lm(family, seed=3)
    plain = plain_cls(model=reference, args=plain_config(output_dir=str(tmp_path), **BASE, **fields))
    plain.current_gradient_accumulation_steps = 1
    expected_loss, expected = step(plain, reference, batch)
    torch.testing.assert_close(loss, expected_loss, rtol=0, atol=1e-5)
    assert max_difference(grads, expected) <= 1e-5
    assert trainer._adv_metrics["adv/loss"] and trainer._metrics["train"]["entropy"]

    # The adversarial term moves the gradient far above the tolerance: at adv_weight=0 the step is SFTTrainer's.
    clean_model = make_causal_lm(family, seed=3)
    clean = sft_trainer(sft_cls, sft_config, tmp_path, clean_model, text_dataset(), lm_tokenizer,
                        **{**fields, "adv_weight": 0.0})
    _, clean_grads = step(clean, clean_model, batch)
    assert max_difference(grads, clean_grads) > 1e-3


@pytest.mark.parametrize("cell", ["alum", "pgd_at"])
def test_completion_only_labels_reach_the_objective(tmp_path, lm_tokenizer, fixed_noise, cell):
    """A prompt-completion dataset: TRL labels the completion only (completion_only_loss defaults to True there), and
    advtrain's objective uses those labels."""
    sft_cls, sft_config, plain_cls, plain_config, fields = CELLS[cell]
    model = make_causal_lm("qwen2", seed=3)
    trainer = sft_trainer(sft_cls, sft_config, tmp_path, model, prompt_completion_dataset(), lm_tokenizer, **fields)
    batch = collated(trainer)
    assert bool((batch["labels"][:, :4] == -100).all())  # <s> and the 3 prompt words
    assert bool((batch["labels"][:, 4] != -100).all())
    _, grads = step(trainer, model, batch)
    reference = make_causal_lm("qwen2", seed=3)
    plain = plain_cls(model=reference, args=plain_config(output_dir=str(tmp_path), **BASE, **fields))
    plain.current_gradient_accumulation_steps = 1
    _, expected = step(plain, reference, batch)
    assert max_difference(grads, expected) <= 1e-5
    # The prompt's labels matter: with the whole sequence labelled the step is another.
    full = dict(batch, labels=torch.where(batch["attention_mask"] == 1, batch["input_ids"], -100))
    reference = make_causal_lm("qwen2", seed=3)
    _, unmasked = step(plain, reference, full)
    assert max_difference(grads, unmasked) > 1e-3


def test_clean_pass_metrics_are_sfttrainers(tmp_path, lm_tokenizer, fixed_noise):
    """``entropy``, ``mean_token_accuracy``, ``num_tokens`` and the clean loss of ALUM's clean pass equal what
    `SFTTrainer.compute_loss` records on the same batch. Half the rows are the model's own greedy continuations, so that
    the accuracy is strictly between 0 and 1."""
    model = make_causal_lm("llama", seed=3)
    prompts = torch.tensor([[2, 10, 11], [2, 20, 21]])
    greedy = model.generate(prompts, max_new_tokens=10, do_sample=False, bad_words_ids=[[i] for i in range(4)],
                            pad_token_id=0, attention_mask=torch.ones_like(prompts))
    rows = [{"input_ids": ids} for ids in greedy.tolist()]
    rows += [{"input_ids": lm_tokenizer(row["text"])["input_ids"][:12]} for row in read_jsonl("mr", "train", 2)]
    data = Dataset.from_list(rows)  # pre-tokenised: TRL keeps the ids and labels them all

    trainer = sft_trainer(ALUMSFTTrainer, ALUMSFTConfig, tmp_path, model, data, lm_tokenizer, **CELLS["alum"][4])
    batch = collated(trainer)
    step(trainer, model, batch)
    ours = dict(trainer._metrics["train"])

    reference = make_causal_lm("llama", seed=3)
    sft = SFTTrainer(model=reference, args=SFTConfig(output_dir=str(tmp_path), **BASE), train_dataset=data,
                     processing_class=lm_tokenizer)
    reference.train()
    with torch.no_grad():
        loss = sft.compute_loss(reference, dict(batch))
    theirs = sft._metrics["train"]
    assert 0 < theirs["mean_token_accuracy"][0] < 1
    assert ours["mean_token_accuracy"] == theirs["mean_token_accuracy"]
    assert ours["entropy"][0] == pytest.approx(theirs["entropy"][0], abs=1e-5)
    assert ours["num_tokens"] == theirs["num_tokens"] == [int(batch["attention_mask"].sum())]
    assert trainer._adv_metrics["clean/loss"][0].item() == pytest.approx(loss.item(), abs=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# 3. Padding-free batches, accumulation.


PADDING_FREE_CELLS = {
    "alum": ("alum", {}),  # ALUM's defaults are per-token L∞
    "pgd_at-linf": ("pgd_at", dict(adv_norm="linf", adv_step_norm="linf", adv_epsilon=0.2)),
    "r3f": ("r3f", {}),
}


@pytest.mark.parametrize("cell", PADDING_FREE_CELLS)
def test_padding_free_batch_gives_the_padded_step(tmp_path, lm_tokenizer, fixed_noise, cell):
    """With per-token norms the step on TRL's padding-free row (the 4 examples flattened, position_ids restarting at
    each, no attention mask) equals the step on the same examples padded."""
    name, extra = PADDING_FREE_CELLS[cell]
    sft_cls, sft_config, _, _, fields = CELLS[name]
    fields = {**fields, **extra, "max_length": None}
    results = []
    for padding_free in (True, False):
        model = make_causal_lm("llama", seed=3)
        trainer = sft_trainer(sft_cls, sft_config, tmp_path, model, text_dataset(4), lm_tokenizer,
                              padding_free=padding_free, **fields)
        # As a model's config says (transformers 4 leaves it, 5 sets it from `TrainingArguments.use_cache`): the step
        # must still run without a KV cache, with which transformers would let the flattened examples see each other.
        model.config.use_cache = True
        batch = collated(trainer)
        assert (batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch) == padding_free
        results.append(step(trainer, model, batch))
    (loss_free, grads_free), (loss_padded, grads_padded) = results
    torch.testing.assert_close(loss_free, loss_padded, rtol=0, atol=1e-5)
    assert max_difference(grads_free, grads_padded) <= 1e-5


def _train(trainer) -> dict[str, torch.Tensor]:
    trainer.train()
    assert trainer.state.global_step == trainer.args.max_steps
    return {n: p.detach().clone() for n, p in trainer.model.state_dict().items()}


def test_accumulation_4x1_equals_1x4_through_trl(tmp_path, lm_tokenizer, fixed_noise):
    """TRL's prepared examples carry different numbers of label tokens; the window's token mean makes 4 examples ×
    accumulation 1 and 1 × 4 the same step (float64, so that what is compared is the weighting)."""
    data = text_dataset(8)
    before = make_causal_lm("llama", seed=4).double().state_dict()
    weights = []
    for batch_size, accumulation in ((4, 1), (1, 4)):
        args = ALUMSFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=0.5,
                             lr_scheduler_type="constant", max_grad_norm=0.0, save_strategy="no", max_steps=2,
                             gradient_checkpointing=False, **BASE, **CELLS["alum"][4])
        trainer = ALUMSFTTrainer(model=make_causal_lm("llama", seed=4).double(), args=args, train_dataset=data,
                                 processing_class=lm_tokenizer)
        assert len({len(ids) for ids in trainer.train_dataset["input_ids"][:4]}) > 2
        weights.append(_train(trainer))
    change = sum(float((weights[0][n] - before[n]).pow(2).sum()) for n in before) ** 0.5
    gap = sum(float((weights[0][n] - weights[1][n]).pow(2).sum()) for n in before) ** 0.5
    assert change > 1e-2 and gap / change <= 1e-5


# ----------------------------------------------------------------------------------------------------------------
# 4. train(), logging, LoRA.


@pytest.mark.parametrize("cell", ["alum", "freelb"])
def test_train_runs_and_logs_both_sides_metrics(tmp_path, lm_tokenizer, cell):
    sft_cls, sft_config, _, _, fields = CELLS[cell]
    # TRL's defaults otherwise: gradient checkpointing on (advtrain makes it non-reentrant).
    args = sft_config(output_dir=str(tmp_path), max_steps=2, logging_steps=1, per_device_train_batch_size=4,
                      save_strategy="no", max_length=24, **BASE, **fields)
    trainer = sft_cls(model=make_causal_lm("qwen2", seed=2), args=args, train_dataset=text_dataset(8),
                      eval_dataset=text_dataset(4), processing_class=lm_tokenizer)
    trainer.train()
    assert trainer.model.is_gradient_checkpointing
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        assert math.isfinite(entry["loss"]) and entry["loss"] > 0
        for name in ("clean/loss", "adv/loss", "adv/delta_norm", "adv/skipped", "entropy", "mean_token_accuracy",
                     "num_tokens"):
            assert name in entry and math.isfinite(entry[name]), name
        assert entry["adv/delta_norm"] > 0 and entry["adv/skipped"] == 0
    assert logs[1]["num_tokens"] > logs[0]["num_tokens"] > 0
    evaluation = trainer.evaluate()  # the clean loss, through SFTTrainer's own compute_loss
    assert math.isfinite(evaluation["eval_loss"]) and "eval_mean_token_accuracy" in evaluation


def test_lora_through_trl_trains_only_the_adapters(tmp_path, lm_tokenizer):
    peft = pytest.importorskip("peft")
    args = ALUMSFTConfig(output_dir=str(tmp_path), max_steps=2, logging_steps=1, per_device_train_batch_size=4,
                         save_strategy="no", learning_rate=1e-2, max_length=24, **BASE, **CELLS["alum"][4])
    lora = peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
                           target_modules=["q_proj", "v_proj"])
    trainer = ALUMSFTTrainer(model=make_causal_lm("llama", seed=5), args=args, train_dataset=text_dataset(8),
                             processing_class=lm_tokenizer, peft_config=lora)
    model = trainer.model
    assert isinstance(model, peft.PeftModel)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    assert all("adv/loss" in entry for entry in trainer.state.log_history if "loss" in entry)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any("lora_B" in n for n in changed) and all("lora_" in n for n in changed), sorted(changed)
    base = [n for n in before if "lora_" not in n]
    assert len(base) > 10 and not set(base) & changed  # bit-identical


# ----------------------------------------------------------------------------------------------------------------
# 5. What is refused, and why.


@pytest.mark.parametrize(
    ("config_cls", "fields", "message"),
    [
        (ALUMSFTConfig, dict(loss_type="dft"), "`loss_type='dft'` is not supported by ALUMSFTConfig"),
        (ALUMSFTConfig, dict(activation_offloading=True), "`activation_offloading=True` is not supported"),
        (ALUMSFTConfig, dict(label_smoothing_factor=0.1), "`label_smoothing_factor` must be 0"),
        (PGDATSFTConfig, dict(padding_free=True), "padding_free=True collates each batch into a single row"),
        (PGDATSFTConfig, dict(packing=True), "packing=True with packing_strategy='bfd' collates"),
        (LDSSFTConfig, dict(packing=True, packing_strategy="bfd_split", adv_norm="linf"), "adv_step_norm='l2' normal"),
        (ALUMSFTConfig, dict(padding_free=True, adv_step_norm="l2"), "adv_step_norm='l2' normalise δ per example"),
        (FreeLBSFTConfig, dict(padding_free=True, adv_norm="linf"), "FreeLB's adv_norm='linf' (its step is norm"),
        (R3FSFTConfig, dict(padding_free=True, adv_norm="l2"), "adv_norm='l2' normalise δ per example"),
    ],
)
def test_config_refuses_what_would_be_wrong(tmp_path, config_cls, fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        config_cls(output_dir=str(tmp_path), **BASE, **fields)


def test_config_accepts_per_token_norms_with_padding_free_batches(tmp_path):
    for config in (ALUMSFTConfig(output_dir=str(tmp_path), padding_free=True, **BASE),
                   PGDATSFTConfig(output_dir=str(tmp_path), packing=True, adv_norm="linf", adv_step_norm="sign", **BASE),
                   PGDATSFTConfig(output_dir=str(tmp_path), packing=True, packing_strategy="wrapped", **BASE)):
        assert config.flattens_batches == (config.packing_strategy != "wrapped")
    assert not FreeLBSFTConfig(output_dir=str(tmp_path), packing=True, packing_strategy="wrapped", **BASE).flattens_batches


def test_trainer_refuses_what_would_be_wrong(tmp_path, lm_tokenizer, monkeypatch):
    data = text_dataset(4)

    def build(trainer_cls, model, args=None, **kwargs):
        args = args or trainer_cls.config_class(output_dir=str(tmp_path), **BASE)
        return trainer_cls(model=model, args=args, train_dataset=data, processing_class=lm_tokenizer, **kwargs)

    with pytest.raises(ValueError, match=r"PGDATSFTTrainer needs a PGDATSFTConfig \(or one of the configs it extends: "
                                         r"SFTConfig, .*PGDATConfig.*\), got ALUMSFTConfig"):
        build(PGDATSFTTrainer, make_causal_lm(layers=1), ALUMSFTConfig(output_dir=str(tmp_path), **BASE))
    with pytest.raises(ValueError, match="got ALUMConfig"):
        build(PGDATSFTTrainer, make_causal_lm(layers=1), ALUMConfig(output_dir=str(tmp_path), **BASE))
    with pytest.raises(ValueError, match="ALUMSFTTrainer does not take `compute_loss_func`"):
        build(ALUMSFTTrainer, make_causal_lm(layers=1), compute_loss_func=lambda *a, **k: 0)
    torch.manual_seed(0)
    classifier = LlamaForSequenceClassification(LlamaConfig(vocab_size=VOCAB_SIZE, hidden_size=16, num_hidden_layers=1,
                                                            num_attention_heads=2, intermediate_size=16, pad_token_id=0))
    with pytest.raises(ValueError, match="ALUMSFTTrainer trains causal LMs .* got LlamaForSequenceClassification"):
        build(ALUMSFTTrainer, classifier)

    # A Mixture-of-Experts model: refused with its load-balancing loss, trained without it.
    torch.manual_seed(0)
    moe = MixtralForCausalLM(MixtralConfig(vocab_size=VOCAB_SIZE, hidden_size=16, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, intermediate_size=16,
                                           num_local_experts=2, num_experts_per_tok=1, pad_token_id=0))
    with pytest.raises(ValueError, match=r"MixtralForCausalLM is a Mixture-of-Experts model .* router_aux_loss_coef"):
        build(ALUMSFTTrainer, moe)
    trainer = build(ALUMSFTTrainer, moe, ALUMSFTConfig(output_dir=str(tmp_path), router_aux_loss_coef=0.0, **BASE))
    assert not trainer.aux_loss_enabled

    # Context parallelism (as a launch with cp_size=2 would configure the accelerator): refused when training starts.
    trainer = build(ALUMSFTTrainer, make_causal_lm(layers=1))
    split = types.SimpleNamespace(cp_enabled=True, sp_enabled=False, tp_size=1)
    monkeypatch.setattr(type(trainer.accelerator), "parallelism_config", property(lambda self: split))
    with pytest.raises(ValueError, match="ALUMSFTTrainer does not support context or sequence parallelism"):
        trainer.train()
    monkeypatch.undo()

    # Values set after construction are checked again when training starts.
    trainer = build(PGDATSFTTrainer, make_causal_lm(layers=1), PGDATSFTConfig(
        output_dir=str(tmp_path), padding_free=True, max_length=None, adv_norm="linf", adv_step_norm="linf", **BASE))
    trainer.args.adv_step_norm = "l2"
    with pytest.raises(ValueError, match="normalise δ per example"):
        trainer.train()


def test_tat_stays_refused_for_the_causal_lms_sft_trains(tmp_path, lm_tokenizer):
    """There is no TAT SFT trainer, and composing one is refused: SFTTrainer trains causal LMs, which TAT refuses."""
    import advtrain.integrations.trl as integration

    assert not [name for name in integration.__all__ if name.startswith("TAT")]

    @dataclasses.dataclass
    class TATSFTConfig(AdversarialSFTConfigMixin, SFTConfig, TATConfig):
        pass

    class TATSFTTrainer(AdversarialSFTMixin, TATTrainer, SFTTrainer):
        config_class = TATSFTConfig

    model = make_causal_lm(layers=1)
    with pytest.raises(ValueError, match=re.escape(CAUSAL_LM_REFUSAL.format("LlamaForCausalLM"))):
        TATSFTTrainer(model=model, args=TATSFTConfig(output_dir=str(tmp_path), **BASE), train_dataset=text_dataset(4),
                      processing_class=lm_tokenizer)
