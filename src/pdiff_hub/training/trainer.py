"""The two-stage p-diff training loop under accelerate, resumable step for step.

Stage 1 trains the :class:`~pdiff_hub.ParameterAutoencoder` on the collected parameter vectors (noise augmentation
on); stage 2 freezes it, encodes the vectors once and trains the :class:`~pdiff_hub.LatentDenoiser` with the DDPM
objective. For a task family (a parameter dataset with a condition per row), or with ``train.accuracy_prompt`` (each
checkpoint's standardized validation accuracy, :mod:`.conditions`), the denoiser is conditional: each latent is
trained with its own condition, ``train.condition_dropout`` of the rows with the null condition
(classifier-free guidance), and the pipeline records what its conditions mean (``condition_info``).

The training state is saved every ``checkpointing_steps`` under ``OUTPUT_DIR/checkpoints/``; a run resumed from one
ends with the same weights as an uninterrupted run. The checkpoints belong to one run (:mod:`.checkpoints`,
:mod:`.identity`): the folder is checked before anything is built or written.

Under ``accelerate launch`` with N processes the recipe's batch sizes are the global batches: each rank trains on its
``batch // N`` rows of every step's batch (:func:`.objectives.rank_rows`) and draws its own noise (the global
generator seeded with ``seed + rank``, accelerate's ``device_specific`` seeding), and the models, wrapped in
DistributedDataParallel, average the gradients. The weights, the EMA weights and the stage-2 latents are the same on
every rank (checked at the end). A 1-process run draws exactly what it drew before runs had several processes.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, broadcast, gather_object, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..core.cli import UsageError
from ..core.io import remove_stale_temporaries
from ..data.parameters import ParameterDataset
from ..data.tasks import task_accuracy
from ..engine.evaluator import ParameterEvaluator
from ..models.autoencoder import ParameterAutoencoder
from ..models.denoiser import LatentDenoiser
from ..models.target import TargetModel
from ..pipeline import PDiffPipeline
from ..recipes.config import Recipe
from .checkpoints import RunCheckpoints, checkpoint_step, load_state, register_ema_checkpointing
from .conditions import condition_info, task_condition_info, training_conditions
from .identity import run_identity
from .objectives import (
    autoencoder_loss,
    batch_indices,
    build_autoencoder,
    build_denoiser,
    build_scheduler,
    diffusion_loss,
    rank_rows,
)

__all__ = ["PDiffTrainer", "TrainingResult", "check_batch_split", "check_recipe_matches", "check_steps",
           "check_task_family", "reconstruction_accuracy", "task_condition_info", "tracker"]


@dataclass
class TrainingResult:
    """What a finished training run produced (on the main process).

    Args:
        pipeline: the trained pipeline on the CPU (the denoiser's EMA weights when the recipe uses EMA).
        final_losses: the last loss of each stage, by stage name (of the global batch: the mean over processes).
        train_seconds: wall time of the training loop in this process (a resumed run counts only its own part).
        num_processes: how many processes trained it.
        mixed_precision: accelerate's mixed precision (``"no"``, ``"bf16"``, ``"fp16"``), as launched.
    """

    pipeline: PDiffPipeline
    final_losses: dict[str, float]
    train_seconds: float
    num_processes: int = 1
    mixed_precision: str = "no"


def check_recipe_matches(recipe: Recipe, target: TargetModel) -> None:
    """The recipe's target must describe the network the parameter dataset was collected from (for a task family,
    the 2-way network of :meth:`~pdiff_hub.recipes.config.Recipe.generated_model_kwargs`).

    Raises:
        ValueError: naming both layouts when they differ.
    """
    expected = TargetModel(**recipe.target_kwargs()).layout
    got = target.layout
    if expected != got:
        raise ValueError(
            f"The recipe's target ({recipe.target.model_name}, patterns {recipe.target.param_patterns}: "
            f"{expected.num_params} values) does not match the parameter dataset's ({target.config.model_name}: "
            f"{got.num_params} values, {list(got.names)[:4]}...)"
        )


def check_task_family(recipe: Recipe, params: ParameterDataset) -> None:
    """A task family's recipe trains on a task family's parameter dataset, any other recipe on one task's.

    Raises:
        ValueError: naming the recipe key that tells them apart.
    """
    if recipe.is_task_family != params.is_task_family:
        has = "is a task family (it has tasks.json)" if params.is_task_family else "holds the checkpoints of one task"
        wants = f"is {recipe.tasks.num_train_tasks}" if recipe.is_task_family else "is 0"
        raise ValueError(f"The parameter dataset {has}, but the recipe's tasks.num_train_tasks {wants}; train it with "
                         "the recipe it was collected with")


def check_steps(recipe: Recipe) -> None:
    """Both stages train at least one step: a pipeline with an untrained component is never the result of a run.

    Raises:
        UsageError: naming the key and its value.
    """
    for key in ("autoencoder_steps", "diffusion_steps"):
        value = getattr(recipe.train, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"train.{key} is {value!r}; both training stages need a whole number of steps, 1 or more")


def check_batch_split(recipe: Recipe, num_processes: int) -> None:
    """Under N processes each rank trains on ``batch // N`` rows of the recipe's batch: both batches must split evenly.

    Raises:
        UsageError: naming the key, its value and the process count.
    """
    for key in ("autoencoder_batch_size", "diffusion_batch_size"):
        value = getattr(recipe.train, key)
        if value % num_processes:
            raise UsageError(f"train.{key} is {value}, which does not split evenly over {num_processes} processes; "
                             f"give a multiple of {num_processes} (the global batch, shared by the processes)")


def tracker(report_to: str) -> str | None:
    """The accelerate tracker for ``report_to``: ``"auto"`` is tensorboard when it is installed, else none."""
    if report_to == "auto":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            return None
        return "tensorboard"
    return None if report_to == "none" else report_to


class PDiffTrainer:
    """Builds the recipe's components for a parameter dataset and trains both stages.

    Args:
        recipe: the recipe; its ``autoencoder``, ``denoiser`` and ``train`` sections are used.
        params: the collected checkpoints; the recipe's target must match theirs. A task family's (with a condition
            per row) train a conditional denoiser of ``condition_dim`` = its number of classes; with
            ``train.accuracy_prompt``, one of ``condition_dim`` 1 (the standardized validation accuracy).
        output_dir: the run folder: checkpoints go to ``output_dir/checkpoints``, tracker logs to ``output_dir/logs``.
        checkpointing_steps: save the training state every this many steps.
        checkpoints_total_limit: keep at most this many checkpoints.
        report_to: ``"tensorboard"``, ``"none"``, any accelerate tracker, or ``"auto"`` (see :func:`tracker`).
        resume_from_checkpoint: a checkpoint folder of this run, or ``"latest"`` (a new run when there is none yet).
        overwrite: replace the checkpoints in ``output_dir/checkpoints`` that this run does not resume, once it has
            saved its own (without it, such checkpoints are refused).

    Raises:
        ValueError: when the recipe's target or tasks do not match the parameter dataset's, a stage has no steps, the
            checkpoints' accuracies cannot prompt (``train.accuracy_prompt``: all equal), or the checkpoints folder
            holds checkpoints of another run or a checkpoint that is refused (UsageError).
    """

    def __init__(self, recipe: Recipe, params: ParameterDataset, output_dir: str | Path, *,
                 checkpointing_steps: int = 500, checkpoints_total_limit: int = 2, report_to: str = "auto",
                 resume_from_checkpoint: str | None = None, overwrite: bool = False):
        check_task_family(recipe, params)
        check_recipe_matches(recipe, params.target)
        check_steps(recipe)
        conditions = training_conditions(recipe, params)  # refused here, before anything is built or written
        self.recipe, self.params = recipe, params
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.checkpointing_steps = checkpointing_steps
        self.accelerator = Accelerator(
            log_with=tracker(report_to),
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
        )
        self.num_processes = self.accelerator.num_processes
        check_batch_split(recipe, self.num_processes)
        self.identity = run_identity(recipe, params, self.num_processes)
        self.checkpoints = RunCheckpoints(self.checkpoint_dir, self.identity, checkpoints_total_limit)
        self.resume_from = self.checkpoints.start(resume_from_checkpoint, overwrite)
        self.resume_requested = bool(resume_from_checkpoint)
        if self.accelerator.is_main_process:  # the run owns its folder: what a killed run of it left goes
            remove_stale_temporaries(self.output_dir)
            remove_stale_temporaries(self.checkpoint_dir)
        t = recipe.train
        # The seed comes before the components are built: it decides their initial weights (the same on every rank).
        set_seed(t.seed)
        self.vectors = params.vectors.to(self.accelerator.device)
        self.conditions = None if conditions is None else conditions.to(self.accelerator.device)
        autoencoder = build_autoencoder(recipe, params.target, params.vectors)
        denoiser = build_denoiser(recipe, 0 if self.conditions is None else self.conditions.shape[1])
        self.scheduler = build_scheduler(recipe)
        ae_optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=t.autoencoder_lr, weight_decay=t.weight_decay)
        dn_optimizer = torch.optim.AdamW(denoiser.parameters(), lr=t.diffusion_lr, weight_decay=t.weight_decay)
        ae_lr = get_scheduler(t.lr_scheduler, ae_optimizer, num_warmup_steps=t.lr_warmup_steps,
                              num_training_steps=t.autoencoder_steps)
        dn_lr = get_scheduler(t.lr_scheduler, dn_optimizer, num_warmup_steps=t.lr_warmup_steps,
                              num_training_steps=t.diffusion_steps)
        (self.autoencoder, self.denoiser, self.ae_optimizer, self.dn_optimizer, self.ae_lr,
         self.dn_lr) = self.accelerator.prepare(autoencoder, denoiser, ae_optimizer, dn_optimizer, ae_lr, dn_lr)
        self.ema = None
        if t.use_ema:
            unwrapped = self.accelerator.unwrap_model(self.denoiser)
            self.ema = EMAModel(unwrapped.parameters(), decay=t.ema_decay, model_cls=LatentDenoiser,
                                model_config=unwrapped.config)
            self.ema.to(self.accelerator.device)
            register_ema_checkpointing(self.accelerator, self.ema, LatentDenoiser)
        self.total_steps = t.autoencoder_steps + t.diffusion_steps
        if self.num_processes > 1:  # each rank its own noise from here on; its state is saved with every checkpoint
            set_seed(t.seed, device_specific=True)

    def resume(self) -> int:
        """Load the checkpoint chosen at construction; the step to continue from (0 if none)."""
        if self.resume_from is None:
            if self.resume_requested:
                self.accelerator.print(f"No checkpoint in {self.checkpoint_dir}: starting a new run")
            return 0
        load_state(self.accelerator, self.resume_from)
        step = checkpoint_step(self.resume_from)
        self.accelerator.print(f"Resumed from {self.resume_from} at step {step}/{self.total_steps}")
        return step

    def train(self) -> TrainingResult | None:
        """Run both stages to the end; the result on the main process, None on the others.

        Checkpoints of an earlier run that this one replaces (``overwrite``) are removed with its first checkpoint;
        when it saves none, call ``self.checkpoints.discard_replaced()`` once its result is saved.

        Raises:
            FloatingPointError: when a loss is not finite, naming the stage whose learning rate to lower.
        """
        accelerator, t = self.accelerator, self.recipe.train
        step = self.resume()
        if accelerator.is_main_process:
            accelerator.init_trackers("pdiff", config={f"{s}.{k}": str(v) for s, sec in self.recipe.to_dict().items()
                                                       if isinstance(sec, dict) for k, v in sec.items()})
        progress = tqdm(range(self.total_steps), initial=step, desc="training",
                        disable=not accelerator.is_local_main_process)
        losses: dict[str, float] = {}
        start_time = time.perf_counter()
        latents = None
        while step < self.total_steps:
            if step < t.autoencoder_steps:
                stage, model, optimizer, lr_schedule = "autoencoder", self.autoencoder, self.ae_optimizer, self.ae_lr
                model.train()
                loss = autoencoder_loss(model, self.vectors[self._rows(len(self.vectors), t.autoencoder_batch_size,
                                                                       step)])
            else:
                if latents is None:
                    latents = self._encode_checkpoints()
                stage, model, optimizer, lr_schedule = "diffusion", self.denoiser, self.dn_optimizer, self.dn_lr
                model.train()
                rows = self._rows(len(latents), t.diffusion_batch_size, step)
                conditions = None if self.conditions is None else self.conditions[rows]
                loss = diffusion_loss(model, self.scheduler, latents[rows], conditions, t.condition_dropout)
            reported = self._global_loss(loss)
            if not torch.isfinite(reported):  # the mean over ranks: all of them stop together
                raise FloatingPointError(f"{stage} loss is {reported.item()} at step {step}; lower train.{stage}_lr")
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            lr_schedule.step()
            if self.ema is not None and stage == "diffusion":
                self.ema.step(accelerator.unwrap_model(self.denoiser).parameters())
            step += 1
            losses[stage] = reported.item()
            progress.update(1)
            progress.set_postfix(stage=stage, loss=f"{reported.item():.4f}")
            accelerator.log({f"{stage}_loss": reported.item(), f"{stage}_lr": lr_schedule.get_last_lr()[0]}, step=step)
            if step % self.checkpointing_steps == 0 and step < self.total_steps:
                self.checkpoints.save(accelerator, step)  # on every process: each saves its random state
        progress.close()
        train_seconds = time.perf_counter() - start_time
        self.check_ranks_agree()
        accelerator.wait_for_everyone()
        accelerator.end_training()
        if not accelerator.is_main_process:
            return None
        return TrainingResult(self.final_pipeline(), losses, train_seconds, self.num_processes,
                              str(accelerator.mixed_precision))

    def _rows(self, num_rows: int, batch_size: int, step: int) -> torch.Tensor:
        """The rows of this process's batch at ``step``: the global generator's draw in a 1-process run, as it always
        was; under N processes this rank's share of the step's global batch. Indices, so that latents and their
        conditions are batched alike."""
        if self.num_processes == 1:
            return batch_indices(num_rows, batch_size)
        return rank_rows(num_rows, batch_size, seed=self.recipe.train.seed, step=step,
                         rank=self.accelerator.process_index, num_processes=self.num_processes)

    def _global_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss of the global batch (the mean of the ranks' equal shares), detached; ``loss`` in one process."""
        if self.num_processes == 1:
            return loss
        return self.accelerator.reduce(loss.detach(), reduction="mean")

    @torch.no_grad()
    def _encode_checkpoints(self) -> torch.Tensor:
        self.autoencoder.eval()
        autoencoder = self.accelerator.unwrap_model(self.autoencoder)
        if autoencoder.config.standardize_latents:
            # Fitted from the trained autoencoder alone, so a run resumed in stage 2 fits the same statistics.
            autoencoder.fit_latent_normalization(self.vectors)
        latents = autoencoder.encode(self.vectors)
        # The ranks' autoencoders are equal, so are their latents; the main process's are used everywhere so that
        # stage 2 trains on one set of latents even if a kernel rounded differently on another device.
        return broadcast(latents.contiguous(), from_process=0) if self.num_processes > 1 else latents

    def check_ranks_agree(self) -> None:
        """Under N processes, check that every rank ends with the same weights (and EMA weights) as the main one.

        Raises:
            RuntimeError: naming the ranks whose weights differ from the main process's.
        """
        if self.num_processes == 1:
            return
        digest = hashlib.sha256()
        models = [self.accelerator.unwrap_model(self.autoencoder), self.accelerator.unwrap_model(self.denoiser)]
        tensors = [p for m in models for p in m.state_dict().values()]
        tensors += list(self.ema.shadow_params) if self.ema is not None else []
        for tensor in tensors:
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        digests = gather_object([digest.hexdigest()])
        differing = [rank for rank, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise RuntimeError(f"the weights of process(es) {differing} differ from the main process's at the end of "
                               "training; the processes did not train the same model")

    def final_pipeline(self) -> PDiffPipeline:
        """The pipeline of the current weights, on the CPU (the denoiser's EMA weights when the recipe uses EMA),
        recording the run's identity (parameter dataset fingerprint, recipe hash, seed) as its provenance."""
        denoiser = copy.deepcopy(self.accelerator.unwrap_model(self.denoiser))
        if self.ema is not None:
            self.ema.copy_to(denoiser.parameters())
        autoencoder = self.accelerator.unwrap_model(self.autoencoder).eval()
        pipeline = PDiffPipeline(target=self.params.target, autoencoder=autoencoder, denoiser=denoiser.eval(),
                                 scheduler=self.scheduler).to("cpu")
        pipeline.register_provenance(param_dataset_fingerprint=self.identity["param_dataset_sha256"],
                                     recipe_hash=self.identity["recipe_sha256"], seed=self.identity["seed"])
        info = condition_info(self.recipe, self.params)
        if info is not None:
            pipeline.register_condition_info(**info)
        return pipeline


@torch.no_grad()
def reconstruction_accuracy(autoencoder: ParameterAutoencoder, vectors: torch.Tensor,
                            evaluator: ParameterEvaluator, tasks: Sequence[str] | None = None) -> dict:
    """How well the autoencoder keeps the checkpoints' accuracy: theirs and their reconstructions', measured alike.

    Args:
        autoencoder: the trained autoencoder.
        vectors: the collected checkpoints (K, D).
        evaluator: measures accuracy on the test images (their class labels).
        tasks: a task family's code of each checkpoint: each is measured on its own binary task
            (:func:`~pdiff_hub.data.tasks.task_accuracy`); None: the accuracy on the labels.

    Returns:
        The mean test accuracy of the originals and of the reconstructions, the largest per-checkpoint accuracy
        change, the mean relative L2 error of the reconstructions and the number of test images.
    """
    reconstructed = autoencoder.decode(autoencoder.encode(vectors))
    if tasks is None:
        original, recon = evaluator.accuracy(vectors), evaluator.accuracy(reconstructed)
    else:
        original, recon = (task_accuracy(evaluator.predictions(v), evaluator.labels, tasks)
                           for v in (vectors, reconstructed))
    return {
        "original_mean_test_accuracy": original.mean().item(),
        "reconstructed_mean_test_accuracy": recon.mean().item(),
        "reconstruction_max_abs_accuracy_change": (recon - original).abs().max().item(),
        "reconstruction_relative_error": ((reconstructed - vectors).norm(dim=1) / vectors.norm(dim=1)).mean().item(),
        "reconstruction_test_images": len(evaluator.labels),
    }
