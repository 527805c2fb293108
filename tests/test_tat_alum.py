"""TAT and ALUM: the objectives match hand computations, the tally follows the model's mistakes, is exact across
resumes, bins regression labels, and ALUM trains masked LMs."""

import json

import pytest
import torch
import torch.nn.functional as F

from advtrain import ALUMConfig, ALUMTrainer, TATConfig, TATTrainer
from advtrain.trainers.tat import target_distribution_from_counts
from conftest import batch_of, grads_of, make_model, step_through, tokenized

TEXTS = ["a gorgeous , witty , seductive movie .", "the film is bad", "it 's a cold , dull , empty story ."]
MASK_ID = 4


def _skl_mtdnn(clean_logits, adv_logits):
    """MT-DNN's SymKlCriterion, batchmean: KL(sg(p) ‖ q) + KL(sg(q) ‖ p)."""
    def kl(p_logits, q_logits):
        p_log = F.log_softmax(p_logits, -1)
        return (p_log.exp() * (p_log - F.log_softmax(q_logits, -1))).sum(-1).mean()

    return kl(clean_logits.detach(), adv_logits) + kl(adv_logits.detach(), clean_logits)


def _linf_step(delta, grad, mask, step_size, epsilon, sign, keep_init=True):
    """One per-token L∞-normalised step. The defaults' reading (MT-DNN code): ``keep_init=False, epsilon=0`` gives
    ``δ = ± η · direction``; the papers' text: ``keep_init=True`` and a binding ``epsilon``."""
    grad = grad * mask
    direction = grad / (grad.abs().amax(-1, keepdim=True) + 1e-12)
    start = delta.detach() if keep_init else torch.zeros_like(delta)
    delta = (start + sign * step_size * direction) * mask
    return delta.clamp(-epsilon, epsilon) if epsilon > 0 else delta


def _trainer(trainer_cls, config_cls, tmp_path, model, **config):
    args = config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, **config)
    trainer = trainer_cls(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


# ----------------------------------------------------------------------------------------------------------------
# TAT


@pytest.mark.parametrize("reading", ["code", "paper_text"])
def test_tat_targeted_step_equals_hand_computed(tmp_path, tokenizer, reading):
    labels = torch.tensor([0, 1, 2])
    fixed = [[0, 5, 0], [0, 0, 7], [3, 0, 0]]  # row y puts all its mass on (y + 1) % 3
    targets = (labels + 1) % 3
    # The default reading has no ball (adv_epsilon=0); the papers' text projects, here onto a binding ε = 0.1.
    epsilon = 0.0 if reading == "code" else 0.1
    hyper = dict(adv_steps=1, adv_step_size=0.2, adv_init_std=0.0, adv_weight=0.7)
    if reading == "paper_text":
        hyper.update(adv_epsilon=epsilon, adv_keep_init=True)
    batch = batch_of(tokenizer, TEXTS, labels)
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
    mask = batch["attention_mask"].float().unsqueeze(-1)

    model = make_model("bert", 3, seed=3)
    model.train()
    embeds = model.get_input_embeddings()(batch["input_ids"])
    clean = model(**inputs, inputs_embeds=embeds).logits
    delta = torch.zeros_like(embeds, requires_grad=True)
    targeted = F.cross_entropy(model(**inputs, inputs_embeds=embeds.detach() + delta).logits, targets, reduction="sum")
    (grad,) = torch.autograd.grad(targeted, delta)
    delta = _linf_step(delta, grad, mask, 0.2, epsilon, sign=-1.0)
    assert delta.abs().max() == pytest.approx(0.2 if reading == "code" else 0.1)
    adv = model(**inputs, inputs_embeds=model.get_input_embeddings()(batch["input_ids"]) + delta).logits
    expected = F.cross_entropy(clean, labels) + 0.7 * _skl_mtdnn(clean, adv)
    expected.backward()
    expected_grads = grads_of(model)
    # The step went toward the target: the targeted loss fell.
    assert F.cross_entropy(adv, targets, reduction="sum") < targeted - 1e-3

    model = make_model("bert", 3, seed=3)
    model.train()
    trainer = _trainer(TATTrainer, TATConfig, tmp_path, model, tat_fixed_tally=fixed, **hyper)
    loss = trainer.compute_loss(model, batch)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    loss.backward()
    grads = grads_of(model)
    assert grads.keys() == expected_grads.keys()
    for name, value in expected_grads.items():
        torch.testing.assert_close(grads[name], value, atol=1e-6, rtol=1e-4, msg=name)
    torch.testing.assert_close(trainer.target_distribution, torch.tensor(fixed, dtype=torch.float64) / torch.tensor(
        [[5.0], [7.0], [3.0]]))


def _capture_targets(trainer):
    """Wraps `prepare_clean_pass` to keep every batch's (gold, target class, target value)."""
    seen = []
    original = trainer.prepare_clean_pass

    def wrapped(clean):
        original(clean)
        seen.append((clean.labels.clone(), clean.extras["target_classes"].clone(), clean.extras["targets"].clone()))

    trainer.prepare_clean_pass = wrapped
    return seen


def _always_predicts(model, label):
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[label] = 50.0
    return model


@pytest.mark.parametrize("update", ["epoch", "ema"])
def test_tally_concentrates_on_the_always_predicted_class(tmp_path, tokenizer, collator, update):
    data = tokenized(tokenizer, "sst5", "train", 40, max_length=16)
    model = _always_predicts(make_model("bert", 5, seed=1), 2)
    args = TATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=8,
                     num_train_epochs=2, learning_rate=1e-5, save_strategy="no", logging_steps=1,
                     tat_tally_update=update, tat_ema_decay=0.5, tat_tally_prior=0.1)
    trainer = TATTrainer(model=model, args=args, train_dataset=data, data_collator=collator)
    seen = _capture_targets(trainer)
    trainer.train()

    counts = trainer.confusion_tally
    gold = torch.tensor(data["labels"])
    assert counts.sum() == 2 * len(data)
    torch.testing.assert_close(counts[:, 2], 2 * torch.bincount(gold, minlength=5).double())
    assert counts[:, [0, 1, 3, 4]].sum() == 0
    probs = trainer.target_distribution
    assert torch.all(probs.diagonal() == 0)
    torch.testing.assert_close(probs.sum(1), torch.ones(5, dtype=torch.float64))
    wrong_rows = [0, 1, 3, 4]
    if update == "epoch":
        # Rebuilt once, at the start of epoch 2, from epoch 1's counts (half the final ones), with the prior.
        torch.testing.assert_close(probs, target_distribution_from_counts(counts / 2, 0.1))
    else:
        assert torch.all(probs[wrong_rows, 2] > 0.85)  # rows move only on steps whose batch holds them
    assert torch.all(probs[wrong_rows, 2] > 0.75)
    targets = torch.cat([t for _, t, _ in seen])
    golds = torch.cat([g for g, _, _ in seen])
    assert len(targets) == 2 * len(data) and not torch.any(targets == golds)
    entropy = [log["tat/target_entropy"] for log in trainer.state.log_history if "tat/target_entropy" in log]
    assert entropy[0] == pytest.approx(torch.log(torch.tensor(4.0)).item(), rel=1e-5)  # uniform over 4 wrong labels
    assert entropy[-1] < entropy[0] - 0.3
    # "epoch" keeps the uniform start for the whole first epoch; "ema" moves after the first step.
    assert (entropy[1] < entropy[0] - 0.1) == (update == "ema")


def test_binary_targets_are_the_other_label(tmp_path, tokenizer, collator):
    data = tokenized(tokenizer, "mr", "train", 16, max_length=16)
    args = TATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=8, max_steps=2,
                     save_strategy="no")
    trainer = TATTrainer(model=make_model("bert", 2), args=args, train_dataset=data, data_collator=collator)
    seen = _capture_targets(trainer)
    trainer.train()
    for gold, target, _ in seen:
        assert torch.equal(target, 1 - gold)


def test_regression_bins_cover_the_label_range_and_never_target_the_gold_bin(tmp_path, tokenizer, collator):
    data = tokenized(tokenizer, "sst5", "train", 32, max_length=16).map(lambda r: {"labels": r["labels"] * 0.6 - 0.3})
    args = TATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=8, max_steps=4,
                     save_strategy="no", learning_rate=1e-3, logging_steps=1)
    trainer = TATTrainer(model=make_model("bert", 1, seed=2), args=args, train_dataset=data, data_collator=collator)
    seen = _capture_targets(trainer)
    trainer.train()
    edges = trainer.bin_edges
    labels = torch.tensor(data["labels"], dtype=torch.float64)
    assert len(edges) == 11
    assert edges[0].item() == pytest.approx(labels.min().item()) and edges[-1].item() == pytest.approx(labels.max().item())
    assert torch.all(edges[1:] > edges[:-1])
    assert trainer.confusion_tally.shape == (10, 10) and trainer.confusion_tally.sum() == 32
    for gold, target_bin, value in seen:
        gold_bin = TATTrainer.bin_of(gold.double(), edges)
        assert not torch.any(target_bin == gold_bin)
        assert torch.all(value.double() >= edges[target_bin] - 1e-6) and torch.all(value.double() <= edges[target_bin + 1] + 1e-6)
    assert TATTrainer.bin_of(labels, edges).unique().numel() == 5  # five SST-5 labels land in five bins
    logs = [log for log in trainer.state.log_history if "adv/loss" in log]
    assert len(logs) == 4 and all(log["adv/skipped"] == 0 for log in logs)


def test_regression_needs_a_label_range_it_can_read(tmp_path, tokenizer):
    trainer = _trainer(TATTrainer, TATConfig, tmp_path, make_model("bert", 1))
    batch = batch_of(tokenizer, TEXTS, [0.1, 0.5, 0.9])
    batch["labels"] = batch["labels"].float()
    make_model("bert", 1).train()
    trainer.model.train()
    with pytest.raises(ValueError, match="tat_label_range"):
        trainer.compute_loss(trainer.model, batch)
    trainer.args.tat_label_range = [0.0, 1.0]
    assert torch.isfinite(trainer.compute_loss(trainer.model, batch))


@pytest.mark.parametrize("checkpoint", [4, 6], ids=["epoch-boundary", "mid-epoch"])
def test_resume_reproduces_the_tally_bit_for_bit(tmp_path, tokenizer, collator, checkpoint):
    data = tokenized(tokenizer, "sst5", "train", 32, max_length=16)
    common = dict(report_to=[], use_cpu=True, per_device_train_batch_size=8, num_train_epochs=2, save_steps=2,
                  learning_rate=3e-3, seed=1, adv_init_std=0.01, adv_epsilon=0.1, adv_step_size=0.05)
    out = str(tmp_path / "run")
    full = TATTrainer(model=make_model("bert", 5, dropout=0.1), args=TATConfig(output_dir=out, **common),
                      train_dataset=data, data_collator=collator)
    full.train()
    saved = torch.load(tmp_path / "run" / f"checkpoint-{checkpoint}" / "advtrain_state.pt")
    assert saved["tally_counts"].sum() == checkpoint * 8
    resumed = TATTrainer(model=make_model("bert", 5, dropout=0.1), args=TATConfig(output_dir=out, **common),
                         train_dataset=data, data_collator=collator)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / f"checkpoint-{checkpoint}"))
    counts = full.confusion_tally
    assert counts.sum() == 64 and counts.diagonal().sum() < 64  # a real tally, with mistakes in it
    assert torch.equal(resumed.confusion_tally, counts)
    assert torch.equal(resumed.target_distribution, full.target_distribution)
    assert not torch.equal(full.target_distribution, target_distribution_from_counts(torch.zeros(5, 5), 1.0))
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=1e-6, rtol=1e-5, msg=name)


def test_fixed_tally_is_validated(tmp_path):
    with pytest.raises(ValueError, match="tat_fixed_tally"):
        TATConfig(output_dir=str(tmp_path), tat_fixed_tally=[[0, 1, 2], [1, 0, 1]])
    with pytest.raises(ValueError, match="tat_fixed_tally"):
        TATConfig(output_dir=str(tmp_path), tat_fixed_tally=[[0, -1], [1, 0]])
    with pytest.raises(ValueError, match="tat_fixed_tally"):
        TATConfig(output_dir=str(tmp_path), tat_fixed_tally=str(tmp_path / "missing.json"))
    path = tmp_path / "tally.json"
    path.write_text(json.dumps([[0, 2], [3, 0]]))
    assert TATConfig(output_dir=str(tmp_path), tat_fixed_tally=str(path)).tat_fixed_tally == [[0, 2], [3, 0]]
    args = TATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, tat_fixed_tally=[[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="2×2, but the model has 3 classes"):
        TATTrainer(model=make_model("bert", 3), args=args)


@pytest.mark.parametrize(
    "field,value",
    [("tat_tally_update", "step"), ("tat_ema_decay", 1.0), ("tat_ema_decay", -0.1), ("tat_tally_prior", -1.0),
     ("tat_ema_decay", True), ("tat_tally_prior", True), ("tat_num_bins", 1), ("tat_num_bins", 2.5), ("tat_label_range", [1.0, 0.0]), ("tat_label_range", [0.0])],
)
def test_invalid_tat_fields_name_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        TATConfig(output_dir=str(tmp_path), **{field: value})


def test_target_distribution_from_counts():
    counts = torch.tensor([[9, 3, 1], [0, 4, 0], [2, 2, 5]])
    probs = target_distribution_from_counts(counts)
    expected = torch.tensor([[0, 0.75, 0.25], [0.5, 0, 0.5], [0.5, 0.5, 0]], dtype=torch.float64)
    torch.testing.assert_close(probs, expected)  # row 1 has no mistakes: uniform over the wrong labels
    torch.testing.assert_close(target_distribution_from_counts(counts, 1.0)[0], torch.tensor([0, 4 / 6, 2 / 6],
                               dtype=torch.float64))


def test_tally_heatmap_png(tmp_path):
    pytest.importorskip("matplotlib")
    from advtrain.plotting import plot_confusion_tally

    path = tmp_path / "figs" / "tally.png"
    plot_confusion_tally(torch.tensor([[5, 1, 0], [2, 7, 1], [0, 3, 4]]), path, labels=["neg", "neu", "pos"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="square"):
        plot_confusion_tally([[1, 2, 3]])


# ----------------------------------------------------------------------------------------------------------------
# ALUM


def _alum_hand(model, batch, task_loss, select, seed, init_std, step_size, epsilon, weight, keep_init):
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
    mask = batch["attention_mask"].float().unsqueeze(-1)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    clean = model(**inputs, inputs_embeds=embeds).logits
    torch.manual_seed(seed)
    delta = (torch.randn(embeds.shape) * init_std * mask).requires_grad_()
    adv = model(**inputs, inputs_embeds=embeds.detach() + delta).logits
    p_log, q_log = F.log_softmax(select(clean.detach()), -1), F.log_softmax(select(adv), -1)
    inner = ((p_log.exp() * (p_log - q_log)).sum() + (q_log.exp() * (q_log - p_log)).sum())
    (grad,) = torch.autograd.grad(inner, delta)
    delta = _linf_step(delta, grad, mask, step_size, epsilon, sign=1.0, keep_init=keep_init)
    adv = model(**inputs, inputs_embeds=model.get_input_embeddings()(batch["input_ids"]) + delta).logits
    return task_loss(clean) + weight * _skl_mtdnn(select(clean), select(adv))


def _masked_lm_batch(tokenizer):
    batch = batch_of(tokenizer, TEXTS, [0, 0, 0])
    labels = torch.full_like(batch["input_ids"], -100)
    for row, positions in enumerate([[1, 3], [2], [1, 4, 6]]):
        labels[row, positions] = batch["input_ids"][row, positions]
        batch["input_ids"][row, positions] = MASK_ID
    batch["labels"] = labels
    return batch


@pytest.mark.parametrize("reading", ["code", "paper_text"])
@pytest.mark.parametrize("task", ["classification", "masked_lm"])
def test_alum_loss_equals_hand_computed(tmp_path, tokenizer, task, reading):
    # The defaults (MT-DNN code): the noise is dropped and nothing is projected; the papers' text keeps the noise
    # and projects onto ε.
    if reading == "code":
        hyper, fields = dict(init_std=0.05, step_size=0.2, epsilon=0.0, weight=0.7, keep_init=False), {}
    else:
        hyper = dict(init_std=0.05, step_size=0.2, epsilon=0.1, weight=0.7, keep_init=True)
        fields = dict(adv_epsilon=0.1, adv_keep_init=True)
    if task == "classification":
        batch = batch_of(tokenizer, TEXTS, [0, 1, 2])
        select = lambda logits: logits  # noqa: E731
        task_loss = lambda logits: F.cross_entropy(logits, batch["labels"])  # noqa: E731
        build = lambda: make_model("bert", 3, seed=4)  # noqa: E731
    else:
        batch = _masked_lm_batch(tokenizer)
        keep = batch["labels"].view(-1) != -100
        select = lambda logits: logits.reshape(-1, logits.shape[-1])[keep]  # noqa: E731
        task_loss = lambda logits: F.cross_entropy(select(logits), batch["labels"].view(-1)[keep])  # noqa: E731
        build = lambda: make_model("bert", masked_lm=True, seed=4)  # noqa: E731
    model = build()
    model.train()
    expected = _alum_hand(model, batch, task_loss, select, seed=11, **hyper)
    expected.backward()
    expected_grads = grads_of(model)

    model = build()
    model.train()
    trainer = _trainer(ALUMTrainer, ALUMConfig, tmp_path, model, adv_init_std=hyper["init_std"], adv_weight=0.7,
                       adv_step_size=hyper["step_size"], **fields)
    torch.manual_seed(11)
    loss = trainer.compute_loss(model, batch)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    assert trainer._adv_metrics["adv/loss"][-1] > 0
    loss.backward()
    grads = grads_of(model)
    for name, value in expected_grads.items():
        torch.testing.assert_close(grads[name], value, atol=1e-6, rtol=1e-4, msg=name)


def test_alum_masked_lm_trains_with_the_language_modeling_collator(tmp_path, tokenizer):
    from transformers import DataCollatorForLanguageModeling

    data = tokenized(tokenizer, "mr", "train", 16, max_length=16).remove_columns(["labels"])
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3)
    model = make_model("bert", masked_lm=True, seed=5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = ALUMConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=8, max_steps=3,
                      save_strategy="no", logging_steps=1, adv_weight=10.0, adv_start_step=1, learning_rate=1e-3)
    trainer = ALUMTrainer(model=model, args=args, train_dataset=data, data_collator=collator)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "adv/loss" in log]
    assert [log["step"] for log in logs] == [2, 3]  # the first step ran plain
    # At the defaults every real token moves by η = 1e-3 in L∞ (delta_norm: the batch mean of each example's L∞
    # size); an example with no masked position has a zero gradient and stays at δ = 0.
    assert all(log["adv/loss"] > 0 and log["adv/skipped"] == 0 for log in logs)
    assert all(5e-4 < log["adv/delta_norm"] <= 1e-3 * (1 + 1e-5) for log in logs)
    assert sum(not torch.equal(p, before[n]) for n, p in model.named_parameters()) > 10


@pytest.mark.parametrize("trainer_cls,config_cls", [(TATTrainer, TATConfig), (ALUMTrainer, ALUMConfig)])
def test_constant_clean_side_runs_the_split_backward_with_the_same_gradients(tmp_path, tokenizer, trainer_cls,
                                                                             config_cls):
    batch = batch_of(tokenizer, TEXTS, [0, 1, 2])
    hyper = dict(adv_init_std=0.05, adv_epsilon=0.2, adv_step_size=0.1, tat_fixed_tally=[[0, 1, 0], [0, 0, 1], [1, 0, 0]]
                 ) if trainer_cls is TATTrainer else dict(adv_init_std=0.05, adv_epsilon=0.2, adv_step_size=0.1)
    results = {}
    for clean_gradient, path in ((False, "training_step"), (False, "compute_loss"), (True, "compute_loss")):
        model = make_model("bert", 3, seed=7)
        trainer = _trainer(trainer_cls, config_cls, tmp_path, model, adv_clean_gradient=clean_gradient, **hyper)
        assert trainer.backward_path == ("joint" if clean_gradient else "split")
        results[(clean_gradient, path)] = step_through(trainer, model, batch, path)
    split, joint, moving = results[(False, "training_step")], results[(False, "compute_loss")], results[(True, "compute_loss")]
    torch.testing.assert_close(split[0], joint[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(moving[0], joint[0], atol=1e-6, rtol=1e-5)  # same value, different gradient
    for name in joint[1]:
        torch.testing.assert_close(split[1][name], joint[1][name], atol=1e-6, rtol=1e-4, msg=name)
    classifier = "classifier.weight"
    assert not torch.allclose(moving[1][classifier], joint[1][classifier], atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("trainer_cls,config_cls", [(TATTrainer, TATConfig), (ALUMTrainer, ALUMConfig)])
def test_recomputed_clean_pass_gives_the_single_backward_gradients_with_dropout(tmp_path, tokenizer, trainer_cls,
                                                                                config_cls):
    # Dropout on: the recomputed clean pass only matches when it replays the first clean pass's masks.
    batch = batch_of(tokenizer, TEXTS, [0, 1, 2])
    hyper = dict(adv_init_std=0.05, adv_epsilon=0.2, adv_step_size=0.1)
    if trainer_cls is TATTrainer:
        hyper["tat_fixed_tally"] = [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
    results, after = {}, {}
    for recompute, path in ((False, "compute_loss"), (True, "training_step")):
        model = make_model("bert", 3, dropout=0.1, seed=7)
        backward = "recompute" if recompute else "joint"
        trainer = _trainer(trainer_cls, config_cls, tmp_path, model, adv_backward=backward, **hyper)
        assert trainer.backward_path == backward
        results[recompute] = step_through(trainer, model, batch, path)
        after[recompute] = torch.rand(3)  # the random stream goes on where the single-backward step leaves it
    (loss_single, grads_single), (loss_recomputed, grads_recomputed) = results[False], results[True]
    torch.testing.assert_close(loss_recomputed, loss_single, atol=1e-6, rtol=1e-5)
    assert grads_single.keys() == grads_recomputed.keys() and len(grads_single) > 10
    for name in grads_single:
        torch.testing.assert_close(grads_recomputed[name], grads_single[name], atol=1e-6, rtol=1e-4, msg=name)
    torch.testing.assert_close(after[True], after[False])


def _peak_activation_bytes(model, step) -> int:
    """Peak of the live bytes autograd saves for backward during `step()`, parameters left out."""
    import weakref

    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    live, peak = {}, [0]

    def pack(tensor):
        key = tensor.untyped_storage().data_ptr()
        if key not in parameters and key not in live:
            live[key] = tensor.untyped_storage().nbytes()
            peak[0] = max(peak[0], sum(live.values()))
            weakref.finalize(tensor, live.pop, key, None)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return peak[0]


def test_recomputed_clean_pass_keeps_one_graph_alive(tmp_path, tokenizer):
    from transformers import Trainer, TrainingArguments

    batch = batch_of(tokenizer, TEXTS * 4, [0, 1, 2] * 4)
    model = make_model("bert", 3, dropout=0.1, seed=7)
    model.train()
    plain = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    plain.current_gradient_accumulation_steps = 1
    peaks = {"plain": _peak_activation_bytes(model, lambda: plain.training_step(model, batch))}
    for recompute in (False, True):
        trainer = _trainer(ALUMTrainer, ALUMConfig, tmp_path, model, adv_backward="recompute" if recompute else None)
        peaks[recompute] = _peak_activation_bytes(model, lambda t=trainer: t.training_step(model, batch))
    assert peaks[False] > 1.7 * peaks["plain"]  # clean and perturbed graphs alive together
    assert peaks[True] < 1.3 * peaks["plain"], peaks


def test_recomputed_clean_pass_needs_the_clean_gradient(tmp_path):
    with pytest.raises(ValueError, match="adv_recompute_clean"):
        ALUMConfig(output_dir=str(tmp_path), adv_clean_gradient=False, adv_recompute_clean=True)
    with pytest.raises(ValueError, match="adv_backward='recompute'"):
        ALUMConfig(output_dir=str(tmp_path), adv_clean_gradient=False, adv_backward="recompute")
    with pytest.raises(ValueError, match="adv_backward='split'"):
        ALUMConfig(output_dir=str(tmp_path), adv_backward="split")


def test_deprecated_recompute_flag_is_the_recompute_path(tmp_path):
    with pytest.warns(FutureWarning, match="adv_backward='recompute'"):
        args = ALUMConfig(output_dir=str(tmp_path), adv_recompute_clean=True)
    assert args.backward_path == "recompute" and not args.adv_recompute_clean
