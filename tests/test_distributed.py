"""Two CPU processes (torchrun, gloo) train like one process with the same global batch, and do not hang.

The inner ascent passes run through the unwrapped module, the clean backward of the split path runs under
``no_sync``; a bug in either shows here as a hang (caught by the timeout) or as diverging weights.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("method", ["pgd_at", "pgd_at_fast", "lds", "tat", "alum"])
def test_two_processes_match_one(tmp_path, method):
    _run([sys.executable, str(SCRIPT), method, str(tmp_path), "4"], tmp_path)
    _run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         str(SCRIPT), method, str(tmp_path), "2"],
        tmp_path,
    )
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
