"""Train p-diff on a parameter dataset and save a PDiffPipeline.

    accelerate launch scripts/train.py --recipe fashion-mnist-resnet18 \\
        --param_dataset runs/fmnist/params --output_dir runs/fmnist/pipeline
    python scripts/train.py --recipe fashion-mnist-resnet18 --param_dataset org/params --output_dir OUT \\
        --resume_from_checkpoint latest --push_to_hub --hub_model_id org/pdiff-fmnist

Stage 1 trains the ParameterAutoencoder on the collected parameter vectors (noise augmentation on); stage 2 freezes
it, encodes the vectors and trains the latent denoiser with the DDPM objective. Training state is saved every
``--checkpointing_steps`` under OUT/checkpoints/ (accelerate ``save_state``), so a killed run resumes with
``--resume_from_checkpoint latest`` and ends with the same weights as an uninterrupted one. At the end OUT holds the
pipeline (``PDiffPipeline.from_pretrained(OUT)``), its model card, ``metrics.json`` and ``args.yaml``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from pdiff_hub import LatentDenoiser, PDiffPipeline
from pdiff_hub.data.images import load_recipe_splits
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.evaluation.run import subsample_splits
from pdiff_hub.hub.cards import render_card
from pdiff_hub.models.target import TargetModel
from pdiff_hub.recipes.config import Recipe, add_recipe_arguments, recipe_from_args, write_run_args
from pdiff_hub.training.objectives import (
    autoencoder_loss,
    build_autoencoder,
    build_denoiser,
    build_scheduler,
    diffusion_loss,
    sample_batch,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(parser)
    parser.add_argument("--param_dataset", required=True, help="parameter dataset folder or Hub dataset id")
    parser.add_argument("--param_dataset_revision", default=None, help="revision of a Hub parameter dataset")
    parser.add_argument("--output_dir", required=True, help="where the pipeline and checkpoints are written")
    parser.add_argument("--checkpointing_steps", type=int, default=500, help="save the training state every N steps")
    parser.add_argument("--checkpoints_total_limit", type=int, default=2, help="keep at most N checkpoints")
    parser.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder, or 'latest'")
    parser.add_argument("--report_to", default="auto",
                        help="'tensorboard', 'none', or 'auto' (tensorboard if installed)")
    parser.add_argument("--skip_eval", action="store_true", help="do not measure reconstruction accuracy at the end")
    parser.add_argument("--push_to_hub", action="store_true", help="upload OUT to the Hub at the end")
    parser.add_argument("--hub_model_id", default=None, help="repo id for --push_to_hub (org/name)")
    parser.add_argument("--hub_token", default=None, help="Hub token (default: the logged-in token or HF_TOKEN)")
    args = parser.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id org/name")
    return args


def command_line(argv: list[str]) -> str:
    """The command as typed, with the value of ``--hub_token`` masked: it goes into args.yaml and the card."""
    shown, hide = [], False
    for arg in argv:
        shown.append("***" if hide else ("--hub_token=***" if arg.startswith("--hub_token=") else arg))
        hide = arg == "--hub_token"
    return "python " + " ".join(shlex.quote(a) for a in shown)


def check_recipe_matches(recipe: Recipe, target: TargetModel) -> None:
    """The recipe's target must describe the network the parameter dataset was collected from."""
    expected = TargetModel(recipe.target.model_name, recipe.target.model_kwargs, recipe.target.param_patterns,
                           image_size=recipe.data.image_size).layout
    got = target.layout
    if expected != got:
        raise ValueError(
            f"The recipe's target ({recipe.target.model_name}, patterns {recipe.target.param_patterns}: "
            f"{expected.num_params} values) does not match the parameter dataset's ({target.config.model_name}: "
            f"{got.num_params} values, {list(got.names)[:4]}...)"
        )


def tracker(report_to: str) -> str | None:
    if report_to == "auto":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            return None
        return "tensorboard"
    return None if report_to == "none" else report_to


def find_checkpoint(checkpoint_dir: Path, which: str) -> Path | None:
    if which != "latest":
        path = Path(which)
        if not path.is_dir():
            raise FileNotFoundError(f"No checkpoint folder {path}")
        return path
    found = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, step: int, limit: int) -> None:
    """``accelerator.save_state`` into a temporary folder renamed when complete; keep the newest ``limit``."""
    tmp, final = checkpoint_dir / f".tmp-checkpoint-{step}", checkpoint_dir / f"checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.save_state(str(tmp))
    os.replace(tmp, final)
    found = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in found[: max(0, len(found) - limit)]:
        shutil.rmtree(old, ignore_errors=True)


def save_pipeline(pipeline: PDiffPipeline, output_dir: Path, extra_files: dict[str, str]) -> None:
    """Write the pipeline into ``output_dir`` so that it is never seen half written.

    Everything is saved to a temporary folder first; the old ``model_index.json`` (what makes the folder a
    pipeline) is removed before the components are swapped in and the new one is moved in last.
    """
    tmp = output_dir / ".tmp-pipeline"
    shutil.rmtree(tmp, ignore_errors=True)
    pipeline.save_pretrained(tmp)
    for name, text in extra_files.items():
        (tmp / name).write_text(text)
    (output_dir / "model_index.json").unlink(missing_ok=True)
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name == "model_index.json"):
        dest = output_dir / entry.name
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(entry, dest)
    tmp.rmdir()


def main(args: argparse.Namespace) -> None:
    recipe = recipe_from_args(args)
    t = recipe.train
    params = ParameterDataset.load(args.param_dataset, revision=args.param_dataset_revision)
    check_recipe_matches(recipe, params.target)
    output_dir = Path(args.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    accelerator = Accelerator(
        log_with=tracker(args.report_to),
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    set_seed(t.seed)
    vectors = params.vectors.to(accelerator.device)
    autoencoder = build_autoencoder(recipe, params.target, params.vectors)
    denoiser = build_denoiser(recipe)
    scheduler = build_scheduler(recipe)
    ae_optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=t.autoencoder_lr, weight_decay=t.weight_decay)
    dn_optimizer = torch.optim.AdamW(denoiser.parameters(), lr=t.diffusion_lr, weight_decay=t.weight_decay)
    ae_lr = get_scheduler(t.lr_scheduler, ae_optimizer, num_warmup_steps=t.lr_warmup_steps,
                          num_training_steps=t.autoencoder_steps)
    dn_lr = get_scheduler(t.lr_scheduler, dn_optimizer, num_warmup_steps=t.lr_warmup_steps,
                          num_training_steps=t.diffusion_steps)
    autoencoder, denoiser, ae_optimizer, dn_optimizer, ae_lr, dn_lr = accelerator.prepare(
        autoencoder, denoiser, ae_optimizer, dn_optimizer, ae_lr, dn_lr
    )
    ema = None
    if t.use_ema:
        unwrapped = accelerator.unwrap_model(denoiser)
        ema = EMAModel(unwrapped.parameters(), decay=t.ema_decay, model_cls=LatentDenoiser,
                       model_config=unwrapped.config)
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)

    total_steps = t.autoencoder_steps + t.diffusion_steps
    step = 0
    if args.resume_from_checkpoint:
        checkpoint = find_checkpoint(checkpoint_dir, args.resume_from_checkpoint)
        if checkpoint is None:
            accelerator.print(f"No checkpoint in {checkpoint_dir}: starting a new run")
        else:
            accelerator.load_state(str(checkpoint))
            step = int(checkpoint.name.split("-")[1])
            accelerator.print(f"Resumed from {checkpoint} at step {step}/{total_steps}")
    if accelerator.is_main_process:
        accelerator.init_trackers("pdiff", config={f"{s}.{k}": str(v) for s, sec in recipe.to_dict().items()
                                                   if isinstance(sec, dict) for k, v in sec.items()})

    progress = tqdm(range(total_steps), initial=step, desc="training", disable=not accelerator.is_local_main_process)
    losses: dict[str, float] = {}
    start_time = time.perf_counter()
    latents = None
    while step < total_steps:
        if step < t.autoencoder_steps:
            stage, model, optimizer, lr_schedule = "autoencoder", autoencoder, ae_optimizer, ae_lr
            model.train()
            loss = autoencoder_loss(model, sample_batch(vectors, t.autoencoder_batch_size))
        else:
            if latents is None:
                autoencoder.eval()
                with torch.no_grad():
                    latents = accelerator.unwrap_model(autoencoder).encode(vectors)
            stage, model, optimizer, lr_schedule = "diffusion", denoiser, dn_optimizer, dn_lr
            model.train()
            loss = diffusion_loss(model, scheduler, sample_batch(latents, t.diffusion_batch_size))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{stage} loss is {loss.item()} at step {step}; lower train.{stage}_lr")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        lr_schedule.step()
        if ema is not None and stage == "diffusion":
            ema.step(accelerator.unwrap_model(denoiser).parameters())
        step += 1
        losses[stage] = loss.item()
        progress.update(1)
        progress.set_postfix(stage=stage, loss=f"{loss.item():.4f}")
        accelerator.log({f"{stage}_loss": loss.item(), f"{stage}_lr": lr_schedule.get_last_lr()[0]}, step=step)
        if step % args.checkpointing_steps == 0 and step < total_steps and accelerator.is_main_process:
            save_checkpoint(accelerator, checkpoint_dir, step, args.checkpoints_total_limit)
    progress.close()
    train_seconds = time.perf_counter() - start_time
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        accelerator.end_training()
        return

    final_denoiser = copy.deepcopy(accelerator.unwrap_model(denoiser))
    if ema is not None:
        ema.copy_to(final_denoiser.parameters())
    autoencoder = accelerator.unwrap_model(autoencoder).eval()
    pipeline = PDiffPipeline(target=params.target, autoencoder=autoencoder, denoiser=final_denoiser.eval(),
                             scheduler=scheduler)
    metrics = {"final_losses": losses, "train_seconds": round(train_seconds, 1), "num_checkpoints": len(vectors)}
    if not args.skip_eval:
        metrics.update(reconstruction_accuracy(recipe, params, autoencoder))
    command = command_line(sys.argv)
    card = pipeline_card(recipe, args, metrics, command, params)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_pipeline(pipeline.to("cpu"), output_dir, {"README.md": card, "metrics.json": json.dumps(metrics, indent=2)})
    write_run_args(output_dir, recipe, command=command, param_dataset=str(args.param_dataset))
    accelerator.end_training()
    accelerator.print(f"Saved the pipeline to {output_dir} ({train_seconds:.1f} s of training)")
    for key in ("original_mean_test_accuracy", "reconstructed_mean_test_accuracy"):
        if key in metrics:
            accelerator.print(f"  {key}: {metrics[key]:.2f}")
    if args.push_to_hub:
        from pdiff_hub.hub.upload import push_folder_to_hub

        url = push_folder_to_hub(output_dir, args.hub_model_id, repo_type="model", token=args.hub_token,
                                 commit_message="Upload p-diff pipeline")
        accelerator.print(f"Pushed to {url}")


@torch.no_grad()
def reconstruction_accuracy(recipe: Recipe, params: ParameterDataset, autoencoder) -> dict:
    """Mean test accuracy of the collected checkpoints and of their reconstructions by the autoencoder.

    On the test images the evaluation uses: the whole split, or the recipe's ``evaluate.test_images`` subset.
    """
    splits = load_recipe_splits(recipe.data, recipe.target.model_kwargs)
    test = subsample_splits(splits, {"test": recipe.evaluate.test_images}, recipe.evaluate.seed)["test"]
    evaluator = ParameterEvaluator(params.target.model, params.target.layout, *test,
                                   batch_size=recipe.evaluate.batch_size)
    vectors = params.vectors
    reconstructed = autoencoder.decode(autoencoder.encode(vectors))
    original, recon = evaluator.accuracy(vectors), evaluator.accuracy(reconstructed)
    return {
        "original_mean_test_accuracy": original.mean().item(),
        "reconstructed_mean_test_accuracy": recon.mean().item(),
        "reconstruction_max_abs_accuracy_change": (recon - original).abs().max().item(),
        "reconstruction_relative_error": ((reconstructed - vectors).norm(dim=1) / vectors.norm(dim=1)).mean().item(),
        "reconstruction_test_images": len(test[1]),
    }


def pipeline_card(recipe: Recipe, args: argparse.Namespace, metrics: dict, command: str, params) -> str:
    t = recipe.train
    metadata = {
        "library_name": "pdiff_hub",
        "tags": ["p-diff", "neural-network-diffusion", "parameter-generation", recipe.target.model_name],
        "datasets": [recipe.data.dataset],
    }
    return render_card(
        "pipeline", metadata, name=recipe.name, model_name=recipe.target.model_name,
        model_kwargs=recipe.target.model_kwargs, param_patterns=recipe.target.param_patterns,
        num_params=params.target.layout.num_params, dataset=recipe.data.dataset, param_dataset=str(args.param_dataset),
        num_checkpoints=len(params.dataset), autoencoder=recipe.autoencoder.__dict__, denoiser=recipe.denoiser.__dict__,
        train=t.__dict__, metrics=metrics, command=command, repo_id=args.hub_model_id or str(args.output_dir),
    )


if __name__ == "__main__":
    main(parse_args())
