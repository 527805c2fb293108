"""The Markdown of `bench_trainers.py`: a model's report (targets, paths, reference cross-checks, profiles) and
the index of ``benchmarks/results``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from trainer_cases import MEMORY_TARGET, TIME_TARGETS, MiB


def _needs_table(name: str, rows: list[dict[str, Any]]) -> bool:
    missed = [r["name"] for r in rows if r["time_ok"] is False or r["memory_ok"] is False]
    return name in missed or (name == "plain" and bool(missed))


def _fmt(value, spec=".2f", none="—"):
    return none if value is None else format(value, spec)


def _ok(flag):
    return "—" if flag is None else ("yes" if flag else "**no**")


def _at_most(target) -> str:
    return f"≤ {target:.2f}×" if target else "—"


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
            f"{_x(r.get('memory_ratio'))} | {_at_most(target)} | {_ok(ok)} |"
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
        "with `adv_backward=\"recompute\"`: the default gradient, one graph alive at a time, one more forward (bound "
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
            f"{_at_most(r['memory_target'])} | {_ok(r['memory_ok'])} |"
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
