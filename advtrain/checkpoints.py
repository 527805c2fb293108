"""Where training components keep state beside the Trainer's checkpoints, and how it is read back safely.

The `Trainer` names its folders ``f"{PREFIX_CHECKPOINT_DIR}-{global_step}"`` under its run folder (``output_dir``, or
a per-trial folder inside it during a hyper-parameter search). A component that saves state of its own (TAT's tally,
an online-augmentation round) writes it into the folder the Trainer has just written, found on disk rather than
assumed, and reads it back from the folder a run resumes from.

State files hold tensors, numbers, strings, lists, dicts and ``None`` only: ``.pt`` files are read with
``torch.load(weights_only=True)``, which refuses anything that would run code; ``.json`` files with `json`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

__all__ = ["checkpoint_at_step", "load_state", "resolve_resume_checkpoint", "save_state"]


def checkpoint_at_step(output_dir: str, step: int) -> str | None:
    """The checkpoint folder the Trainer wrote at `step`: ``output_dir/checkpoint-<step>`` or, during a
    hyper-parameter search, ``output_dir/<run>/checkpoint-<step>`` (the most recently written one when several
    runs reached that step). ``None`` when there is none."""
    name = f"{PREFIX_CHECKPOINT_DIR}-{step}"
    candidates = [os.path.join(output_dir, name)]
    if os.path.isdir(output_dir):
        candidates += [os.path.join(output_dir, run, name) for run in sorted(os.listdir(output_dir))]
    found = [c for c in candidates if os.path.isdir(c)]
    if not found:
        return None
    return max(found, key=os.path.getmtime)


def resolve_resume_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str) -> str | None:
    """The folder `Trainer.train(resume_from_checkpoint=...)` resumes from: the path itself, or the last checkpoint
    of `output_dir` for ``True`` (as the Trainer resolves it); ``None`` when training starts fresh."""
    if isinstance(resume_from_checkpoint, bool):
        return get_last_checkpoint(output_dir) if resume_from_checkpoint and os.path.isdir(output_dir) else None
    return resume_from_checkpoint or None


def save_state(folder: str, name: str, state: dict[str, Any]) -> str:
    """Writes `state` to ``folder/name`` (JSON for ``.json``, else `torch.save`) and returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    if name.endswith(".json"):
        with open(path, "w") as f:
            json.dump(state, f)
    else:
        torch.save(state, path)
    return path


def load_state(path: str) -> dict[str, Any]:
    """Reads a state file written by `save_state`. A ``.pt`` file is loaded with ``weights_only=True``: a file that
    holds anything but tensors, numbers, strings, lists, dicts and ``None`` is refused instead of executed."""
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError (and others) for unsafe or corrupt files
        raise ValueError(
            f"{path} is not a valid advtrain state file: it could not be read with torch.load(weights_only=True) "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). advtrain state files hold only "
            "tensors, numbers and None; do not resume from a checkpoint you did not write."
        ) from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a valid advtrain state file: it holds a {type(state).__name__}, not a dict.")
    return state
