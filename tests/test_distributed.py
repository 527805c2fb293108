"""Two CPU processes (`accelerate launch` and torchrun, gloo) train like one process with the same global batch, and
do not hang.

`accelerate launch --cpu --num_processes 2` silently starts ONE process; ``--multi_gpu`` on a machine without CUDA
starts two that fall back to gloo, which is what users on CPU (and the docs) use. Each run asserts that it really
had two processes.

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


def _launcher(name: str) -> list[str]:
    if name == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
    ]


@pytest.mark.parametrize(
    "method,launcher",
    [("pgd_at", "accelerate"), ("pgd_at_fast", "accelerate"), ("lds", "accelerate"), ("tat", "accelerate"),
     ("alum", "accelerate"), ("pgd_at", "torchrun")],
)
def test_two_processes_match_one(tmp_path, method, launcher):
    _run([sys.executable, str(SCRIPT), method, str(tmp_path), "4"], tmp_path)
    _run(_launcher(launcher) + [str(SCRIPT), method, str(tmp_path), "2"], tmp_path)
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
