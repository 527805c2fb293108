"""Configs: validation messages name the field, paper defaults, upgrade of a plain TrainingArguments, round trip."""

import dataclasses

import pytest
from transformers import HfArgumentParser, TrainingArguments

from advtrain import (
    AdversarialConfig,
    ALUMConfig,
    ALUMTrainer,
    LDSConfig,
    LDSTrainer,
    PGDATConfig,
    PGDATTrainer,
    TATConfig,
    TATTrainer,
)
from conftest import make_model

CONFIGS = [PGDATConfig, LDSConfig, TATConfig, ALUMConfig]

INVALID = [
    ("adv_steps", 0), ("adv_steps", -1), ("adv_steps", 1.5), ("adv_steps", True),
    ("adv_step_size", 0), ("adv_step_size", -1e-3), ("adv_step_size", float("nan")),
    ("adv_epsilon", -1.0), ("adv_epsilon", float("nan")), ("adv_keep_init", 1), ("adv_keep_init", "no"),
    ("adv_init_std", -1e-5),
    ("adv_norm", "l3"), ("adv_step_norm", "l1"),
    ("adv_weight", -1.0),
    ("adv_start_step", -1), ("adv_start_step", 2.0),
]


@pytest.mark.parametrize("config_cls", CONFIGS)
@pytest.mark.parametrize("name,value", INVALID)
def test_invalid_values_raise_naming_the_field(tmp_path, config_cls, name, value):
    with pytest.raises(ValueError, match=f"`{name}` must be"):
        config_cls(output_dir=str(tmp_path), **{name: value})


def test_reentrant_checkpointing_is_refused_and_default_is_non_reentrant(tmp_path):
    with pytest.raises(ValueError, match="use_reentrant"):
        PGDATConfig(output_dir=str(tmp_path), gradient_checkpointing=True,
                    gradient_checkpointing_kwargs={"use_reentrant": True})
    config = PGDATConfig(output_dir=str(tmp_path), gradient_checkpointing=True)
    assert config.gradient_checkpointing_kwargs == {"use_reentrant": False}


def test_label_smoothing_is_refused(tmp_path):
    with pytest.raises(ValueError, match="label_smoothing_factor"):
        LDSConfig(output_dir=str(tmp_path), label_smoothing_factor=0.1)


def test_paper_defaults(tmp_path):
    pgd = PGDATConfig(output_dir=str(tmp_path))
    assert (pgd.adv_steps, pgd.adv_epsilon, pgd.adv_norm, pgd.adv_weight) == (3, 0.003, "l2", 1.0)
    lds = LDSConfig(output_dir=str(tmp_path))
    assert (lds.adv_steps, lds.adv_epsilon, lds.adv_norm) == (3, 0.003, "l2")
    assert lds.adv_init_std > 0
    assert pgd.adv_keep_init and lds.adv_keep_init  # PGD-AT and LDS: δ starts from its noise, inside the ball
    # 3 steps of μ = 1e-3 reach the radius ε = 0.003: the step size and the ball agree.
    assert pgd.adv_steps * pgd.adv_step_size == pytest.approx(pgd.adv_epsilon)
    assert lds.adv_steps * lds.adv_step_size == pytest.approx(lds.adv_epsilon)
    # TAT and ALUM: the MT-DNN code, δ = η · per-token L∞-normalised gradient at the noise, no ball.
    tat = TATConfig(output_dir=str(tmp_path))
    assert (tat.adv_steps, tat.adv_epsilon, tat.adv_step_size, tat.adv_weight, tat.adv_norm) == (1, 0.0, 1e-4, 1.0, "linf")
    assert (tat.adv_step_norm, tat.adv_init_std, tat.adv_keep_init) == ("linf", 1e-5, False)
    assert (tat.tat_tally_update, tat.tat_num_bins, tat.tat_fixed_tally, tat.adv_clean_gradient) == ("epoch", 10, None, True)
    alum = ALUMConfig(output_dir=str(tmp_path))
    assert (alum.adv_steps, alum.adv_epsilon, alum.adv_step_size, alum.adv_init_std, alum.adv_norm) == (
        1, 0.0, 1e-3, 1e-5, "linf")
    assert (alum.adv_step_norm, alum.adv_keep_init) == ("linf", False)
    # The papers' text (an L∞ ball of 1e-5 around noise + η·direction) is one documented setting away.
    for config_cls, eta in ((TATConfig, 1e-4), (ALUMConfig, 1e-3)):
        text = config_cls.paper_text(output_dir=str(tmp_path))
        assert (text.adv_epsilon, text.adv_keep_init, text.adv_step_size, text.adv_norm) == (1e-5, True, eta, "linf")
        assert config_cls.paper_text(output_dir=str(tmp_path), adv_weight=10.0).adv_weight == 10.0


def test_lds_warns_on_zero_init(tmp_path):
    with pytest.warns(UserWarning, match="adv_init_std"):
        LDSConfig(output_dir=str(tmp_path), adv_init_std=0.0)


@pytest.mark.parametrize("config_cls", [AdversarialConfig] + CONFIGS)
def test_every_field_has_help(config_cls):
    own = [f for f in dataclasses.fields(config_cls) if f.name.startswith(("adv_", "tat_"))]
    assert own
    for f in own:
        assert f.metadata.get("help"), f"{config_cls.__name__}.{f.name} has no help text"


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_round_trip_through_dict(tmp_path, config_cls):
    config = config_cls(output_dir=str(tmp_path), adv_steps=2, adv_epsilon=0.01, adv_norm="linf", adv_weight=0.5)
    # Only init fields: transformers 4.x's TrainingArguments also has `_n_gpu` (init=False).
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config_cls) if f.init}
    again = config_cls(**values)
    for f in dataclasses.fields(config_cls):
        if f.name.startswith("adv_"):
            assert getattr(again, f.name) == getattr(config, f.name)
    assert config.to_dict()["adv_steps"] == 2


def test_hf_argument_parser_parses_the_fields(tmp_path):
    (config,) = HfArgumentParser((PGDATConfig,)).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--adv_steps", "5", "--adv_norm", "linf", "--adv_fast_first_step", "true"]
    )
    assert (config.adv_steps, config.adv_norm, config.adv_fast_first_step) == (5, "linf", True)
    with pytest.raises(SystemExit):
        HfArgumentParser((PGDATConfig,)).parse_args_into_dataclasses(["--output_dir", "x", "--adv_norm", "l3"])


@pytest.mark.parametrize("trainer_cls,config_cls", [(PGDATTrainer, PGDATConfig), (LDSTrainer, LDSConfig),
                                                    (TATTrainer, TATConfig), (ALUMTrainer, ALUMConfig)])
def test_plain_training_arguments_are_upgraded(tmp_path, trainer_cls, config_cls):
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1.23e-4, seed=7, report_to=[])
    trainer = trainer_cls(model=make_model("bert"), args=args)
    assert type(trainer.args) is config_cls
    assert (trainer.args.learning_rate, trainer.args.seed) == (1.23e-4, 7)
    assert trainer.args.adv_steps == config_cls(output_dir=str(tmp_path)).adv_steps


def test_another_methods_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs a PGDATConfig"):
        PGDATTrainer(model=make_model("bert"), args=LDSConfig(output_dir=str(tmp_path), report_to=[]))


class _NoEmbeddings(__import__("torch").nn.Module):
    def get_input_embeddings(self):
        raise NotImplementedError

    def forward(self, input_ids=None, inputs_embeds=None):
        return None


class _NoInputsEmbeds(__import__("torch").nn.Module):
    """A classifier whose forward takes token ids only: δ reaches it through the embedding hook."""

    def __init__(self):
        super().__init__()
        torch = __import__("torch")
        self.embed = torch.nn.Embedding(400, 8)
        self.head = torch.nn.Linear(8, 2)

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        hidden = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        return SequenceClassifierOutput(logits=self.head(__import__("torch").tanh(hidden).sum(1)))


class _TwiceEmbedded(_NoInputsEmbeds):
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None):
        self.embed(input_ids)
        return super().forward(input_ids, attention_mask)


def test_a_model_without_inputs_embeds_is_perturbed_through_the_hook(tmp_path, tokenizer):
    from conftest import batch_of

    model = _NoInputsEmbeds()
    trainer = PGDATTrainer(model=model, args=PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    trainer.current_gradient_accumulation_steps = 1
    model.train()
    batch = batch_of(tokenizer, ["a fine film", "bad"], [1, 0])
    trainer.training_step(model, batch)
    assert model.embed.weight.grad.abs().sum() > 0
    assert trainer._adv_metrics["adv/delta_norm"][0] > 1e-3  # δ reached the ball's radius (ε = 0.003)


def test_a_model_that_embeds_twice_is_refused(tmp_path, tokenizer):
    from conftest import batch_of

    model = _TwiceEmbedded()
    trainer = PGDATTrainer(model=model, args=PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    trainer.current_gradient_accumulation_steps = 1
    model.train()
    with pytest.raises(ValueError, match="looked the batch's input_ids up in its input embeddings 2 times"):
        trainer.training_step(model, batch_of(tokenizer, ["a fine film", "bad"], [1, 0]))


def test_unsupported_model_is_refused_at_construction(tmp_path):
    message = "_NoEmbeddings cannot be trained by advtrain: its input embeddings cannot be reached"
    with pytest.raises(ValueError, match=message):
        PGDATTrainer(model=_NoEmbeddings(), args=PGDATConfig(output_dir=str(tmp_path), report_to=[]))


def test_warmup_fraction_is_a_ratio_on_this_transformers(tmp_path):
    from transformers import TrainingArguments

    from advtrain.compat import warmup_fraction

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], **warmup_fraction(0.25))
    assert args.get_warmup_steps(100) == 25
