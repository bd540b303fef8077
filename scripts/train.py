"""Train p-diff on a parameter dataset and save a PDiffPipeline.

    accelerate launch scripts/train.py --recipe fashion-mnist-resnet18 \\
        --param_dataset runs/fmnist/params --output_dir runs/fmnist/pipeline
    python scripts/train.py --recipe fashion-mnist-resnet18 --param_dataset org/params --output_dir OUT \\
        --resume_from_checkpoint latest --push_to_hub --hub_model_id org/pdiff-fmnist

Stage 1 trains the ParameterAutoencoder on the collected parameter vectors (noise augmentation on); stage 2 freezes
it, encodes the vectors and trains the latent denoiser with the DDPM objective (pdiff_hub.training.trainer).
Training state is saved every ``--checkpointing_steps`` under OUT/checkpoints/ (accelerate ``save_state``), so a
killed run resumes with ``--resume_from_checkpoint latest`` and ends with the same weights as an uninterrupted one.
At the end OUT holds the pipeline (``PDiffPipeline.from_pretrained(OUT)``), its model card, ``metrics.json`` (with
the checkpoints' test accuracy before and after the autoencoder) and ``args.yaml``.

Several processes (GPUs, or CPU processes over gloo; every process one thread on a CPU machine):

    accelerate launch --multi_gpu --num_processes 4 scripts/train.py --recipe ... --output_dir OUT
    ACCELERATE_USE_CPU=true OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 scripts/train.py ...

(``accelerate launch --cpu`` alone starts one process unless MPI is set up; ``--multi_gpu`` selects torchrun, and
ACCELERATE_USE_CPU makes its processes CPU ones.) The recipe's batch sizes are the global batches: each of N
processes trains on ``batch // N`` rows of every step's batch (a batch that does not split evenly is refused), draws
its own noise, and the gradients are averaged. Checkpoints hold every process's random state, so a killed N-process
run resumed with ``--resume_from_checkpoint latest`` on N processes ends with the weights of an uninterrupted
N-process run; a run on another process count trains on other random draws, and does not resume its checkpoints.
The main process alone writes the pipeline, its card and ``metrics.json`` (which records the process count when it
is more than one) and measures the reconstruction accuracy; the checkpoints folder must be seen by every process.

OUT is checked before anything is loaded: it may not be, contain or lie inside the parameter dataset; a pipeline or
any other content in it is replaced only with ``--overwrite``; its checkpoints are resumed only by the run that wrote
them (same recipe, parameter dataset and seed), and replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import sys

from pdiff_hub.core.cli import UsageError, run_script
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.hub.pipelines import pipeline_card
from pdiff_hub.recipes.config import add_recipe_arguments, command_line, recipe_from_args, write_run_args
from pdiff_hub.training.checkpoints import save_pipeline
from pdiff_hub.training.train_run import check_run_folder, run_metrics
from pdiff_hub.training.trainer import PDiffTrainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--param_dataset", required=True, help="parameter dataset folder or Hub dataset id")
    parser.add_argument("--param_dataset_revision", default=None, help="revision of a Hub parameter dataset")
    parser.add_argument("--output_dir", required=True, help="where the pipeline and checkpoints are written")
    parser.add_argument("--checkpointing_steps", type=int, default=500, help="save the training state every N steps")
    parser.add_argument("--checkpoints_total_limit", type=int, default=2, help="keep at most N checkpoints")
    parser.add_argument("--resume_from_checkpoint", default=None,
                        help="a checkpoint folder of this run, or 'latest' (its newest; a new run if there is none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the pipeline in OUT, and checkpoints there that this run does not resume")
    parser.add_argument("--report_to", default="auto",
                        help="'tensorboard', 'none', or 'auto' (tensorboard if installed)")
    parser.add_argument("--skip_eval", action="store_true", help="do not measure reconstruction accuracy at the end")
    parser.add_argument("--push_to_hub", action="store_true",
                        help="upload OUT to the Hub at the end (token: HF_TOKEN or `hf auth login`)")
    parser.add_argument("--hub_model_id", default=None, help="repo id for --push_to_hub (org/name)")
    add_recipe_arguments(parser)
    args = parser.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id org/name")
    for flag in ("checkpointing_steps", "checkpoints_total_limit"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} is {getattr(args, flag)}; give a whole number, 1 or more")
    return args


def main(args: argparse.Namespace) -> None:
    recipe = recipe_from_args(args)
    output_dir = check_run_folder(args.output_dir, args.param_dataset, overwrite=args.overwrite,
                                  resume_from_checkpoint=args.resume_from_checkpoint)
    params = ParameterDataset.load(args.param_dataset, revision=args.param_dataset_revision)
    trainer = PDiffTrainer(recipe, params, output_dir, checkpointing_steps=args.checkpointing_steps,
                           checkpoints_total_limit=args.checkpoints_total_limit, report_to=args.report_to,
                           resume_from_checkpoint=args.resume_from_checkpoint, overwrite=args.overwrite)
    result = trainer.train()
    if result is None:  # not the main process
        return

    metrics = run_metrics(recipe, params, result, evaluate=not args.skip_eval)
    command = command_line(sys.argv)
    card = pipeline_card(recipe, params, metrics, command, param_dataset=str(args.param_dataset),
                         repo_id=args.hub_model_id or str(args.output_dir))
    save_pipeline(result.pipeline, output_dir, {"README.md": card, "metrics.json": json.dumps(metrics, indent=2)})
    write_run_args(output_dir, recipe, command=command, param_dataset=str(args.param_dataset))
    trainer.checkpoints.discard_replaced()  # an earlier run's, replaced with --overwrite (if none was saved yet)
    print(f"Saved the pipeline to {output_dir} ({result.train_seconds:.1f} s of training)")
    for key in ("original_mean_test_accuracy", "reconstructed_mean_test_accuracy"):
        if key in metrics:
            print(f"  {key}: {metrics[key]:.2f}")
    saturated = metrics["saturated_latent_fraction"]
    print(f"  saturated_latent_fraction: {saturated:.3f}"
          + (" (most latent values are pinned at +-1: consider autoencoder.latent_norm 'layer' with bound_latent "
             "false)" if saturated > 0.5 else ""))
    if args.push_to_hub:
        from pdiff_hub.hub import push_folder_to_hub

        url = push_folder_to_hub(output_dir, args.hub_model_id, repo_type="model",  # token: HF_TOKEN or the login
                                 commit_message="Upload p-diff pipeline")
        print(f"Pushed to {url}")


if __name__ == "__main__":
    run_script(main, parse_args)
