"""Online attack-based augmentation: rounds against the current model, the fixed-length dataset, the schedule,
logging, resuming, argument checks and two processes.

The attack here is real, small and deterministic: a greedy word swap from a fixed list that queries the model it is
given and calls an example `successful` only when the model misclassifies the perturbed text.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

import advtrain
from advtrain.attacks.results import AttackResult
from advtrain.training.online import ONLINE_STATE_NAME, OnlineAttackAugmentation
from conftest import make_model, read_jsonl, run_checked, two_process_launcher

SWAP_WORDS = ("the", "bad", "good", "film", "not", "funny")
MAX_LENGTH = 16
SCRIPT = Path(__file__).parent / "scripts" / "online_ddp.py"


class GreedySwapAttack:
    """Greedily replaces up to `max_changes` of the first `positions` words by words of `SWAP_WORDS`, each time
    keeping the swap that lowers the gold label's probability most, until the model's prediction flips."""

    name = "greedy-swap"

    def __init__(self, max_changes: int = 3, positions: int = 10, max_length: int = MAX_LENGTH):
        self.max_changes, self.positions, self.max_length = max_changes, positions, max_length
        self.calls = 0

    @torch.no_grad()
    def _probs(self, model, tokenizer, texts: list[str]) -> torch.Tensor:
        batch = tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        return model(**batch).logits.softmax(-1)

    def attack_batch(self, model, tokenizer, texts, labels, indices) -> list[AttackResult]:
        assert not model.training, "attacks must be given the model in eval mode"
        self.calls += 1
        probs = self._probs(model, tokenizer, list(texts))
        out = []
        for text, label, index, p in zip(texts, labels, indices, probs):
            words, pred, queries = text.split(), int(p.argmax()), 1
            common = dict(index=index, original_text=text, label=label, original_prediction=pred, num_words=len(words))
            if pred != label:
                out.append(AttackResult(perturbed_text=None, perturbed_prediction=None, status="skipped", **common))
                continue
            current, status, new_pred = list(words), "failed", pred
            for _change in range(1, self.max_changes + 1):
                candidates = [
                    current[:i] + [w] + current[i + 1 :]
                    for i in range(min(self.positions, len(current)))
                    for w in SWAP_WORDS
                    if current[i] != w
                ]
                scores = self._probs(model, tokenizer, [" ".join(c) for c in candidates])
                queries += len(candidates)
                best = int(scores[:, label].argmin())
                current, new_pred = candidates[best], int(scores[best].argmax())
                if new_pred != label:
                    status = "successful"
                    break
            changed = sum(a != b for a, b in zip(words, current))
            out.append(AttackResult(
                perturbed_text=" ".join(current) if status == "successful" else None,
                perturbed_prediction=new_pred, status=status, num_queries=queries, words_changed=changed, **common,
            ))
        return out


class GradLeakingAttack(GreedySwapAttack):
    """Breaks the protocol on purpose: back-propagates through the model and leaves the gradients there."""

    def attack_batch(self, model, tokenizer, texts, labels, indices):
        batch = tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        model(**batch, labels=torch.as_tensor(labels)).loss.backward()
        return super().attack_batch(model, tokenizer, texts, labels, indices)


class RaisingAttack(GreedySwapAttack):
    def attack_batch(self, model, tokenizer, texts, labels, indices):
        raise RuntimeError("no candidates file")


def sensitive_model(seed: int = 0):
    """A tiny BERT whose predictions depend on the words (the default init predicts one class for everything)."""
    model = make_model("bert", 2, seed=seed)
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            module.weight.data.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module")
def raw() -> Dataset:
    return Dataset.from_list(read_jsonl("mr", "train", 16))


def augmentation(raw, tokenizer, **kwargs) -> OnlineAttackAugmentation:
    kwargs.setdefault("num_examples", 8)
    return OnlineAttackAugmentation(
        raw, tokenizer, kwargs.pop("attack", GreedySwapAttack()),
        tokenizer_kwargs={"truncation": True, "max_length": MAX_LENGTH}, **kwargs,
    )


def predict(model, tokenizer, texts) -> list[int]:
    model.eval()
    with torch.no_grad():
        batch = tokenizer(list(texts), truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        return model(**batch).logits.argmax(-1).tolist()


def adversarial_items(aug) -> list[dict]:
    n = len(aug.train_dataset.clean)
    return [aug.train_dataset[n + j] for j, (kind, _) in enumerate(aug.train_dataset.slots) if kind == "adv"]


def test_round_adds_what_the_current_model_misclassifies_and_the_next_round_replaces_it(raw, tokenizer):
    model = sensitive_model()
    aug = augmentation(raw, tokenizer, seed=1)
    length = len(aug.train_dataset)
    assert length == 16 + 8 and aug.train_dataset.num_adversarial_slots == 0

    first = aug.run_round(model)
    successes = [r for r in aug.last_results if r.successful]
    assert first.successful == len(successes) > 0 and first.added == len(successes)
    assert sum(first.counts.values()) == first.sampled == 8 and first.round == aug.round == 1
    # The model as it is now misclassifies every added text, and the dataset holds exactly those texts.
    now = predict(model, tokenizer, [r.perturbed_text for r in successes])
    assert all(p != r.label for p, r in zip(now, successes))
    encode = lambda text: tokenizer(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]  # noqa: E731
    expected = sorted(encode(r.perturbed_text) for r in successes)
    assert sorted(item["input_ids"] for item in adversarial_items(aug)) == expected
    labels = {tuple(encode(r.perturbed_text)): r.label for r in successes}
    assert all(item["labels"] == labels[tuple(item["input_ids"])] for item in adversarial_items(aug))

    sampled_first = set(aug.sample(1))
    aug.run_round(model)
    assert set(aug.sample(2)) != sampled_first, "the sample did not change between rounds"
    second = {r.index for r in aug.last_results}
    assert {r.index for r in aug.adversarial_results} <= second, "round 2 kept examples of round 1"
    assert len(aug.train_dataset) == length and aug.round == 2 and len(aug.history) == 2


@pytest.mark.parametrize("weight", [0.5, 2.5])
def test_weight_is_realised_by_copies(raw, tokenizer, weight):
    aug = augmentation(raw, tokenizer, weight=weight, num_examples=1.0)
    report = aug.run_round(sensitive_model())
    s = report.successful
    assert len(aug.train_dataset) == 16 + aug.capacity and aug.capacity == -(-int(weight * 16 * 2) // 2)
    assert int(weight * s) <= aug.train_dataset.num_adversarial_slots <= -(-int(weight * s * 2) // 2) + 1
    copies = [k for kind, k in aug.train_dataset.slots if kind == "adv"]
    assert all(int(weight) <= copies.count(k) <= int(weight) + 1 for k in range(s))


def test_round_leaves_gradients_training_mode_and_random_stream_alone(raw, tokenizer):
    model = sensitive_model()
    batch = tokenizer(["a fine film"], return_tensors="pt")
    model(**batch, labels=torch.tensor([1])).loss.backward()  # mid-accumulation gradients
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.train()
    torch.manual_seed(3)
    expected_draw = torch.rand(1)
    torch.manual_seed(3)
    aug = augmentation(raw, tokenizer, attack=GradLeakingAttack())
    aug.run_round(model)
    assert model.training
    assert torch.equal(torch.rand(1), expected_draw)
    after = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert after.keys() == before.keys()
    for name, grad in before.items():
        assert torch.equal(after[name], grad), name


def _args(tmp_path, config_cls=TrainingArguments, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", per_device_train_batch_size=4,
        num_train_epochs=2, learning_rate=1e-2, optim="sgd", logging_steps=1, seed=0, disable_tqdm=True,
    )
    return config_cls(**{**defaults, **kwargs})


TRAINERS = {
    "plain": (Trainer, TrainingArguments),
    "pgd_at": (advtrain.PGDATTrainer, advtrain.PGDATConfig),
    "tat": (advtrain.TATTrainer, advtrain.TATConfig),
}


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_trains_with_trainer_and_logs_round_metrics(raw, tokenizer, tmp_path, name):
    trainer_cls, config_cls = TRAINERS[name]
    aug = augmentation(raw, tokenizer, num_examples=0.5, every_n_epochs=1)
    trainer = trainer_cls(
        model=sensitive_model(), args=_args(tmp_path, config_cls), train_dataset=aug.train_dataset,
        processing_class=tokenizer, callbacks=[aug],
    )
    trainer.train()
    # One round (after epoch 1; the one after the last epoch would never be trained on), logged with the next loss.
    assert [h.global_step for h in aug.history] == [6] and trainer.state.global_step == 12
    logged = [log for log in trainer.state.log_history if "online/attacked" in log]
    assert len(logged) == 1 and "loss" in logged[0] and logged[0]["step"] == 7
    assert logged[0]["online/successful"] == aug.history[0].successful
    assert logged[0]["online/added"] == aug.train_dataset.num_adversarial_slots > 0
    assert 0 < logged[0]["online/success_rate"] <= 1


def test_every_n_steps_schedule(raw, tokenizer, tmp_path):
    aug = augmentation(raw, tokenizer, num_examples=4, every_n_steps=2, start_step=3)
    trainer = Trainer(
        model=sensitive_model(), args=_args(tmp_path, max_steps=8), train_dataset=aug.train_dataset,
        processing_class=tokenizer, callbacks=[aug],
    )
    trainer.train()
    assert [h.global_step for h in aug.history] == [3, 5, 7]
    assert [h.round for h in aug.history] == [1, 2, 3]
    assert aug.attack.calls == 3


def test_attach_puts_the_callback_before_reporters(raw, tokenizer, tmp_path):
    aug = augmentation(raw, tokenizer)
    trainer = Trainer(model=sensitive_model(), args=_args(tmp_path), train_dataset=aug.train_dataset,
                      processing_class=tokenizer, callbacks=[aug])
    aug.attach(trainer)
    assert trainer.callback_handler.callbacks[0] is aug and trainer.callback_handler.callbacks.count(aug) == 1


def test_a_round_that_only_errors_raises_with_the_message(raw, tokenizer):
    aug = augmentation(raw, tokenizer, attack=RaisingAttack())
    with pytest.raises(RuntimeError, match="no candidates file"):
        aug.run_round(sensitive_model())


def test_round_time_limit_marks_unattacked_examples(raw, tokenizer):
    aug = augmentation(raw, tokenizer, attack_batch_size=2, round_time_limit_s=1e-9)
    report = aug.run_round(sensitive_model())
    assert report.counts["timeout"] == 8 and report.added == 0 and aug.attack.calls == 0


def test_missing_column_names_expected_and_found(raw, tokenizer):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['premise', 'hypothesis'\].*found \['text', 'label'\]"):
        OnlineAttackAugmentation(raw, tokenizer, GreedySwapAttack(), text_columns=("premise", "hypothesis"))


def test_sentence_pairs_are_tokenized_as_pairs(tokenizer):
    pairs = Dataset.from_dict({"a": ["a fine film", "bad"], "b": ["not funny", "good film"], "label": [1, 0]})
    aug = OnlineAttackAugmentation(pairs, tokenizer, GreedySwapAttack(), text_columns=("a", "b"), num_examples=1)
    assert aug.texts[0] == ("a fine film", "not funny")
    assert 1 in aug.train_dataset[0]["token_type_ids"] and len(aug.train_dataset) == 3


@pytest.mark.parametrize(
    "kwargs, field_name",
    [
        ({"num_examples": 0.0}, "num_examples"),
        ({"num_examples": 1.5}, "num_examples"),
        ({"num_examples": 17}, "num_examples"),
        ({"num_examples": 0}, "num_examples"),
        ({"weight": -1.0}, "weight"),
        ({"weight": 0}, "weight"),
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"every_n_steps": 2, "every_n_epochs": 1}, "every_n_steps"),
        ({"every_n_steps": 2, "start_epoch": 1}, "start_epoch"),
        ({"start_step": 3}, "start_step"),
        ({"attack_batch_size": 0}, "attack_batch_size"),
        ({"round_time_limit_s": 0}, "round_time_limit_s"),
        ({"round_query_budget": -5}, "round_query_budget"),
        ({"attack": object()}, "attack"),
    ],
)
def test_invalid_arguments_name_the_field(raw, tokenizer, kwargs, field_name):
    with pytest.raises(ValueError, match=f"`{field_name}`"):
        augmentation(raw, tokenizer, **kwargs)


class StopAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        control.should_training_stop = True


def _resume_run(raw, tokenizer, out, *, resume: bool, stop: bool):
    aug = augmentation(raw, tokenizer, num_examples=8, every_n_epochs=1)
    args = _args(out, num_train_epochs=3, save_strategy="steps", save_steps=9)
    trainer = Trainer(model=sensitive_model(), args=args, train_dataset=aug.train_dataset, processing_class=tokenizer,
                      callbacks=[aug] + ([StopAfterSave()] if stop else []))
    trainer.train(resume_from_checkpoint=resume or None)
    return trainer, aug


def test_resume_restores_round_and_adversarial_examples_and_continues_identically(raw, tokenizer, tmp_path):
    full_trainer, full = _resume_run(raw, tokenizer, tmp_path / "full", resume=False, stop=False)
    assert [h.global_step for h in full.history] == [6, 12]

    _, first = _resume_run(raw, tokenizer, tmp_path / "cut", resume=False, stop=True)
    saved = json.loads((tmp_path / "cut" / "checkpoint-9" / ONLINE_STATE_NAME).read_text())
    assert saved["round"] == 1 and first.round == 1

    resumed_trainer = Trainer(
        model=sensitive_model(seed=1), args=_args(tmp_path / "cut", num_train_epochs=3, save_strategy="no"),
        train_dataset=None, processing_class=tokenizer,
    )
    second = augmentation(raw, tokenizer, num_examples=8, every_n_epochs=1)
    resumed_trainer.train_dataset = second.train_dataset
    resumed_trainer.add_callback(second)
    # What the new callback holds right after on_train_begin: checked through a one-off callback.
    seen = {}

    class Peek(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["round"] = second.round
            seen["texts"] = [r.perturbed_text for r in second.adversarial_results]
            seen["slots"] = list(second.train_dataset.slots)

    resumed_trainer.add_callback(Peek())
    resumed_trainer.train(resume_from_checkpoint=True)
    assert seen["round"] == 1
    assert seen["texts"] == [r.perturbed_text for r in first.adversarial_results] and seen["texts"]
    assert seen["slots"] == first.train_dataset.slots
    # The resumed run's round 2 and final weights equal the uninterrupted run's.
    assert [r.to_dict() for r in second.last_results] == [r.to_dict() for r in full.last_results]
    assert [h.round for h in second.history] == [1, 2]
    for (name, a), b in zip(full_trainer.model.state_dict().items(), resumed_trainer.model.state_dict().values()):
        torch.testing.assert_close(b, a, msg=name)


@pytest.mark.slow
def test_two_processes_hold_the_same_adversarial_set_as_one(tmp_path):
    # The one-process round runs here (a third interpreter start costs more than the round itself).
    spec = importlib.util.spec_from_file_location("online_ddp", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(str(tmp_path))
    run_checked(two_process_launcher("torchrun") + [str(SCRIPT), str(tmp_path)], tmp_path, timeout=240)
    single = json.loads((tmp_path / "ws1_rank0.json").read_text())
    ranks = [json.loads((tmp_path / f"ws2_rank{r}.json").read_text()) for r in (0, 1)]
    assert single["successful"], "the round found no adversarial example"
    assert ranks[0] == ranks[1]
    for key in ("results", "slots", "successful"):
        assert ranks[0][key] == single[key], key
    assert ranks[0]["shard_sizes"] == [4, 4] and single["shard_sizes"] == [8]


@pytest.mark.slow
def test_trainer_with_online_rounds_under_accelerate_launch(tmp_path):
    """A full TATTrainer run with a round every 2 steps in two processes (`accelerate launch`, gloo) finishes, and both
    ranks end with the same adversarial set, the same weights and the rounds' metrics in their log history."""
    script = Path(__file__).parent / "scripts" / "online_trainer_ddp.py"
    run_checked(two_process_launcher("accelerate") + [str(script), str(tmp_path)], tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    assert [r["round"] for r in ranks[0]["rounds"]] == [1, 2]
    assert ranks[0]["rounds"][0]["sampled"] == 8  # the whole sample, attacked as two shards of 4
    assert ranks[0]["online_logs"], "the rounds' metrics did not reach the log history"
    for key in ("rounds", "successful", "slots", "weights_sum", "weights_abs_sum"):
        if key == "rounds":
            strip = lambda rounds: [{k: v for k, v in r.items() if k != "seconds"} for r in rounds]  # noqa: E731
            assert strip(ranks[0][key]) == strip(ranks[1][key])
        else:
            assert ranks[0][key] == ranks[1][key], key


def test_a_failing_process_still_reaches_the_gather(raw, tokenizer, monkeypatch):
    """Under several processes, an exception on one rank must not leave the others waiting in the all-gather: the
    failing rank joins the gather with its error and every rank raises after it. Simulated here as rank 0 of 2."""
    import advtrain.training.online as online

    gathers = []

    def gather_object(objects):  # accelerate's: every process's list, concatenated
        (obj,) = objects
        gathers.append(obj)
        return [obj, ([], [], None)]  # the other rank succeeded with an empty shard

    monkeypatch.setattr(online, "_process", lambda: (0, 2))
    monkeypatch.setattr(online, "gather_object", gather_object)
    aug = augmentation(raw, tokenizer)

    def broken_verify(model, results):
        raise KeyError("verification broke")

    monkeypatch.setattr(aug, "_verify", broken_verify)
    with pytest.raises(RuntimeError, match=r"round 1 failed on 1 of 2 processes: \[\"rank 0: KeyError: 'verification broke'\"\]"):
        aug.run_round(sensitive_model())
    assert len(gathers) == 1 and gathers[0][2].startswith("KeyError")
    assert aug.round == 0 and aug.adversarial_results == []
