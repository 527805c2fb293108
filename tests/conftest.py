"""Shared fixtures: tiny models of every supported family built from configs, a WordPiece tokenizer built
locally from MR's words, and small tokenized slices of the real datasets in ``../shared/data``.

Nothing here downloads: HF_HUB_OFFLINE is forced so that a missed local path fails at once.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the cores: one intra-op thread each, inherited by the subprocesses the tests start.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from datasets import Dataset
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertTokenizerFast,
    DataCollatorWithPadding,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ADVTRAIN_DATA", REPO.parent / "shared" / "data"))
VOCAB_SIZE = 400
MODEL_FAMILIES = ("bert", "roberta", "distilbert", "deberta-v2", "electra")
# The correctness matrix (tests/test_matrix.py): encoders with and without `**kwargs` in `forward`, and decoder
# classifiers that pool the last real token (found from `input_ids`).
MATRIX_FAMILIES = ("bert", "roberta", "deberta-v2", "modernbert", "llama", "gpt2")
DECODER_FAMILIES = ("llama", "gpt2")


def read_jsonl(name: str, split: str, limit: int | None = None) -> list[dict]:
    """Rows ``{"text", "label"}`` of ``DATA_DIR/<name>/<split>.jsonl`` (the first `limit` ones)."""
    rows = []
    with open(DATA_DIR / name / f"{split}.jsonl") as f:
        for line in f:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def build_tokenizer(directory: Path, vocab_size: int = VOCAB_SIZE) -> BertTokenizerFast:
    """A lower-casing WordPiece tokenizer whose vocabulary is MR's most frequent words (whole words only)."""
    counts = collections.Counter(w for row in read_jsonl("mr", "train", 3000) for w in row["text"].split())
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [w for w, _ in counts.most_common(vocab_size - len(specials))]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(specials + words) + "\n")
    # from_pretrained reads vocab.txt on transformers 4.x and 5.x alike (5.x ignores a `vocab_file=` argument).
    tokenizer = BertTokenizerFast.from_pretrained(str(directory), do_lower_case=True)
    assert len(tokenizer) == vocab_size, "the test vocabulary did not load"
    return tokenizer


def make_model(family: str = "bert", num_labels: int = 2, *, dropout: float = 0.0, seed: int = 0, masked_lm=False):
    """A tiny model of `family` (the sizes of transformers' own tests), seeded, dropout off by default."""
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB_SIZE, num_labels=num_labels, pad_token_id=0)
    if family == "bert":
        config = BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, **common,
        )
        return BertForMaskedLM(config) if masked_lm else BertForSequenceClassification(config)
    if masked_lm:
        raise ValueError("tiny masked LMs are built for the 'bert' family only")
    if family == "roberta":
        config = RobertaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=70,
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, bos_token_id=2, eos_token_id=3, **common,
        )
        return RobertaForSequenceClassification(config)
    if family == "distilbert":
        config = DistilBertConfig(
            dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64, dropout=dropout,
            attention_dropout=dropout, seq_classif_dropout=dropout, **common,
        )
        return DistilBertForSequenceClassification(config)
    if family == "deberta-v2":
        config = DebertaV2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, pooler_dropout=dropout,
            relative_attention=True, position_biased_input=False, pos_att_type=["c2p", "p2c"], **common,
        )
        return DebertaV2ForSequenceClassification(config)
    if family == "electra":
        config = ElectraConfig(
            embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, **common,
        )
        return ElectraForSequenceClassification(config)
    if family == "modernbert":
        config = ModernBertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
            global_attn_every_n_layers=2, local_attention=16, embedding_dropout=dropout, attention_dropout=dropout,
            mlp_dropout=dropout, classifier_dropout=dropout, bos_token_id=2, eos_token_id=3, cls_token_id=2,
            sep_token_id=3, **common,
        )
        return ModernBertForSequenceClassification(config)
    if family == "llama":
        config = LlamaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=37,
            max_position_embeddings=64, attention_dropout=dropout, bos_token_id=2, eos_token_id=3, **common,
        )
        return LlamaForSequenceClassification(config)
    if family == "gpt2":
        config = GPT2Config(
            n_embd=32, n_layer=2, n_head=4, n_inner=37, n_positions=64, resid_pdrop=dropout, embd_pdrop=dropout,
            attn_pdrop=dropout, summary_first_dropout=dropout, bos_token_id=2, eos_token_id=3, **common,
        )
        return GPT2ForSequenceClassification(config)
    raise ValueError(f"unknown family {family!r}")


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def tokenized(tokenizer, name: str = "mr", split: str = "train", n: int = 32, max_length: int = 24, regression=False):
    """`n` rows of a real dataset, tokenized (no padding: the collator pads each batch)."""
    rows = read_jsonl(name, split, n)
    ds = Dataset.from_list(rows)
    ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True)
    ds = ds.rename_column("label", "labels").remove_columns(["text"])
    if regression:
        ds = ds.map(lambda r: {"labels": float(r["labels"]) * 0.5 + 0.25})
    return ds


@pytest.fixture(scope="session")
def mr_small(tokenizer) -> Dataset:
    return tokenized(tokenizer, "mr", "train", 32)


@pytest.fixture(scope="session")
def collator(tokenizer) -> DataCollatorWithPadding:
    return DataCollatorWithPadding(tokenizer)


def batch_of(tokenizer, texts: list[str], labels, max_length: int = 24) -> dict[str, torch.Tensor]:
    """A padded batch ready for a model or for `compute_loss`."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    batch["labels"] = torch.as_tensor(labels)
    return dict(batch)


def grads_of(model) -> dict[str, torch.Tensor]:
    """A copy of every parameter gradient the last backward left."""
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def step_through(trainer, model, batch, path: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training step of `model` in train mode with the noise seeded, either through `trainer.training_step`
    (``path="training_step"``) or `compute_loss` plus a plain backward (``"compute_loss"``); returns the loss and
    the gradients."""
    model.train()
    torch.manual_seed(5)
    if path == "training_step":
        loss = trainer.training_step(model, batch)
    else:
        loss = trainer.compute_loss(model, batch)
        loss.backward()
    return loss.detach(), grads_of(model)


@pytest.fixture
def one_thread():
    """Runs a test on one intra-op thread and restores the setting afterwards: with tiny tensors, waking a second
    thread costs more than the work itself (on a loaded machine, 100× more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def two_process_launcher(name: str) -> list[str]:
    """The command prefix that starts a script in two CPU processes (gloo): ``"torchrun"`` or ``"accelerate"``.

    `accelerate launch --cpu --num_processes 2` silently starts ONE process; ``--multi_gpu`` on a machine without
    CUDA starts two that fall back to gloo."""
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    if name == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    if name == "accelerate":
        return [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
        ]
    raise ValueError(f"unknown launcher {name!r}")


def allow_fsdp_on_cpu() -> None:
    """Lets accelerate run its FSDP plugin on CPU processes (gloo), for the two-process FSDP2 tests.

    `AcceleratorState` switches to `DistributedType.FSDP` only on accelerator devices (CUDA, XPU, NPU...); on CPU it
    keeps `MULTI_CPU` and ignores the plugin. This sets, after accelerate's own initialisation, the two attributes it
    sets on a GPU (and, as accelerate does, the type in `PartialState`), so everything after it (`fsdp2_prepare_model`'s `fully_shard`, `no_sync` as
    `set_requires_gradient_sync`, the sharded optimizer step and clipping) is accelerate's and torch's own FSDP2 code.
    """
    import accelerate.state
    from accelerate.utils import DistributedType

    original = accelerate.state.AcceleratorState.__init__
    if getattr(original, "_advtrain_fsdp_on_cpu", False):
        return

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin
            accelerate.state.PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate does

    init._advtrain_fsdp_on_cpu = True
    accelerate.state.AcceleratorState.__init__ = init


def exit_distributed_script() -> None:
    """Ends a test script started by `two_process_launcher`: waits for every rank, flushes output and leaves with
    `os._exit(0)`.

    Left to the interpreter's exit (or even to `destroy_process_group`), gloo's background threads occasionally abort
    a rank after a successful run ("terminate called without an active exception", SIGABRT), which fails the launch;
    skipping the C++ destructors once every rank is past its last collective removes that race."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_checked(cmd: list[str], cwd, timeout: int = 300) -> None:
    """Runs `cmd` on one CPU thread per process, no GPU; fails the test with the end of stderr unless it exits 0 (a
    hang fails through the timeout)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]


# ------------------------------------------------------------------------------------- one environment for some tests
# CI runs the suite on transformers 5 (the core) and again on 4.x (the `attacks` extra). Tests marked `one_env` are
# slow and do not depend on the transformers major (the example pipelines and notebooks, WordNet, a long real-encoder
# run): they run in the core environment and are deselected on transformers 4 (the report header says so, without -q).
def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def pytest_collection_modifyitems(config, items):
    if _transformers_major() >= 5:
        return
    kept = [item for item in items if item.get_closest_marker("one_env") is None]
    dropped = [item for item in items if item.get_closest_marker("one_env") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_report_header(config):
    # (printed by the controlling process, also under pytest-xdist, whose workers do the collecting)
    if _transformers_major() < 5:
        return ("transformers 4: tests marked one_env are deselected (they do not depend on the transformers major and "
                "run in the transformers 5 environment)")
    return None
