"""What each advtrain trainer costs against the plain `transformers.Trainer`: step time and peak memory.

Run (regenerates ``benchmarks/results/{tiny,minilm}.{json,md}`` and the index ``benchmarks/results/README.md``;
under 10 minutes on 2 CPU cores, see ``--time_budget_s``)::

    python benchmarks/bench_trainers.py --model both --batch_size 16 --seq_len 128 --threads 1

What is measured, in one process:

- the wall time of one ``trainer.training_step(model, batch)`` — forward and backward, **no optimizer step** — for
  the plain `Trainer` and for every adversarial trainer: PGD-AT K=1 exact and fast-first-step, K=3; LDS K=1 and
  K=3; TAT and ALUM at K=1 and K=3 with their default ``adv_clean_gradient=True`` and at K=1 with
  ``adv_clean_gradient=False`` ("constant clean side": the split-backward path) and at K=1 with
  ``adv_backward="recompute"`` (same gradient as the default, clean pass recomputed). All run on the same model object
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

The code is split by concern: ``trainer_cases.py`` (the models, the batch and one `Case` per row),
``trainer_profiling.py`` (the memory meters, op breakdown and environment), ``trainer_parity.py`` (the cross-checks
against smart-pytorch and vat-pytorch, which ``tests/test_parity.py`` also runs) and ``trainer_report.py`` (the
Markdown); this file runs the rounds and writes the results.

The Markdown report states, for every time target (``TIME_TARGETS``) and the memory target (``MEMORY_TARGET``),
the measured ratio, its bound, the target and whether it is met. A trainer that misses a target gets the torch
profiler's top-ops table in the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

from trainer_cases import (
    ALUMTrainer,
    Case,
    MiB,
    TATTrainer,
    build_cases,
    build_model,
    fixed_batch,
    smart_pytorch,
    vat_pytorch,
)
from trainer_parity import smart_cross_check, vat_cross_check
from trainer_profiling import (
    environment,
    measure_peak,
    memory_sanity_check,
    op_breakdown,
    quartiles,
)
from trainer_report import _needs_table, index_markdown, markdown

# MiniLM at 16 × 128 on one CPU thread: ~2.3-3 s per plain step and 14 rows of ~2-4× that, so one round takes
# ~100-130 s; the profiled round plus 3 timed rounds (fewer if --time_budget_s runs out) keep `--model both`
# under 10 minutes on 2 cores.
DEFAULT_REPEATS = {"tiny": 15, "minilm": 3}
DEFAULT_WARMUP = {"tiny": 2, "minilm": 0}  # the profiled round is a warm-up round too
DEFAULT_TIME_BUDGET_S = 560.0



# ------------------------------------------------------------------------------------------------------------------
# The run.

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
        if args.cases:  # a subset (plain always first: every ratio is to it)
            unknown = set(args.cases) - {c.name for c in cases}
            if unknown:
                raise SystemExit(f"--cases: unknown {sorted(unknown)}; the cases are {[c.name for c in cases]}")
            cases = [c for c in cases if c.name == "plain" or c.name in args.cases]
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
    parser.add_argument("--cases", type=lambda s: [c for c in s.split(",") if c], default=None,
                        help="comma-separated case names to run (e.g. r3f,r3f_recompute; plain always runs); needs "
                        "--report_name, so that a subset never overwrites the full tables")
    parser.add_argument("--report_name", default=None,
                        help="write every model's report into <out>/<name>.{json,md} (not <model>.{json,md}) and leave "
                        "the index README.md as it is")
    args = parser.parse_args(argv)
    if args.cases and not args.report_name:
        parser.error("--cases needs --report_name: a subset of the rows must not overwrite results/<model>.json")
    deadline = time.monotonic() + args.time_budget_s if args.time_budget_s > 0 else None

    transformers.logging.set_verbosity_error()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    reports = []
    for model_name in (("tiny", "minilm") if args.model == "both" else (args.model,)):
        report = run_model(model_name, args, device, deadline)
        if args.report_name:
            reports.append(report)
            print(markdown(report), flush=True)
            continue
        (args.out / f"{model_name}.json").write_text(json.dumps(report, indent=2) + "\n")
        text = markdown(report)
        (args.out / f"{model_name}.md").write_text(text)
        print(text, flush=True)
        print(f"[{model_name}] wrote {args.out / model_name}.{{json,md}} in {report['benchmark_wall_s']:.0f} s",
              flush=True)
    if args.report_name:  # {"reports": [...]}: not a per-model file, so the index does not list it as one
        name = args.out / args.report_name
        name.with_suffix(".json").write_text(json.dumps({"cases": args.cases, "reports": reports}, indent=2) + "\n")
        name.with_suffix(".md").write_text("\n\n".join(markdown(report) for report in reports))
        print(f"wrote {name}.{{json,md}}", flush=True)
        return
    (args.out / "README.md").write_text(index_markdown(args.out))
    print(f"wrote {args.out / 'README.md'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
