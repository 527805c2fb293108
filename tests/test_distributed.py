"""Two CPU processes (`accelerate launch` and torchrun, gloo) train like one process with the same global batch, and
do not hang.

`accelerate launch --cpu --num_processes 2` silently starts ONE process; ``--multi_gpu`` on a machine without CUDA
starts two that fall back to gloo, which is what users on CPU (and the docs) use. Each run asserts that it really
had two processes.

The inner ascent passes run through the unwrapped module, the clean backward of the split path runs under
``no_sync``; a bug in either shows here as a hang (caught by the timeout) or as diverging weights.
"""

import sys
from pathlib import Path

import pytest
import torch

from conftest import run_checked, two_process_launcher

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


@pytest.mark.parametrize(
    "method,launcher",
    [("pgd_at", "accelerate"), ("pgd_at_fast", "accelerate"), ("lds", "accelerate"), ("tat", "accelerate"),
     ("alum", "accelerate"), ("alum_recompute", "torchrun"), ("pgd_at", "torchrun")],
)
@pytest.mark.slow
def test_two_processes_match_one(tmp_path, method, launcher):
    run_checked([sys.executable, str(SCRIPT), method, str(tmp_path), "4"], tmp_path, timeout=240)
    run_checked(two_process_launcher(launcher) + [str(SCRIPT), method, str(tmp_path), "2"], tmp_path, timeout=240)
    single = torch.load(tmp_path / "weights_ws1.pt")
    double = torch.load(tmp_path / "weights_ws2.pt")
    assert double["world_size"] == 2
    start = {k: v for k, v in single["state"].items()}
    adv_logs = [log for log in double["logs"] if "adv/loss" in log]
    assert adv_logs, "the two-process run logged no adversarial metrics"
    for name, value in single["state"].items():
        torch.testing.assert_close(double["state"][name], value, atol=2e-5, rtol=1e-4, msg=name)
    assert start
    if method == "tat":
        # The tally is summed across processes: both ranks hold the same one, equal to one process's tally.
        ranks = [torch.load(tmp_path / f"tally_ws2_rank{r}.pt") for r in (0, 1)]
        single_tally = torch.load(tmp_path / "tally_ws1_rank0.pt")
        assert torch.equal(ranks[0]["tally"], ranks[1]["tally"]) and ranks[0]["tally"].sum() == 3 * 4
        assert torch.equal(ranks[0]["targets"], ranks[1]["targets"])
        assert torch.equal(ranks[0]["tally"], single_tally["tally"])


@pytest.mark.slow
def test_fsdp2_matches_one_process(tmp_path):
    """Every method (and the latent site, a causal LM, a NaN term on one rank) under FSDP2 on two processes ends with
    the weights of one unsharded process with the same global batch (`scripts/fsdp_train.py`): the inner passes run
    through the sharded model's own forward, the skipped term's backward reaches no weight, and no process waits."""
    script = Path(__file__).parent / "scripts" / "fsdp_train.py"
    run_checked([sys.executable, str(script), str(tmp_path), "4"], tmp_path, timeout=300)
    run_checked(two_process_launcher("torchrun") + [str(script), str(tmp_path), "2"], tmp_path, timeout=400)
    single = torch.load(tmp_path / "fsdp_ws1.pt")
    sharded = torch.load(tmp_path / "fsdp_ws2.pt")
    assert sharded["world_size"] == 2 and set(sharded["cells"]) == set(single["cells"])
    for cell, result in sharded["cells"].items():
        reference = single["cells"][cell]
        assert result["fsdp2"] and result["model_class"].startswith("FSDP"), (cell, result["model_class"])
        moved = max(float((reference["state"][k] - reference["initial"][k]).abs().max()) for k in reference["state"])
        assert moved > 1e-4, f"{cell}: the weights did not move"
        for name, value in reference["state"].items():
            assert torch.isfinite(result["state"][name]).all(), (cell, name)
            torch.testing.assert_close(result["state"][name], value, atol=2e-5, rtol=1e-4, msg=f"{cell}: {name}")
        adversarial = [log for log in result["logs"] if "adv/loss" in log]
        if cell.startswith("nan"):  # rank 0's NaN term is skipped on both ranks, as one process skips it
            assert not adversarial and all(log["adv/skipped"] > 0 for log in result["logs"] if "adv/skipped" in log)
        else:
            assert len(adversarial) == 3, cell


@pytest.mark.parametrize("path", ["split", "joint", "recompute"])
@pytest.mark.slow
def test_a_nan_term_on_one_process_leaves_both_finite_and_equal(tmp_path, path):
    script = Path(__file__).parent / "scripts" / "ddp_nan.py"
    run_checked(two_process_launcher("torchrun") + [str(script), path, str(tmp_path)], tmp_path, timeout=240)
    ranks = [torch.load(tmp_path / f"nan_rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    for name, value in ranks[0]["state"].items():
        assert torch.isfinite(value).all(), name
        assert torch.equal(ranks[1]["state"][name], value), name
    log = next(entry for entry in ranks[0]["logs"] if "adv/skipped" in entry)
    assert log["adv/skipped"] == 2  # rank 0's two steps, summed over processes
