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
    ("adv_epsilon", 0), ("adv_epsilon", -1.0),
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
    tat = TATConfig(output_dir=str(tmp_path))
    assert (tat.adv_steps, tat.adv_epsilon, tat.adv_step_size, tat.adv_weight, tat.adv_norm) == (1, 1e-5, 1e-4, 1.0, "linf")
    assert (tat.tat_tally_update, tat.tat_num_bins, tat.tat_fixed_tally, tat.adv_clean_gradient) == ("epoch", 10, None, True)
    alum = ALUMConfig(output_dir=str(tmp_path))
    assert (alum.adv_steps, alum.adv_epsilon, alum.adv_step_size, alum.adv_init_std, alum.adv_norm) == (
        1, 1e-5, 1e-3, 1e-5, "linf")


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
    def __init__(self):
        super().__init__()
        self.embed = __import__("torch").nn.Embedding(10, 4)

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, attention_mask=None):
        return None


@pytest.mark.parametrize("model_cls,message", [
    (_NoEmbeddings, "_NoEmbeddings cannot be trained by advtrain: its input embeddings cannot be reached"),
    (_NoInputsEmbeds, "_NoInputsEmbeds cannot be trained by advtrain: its `forward` does not accept `inputs_embeds`"),
])
def test_unsupported_model_is_refused_at_construction(tmp_path, model_cls, message):
    with pytest.raises(ValueError, match=message):
        PGDATTrainer(model=model_cls(), args=PGDATConfig(output_dir=str(tmp_path), report_to=[]))


def test_warmup_fraction_is_a_ratio_on_this_transformers(tmp_path):
    from transformers import TrainingArguments

    from advtrain.compat import warmup_fraction

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], **warmup_fraction(0.25))
    assert args.get_warmup_steps(100) == 25
