"""PDiffPipeline: noise -> latents -> parameter vectors -> ready timm or transformers classifiers."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers import DDIMScheduler, DDPMScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import CommitOperationAdd, HfApi, ModelCardData, snapshot_download
from torch import nn

from .. import __version__
from ..core.io import resolve_folder
from ..models.autoencoder import ParameterAutoencoder
from ..models.conditioning import as_conditions, guided_noise_prediction
from ..models.denoiser import LatentDenoiser
from ..models.target import TargetModel
from .folder import COMPONENTS, RECORD_FILE, check_pipeline_folder, check_recorded_checksums, weight_checksums

__all__ = ["PDiffPipeline", "PDiffPipelineOutput", "accuracy_conditions", "is_accuracy_info"]

# Pipelines saved before the target moved into pdiff_hub.models name its old module in model_index.json. diffusers
# looks a component's module up among the imported ones (it never imports a name read from a file), so the old name
# is registered as an alias of the new module.
sys.modules.setdefault("pdiff_hub.target", sys.modules[TargetModel.__module__])


@dataclass
class PDiffPipelineOutput(BaseOutput):
    """Output of :class:`PDiffPipeline`.

    Args:
        models: the generated models: timm modules in eval mode (``output_type="timm"``), transformers
            classifiers in eval mode (``"transformers"``), full state dicts (``"state_dict"``), or ``None`` (``"pt"``).
        parameters: the generated parameter vectors, (num_models, D); (C * num_models, D) for C conditions.
        conditions: for a conditional call, the condition of each generated vector, (C * num_models, condition_dim);
            None otherwise.
    """

    models: list[nn.Module] | list[dict[str, torch.Tensor]] | None
    parameters: torch.Tensor
    conditions: torch.Tensor | None = None


class PDiffPipeline(DiffusionPipeline):
    """Generates the parameters of a network with a latent diffusion model (p-diff).

    Args:
        target: the network, its frozen weights and the layout of the generated parameters.
        autoencoder: maps parameter vectors to latents and back.
        denoiser: predicts the noise in a latent.
        scheduler: a diffusers scheduler, DDPM with the paper's schedule; DDIM via ``DDIMScheduler.from_config``.

    A pipeline whose denoiser has ``condition_dim`` > 0 is conditional: it generates models for given conditions (task
    codes, say), with classifier-free guidance, and :attr:`condition_info` says what its conditions mean. One trained
    with ``train.accuracy_prompt`` (``condition_info["kind"] == "accuracy"``) takes accuracies to aim at:
    ``pipe(num_models=10, accuracy=[91.0, 92.5])``.

    Example:
        ```py
        >>> import torch
        >>> from pdiff_hub import PDiffPipeline
        >>> pipe = PDiffPipeline.from_pretrained("org/pdiff-fashion-mnist-resnet18")
        >>> out = pipe(num_models=100, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
        >>> logits = out.models[0](images)
        ```
    """

    model_cpu_offload_seq = "denoiser->autoencoder"

    def __init__(
        self,
        target: TargetModel,
        autoencoder: ParameterAutoencoder,
        denoiser: LatentDenoiser,
        scheduler: DDPMScheduler | DDIMScheduler,
    ):
        super().__init__()
        _check_compatible(target, autoencoder, denoiser)
        self.register_modules(target=target, autoencoder=autoencoder, denoiser=denoiser, scheduler=scheduler)
        self.provenance: dict[str, str | int] = {}
        self.condition_info: dict = {}

    def register_provenance(self, **identity: str | int) -> None:
        """Record the identity of the run that made this pipeline; ``save_pretrained`` writes it, loading reads it.

        Known keys: ``param_dataset_fingerprint`` (:attr:`pdiff_hub.data.parameters.ParameterDataset.fingerprint`
        of the checkpoints it was trained on: evaluation refuses another parameter dataset by it) and
        ``recipe_hash`` (the training recipe's). Other JSON values (a seed) are kept as given.

        Example:
            ```py
            >>> pipe.register_provenance(param_dataset_fingerprint=params.fingerprint, recipe_hash="9f2c...")
            ```
        """
        self.provenance.update(identity)

    def register_condition_info(self, **info) -> None:
        """Record what a conditional pipeline's conditions mean; ``save_pretrained`` writes it, loading reads it.

        Any JSON values; for a family of tasks, e.g. ``description`` (what a condition value stands for),
        ``classes`` (the class of each code bit), ``train_conditions`` and ``held_out_conditions`` (the codes the
        denoiser was and was not trained on) and ``split_seed``.

        Example:
            ```py
            >>> pipe.register_condition_info(description="bit i = 1: class i is positive", held_out_conditions=codes)
            ```
        """
        if not self.denoiser.config.condition_dim:
            raise ValueError("This pipeline is unconditional (its denoiser has condition_dim 0): its conditions have "
                             "nothing to describe")
        try:
            # Stored as loading will read it back (tuples become lists).
            info = json.loads(json.dumps(info, allow_nan=False))
        except (TypeError, ValueError) as err:
            raise ValueError(f"condition_info must hold JSON values only (lists, numbers, text): {err}") from err
        self.condition_info.update(info)

    @torch.no_grad()
    def __call__(
        self,
        num_models: int = 1,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str | None = None,
        return_dict: bool = True,
        condition: torch.Tensor | Sequence[Sequence[float]] | None = None,
        guidance_scale: float = 1.0,
        accuracy: float | Sequence[float] | None = None,
    ) -> PDiffPipelineOutput | tuple:
        """Generate ``num_models`` networks (per condition), all sampled in one batch.

        Args:
            num_models: how many networks to generate (for each condition).
            num_inference_steps: denoising steps (50 by default; 1,000 is the paper's full DDPM chain).
            generator: a ``torch.Generator`` for reproducible sampling (or a list of them, one per network).
            output_type: ready models in the target's library: ``"timm"`` (timm modules, ``model(x)`` is the
                logits) or ``"transformers"`` (transformers classifiers, ``model(pixel_values).logits``); or
                ``"state_dict"`` for full state dicts, ``"pt"`` for the parameter vectors only. Default: the target's
                library.
            return_dict: return a :class:`PDiffPipelineOutput` (default) or a tuple ``(models, parameters)``,
                ``(models, parameters, conditions)`` for a conditional call.
            condition: conditional pipelines only: C conditions, a (C, condition_dim) tensor or array or a list of C
                codes; the output holds the ``num_models`` networks of the first condition, then those of the
                second, ... Without it a conditional pipeline generates unconditionally (its null condition).
            guidance_scale: classifier-free guidance ``s``: the noise prediction is
                ``eps_uncond + s * (eps_cond - eps_uncond)``; 1 (default) is the conditional prediction alone, 0 the
                unconditional one; other values run both, in one batch.
            accuracy: accuracy-conditioned pipelines only (trained with ``train.accuracy_prompt``): C validation
                accuracies in percent to aim at, a number or a list, instead of ``condition``; each becomes the
                condition ``(accuracy - accuracy_mean) / accuracy_std`` of :attr:`condition_info` (the output's
                ``conditions`` are these standardized values). A warning says when one lies more than 2 standard
                deviations outside the checkpoints' accuracies (the denoiser extrapolates there).

        Example:
            ```py
            >>> codes = [[0, 1, 1, 0, 0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]]
            >>> out = pipe(num_models=5, condition=codes, guidance_scale=2.0)
            >>> out.parameters.shape[0], out.conditions[5]  # 10 models; the sixth is for the second code
            ```
        """
        if num_models < 1:
            raise ValueError(f"num_models must be at least 1, got {num_models}")
        library = self.target.config.library
        output_type = library if output_type is None else output_type
        if output_type not in (library, "state_dict", "pt"):
            raise ValueError(f"output_type must be {library!r} (the target's library), 'state_dict' or 'pt', got "
                             f"{output_type!r}")
        self.autoencoder.eval()
        self.denoiser.eval()
        device, dtype = self._execution_device, self.denoiser.dtype
        condition_dim = self.denoiser.config.condition_dim
        if accuracy is not None:
            if condition is not None:
                raise ValueError("Give either accuracy= or condition=, not both: accuracy= becomes the condition")
            condition = accuracy_conditions(self.condition_info, accuracy)
        if not condition_dim and (condition is not None or guidance_scale != 1):
            raise ValueError("This pipeline is unconditional (its denoiser has condition_dim 0): it takes no "
                             "condition or guidance_scale")
        conditions = as_conditions(condition, condition_dim, guidance_scale)
        if conditions is not None:
            conditions = conditions.repeat_interleave(num_models, dim=0)  # condition-major: C blocks of num_models
        latent_shape = (num_models if conditions is None else len(conditions), 1, self.denoiser.config.latent_dim)
        latents = randn_tensor(latent_shape, generator=generator, device=device, dtype=dtype)
        latents = latents * self.scheduler.init_noise_sigma
        guided = conditions.to(device=device, dtype=dtype) if conditions is not None else None
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = self.scheduler.scale_model_input(latents, t)
            noise_pred = guided_noise_prediction(self.denoiser, model_input, t, guided, guidance_scale)
            latents = self.scheduler.step(noise_pred, t, latents, generator=generator).prev_sample

        parameters = self.autoencoder.decode(latents.to(self.autoencoder.dtype)).float().cpu()
        if not torch.isfinite(parameters).all():
            raise RuntimeError("Generation produced NaN or infinite parameters: the denoiser or autoencoder diverged")
        if output_type == "timm":
            models = [self.target.build_model(v) for v in parameters]
        elif output_type == "transformers":
            models = [self.target.build_transformers_model(v) for v in parameters]
        elif output_type == "state_dict":
            models = [self.target.build_state_dict(v) for v in parameters]
        else:
            models = None
        self.maybe_free_model_hooks()
        if not return_dict:
            return (models, parameters) if conditions is None else (models, parameters, conditions)
        return PDiffPipelineOutput(models=models, parameters=parameters, conditions=conditions)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, push_to_hub: bool = False, **kwargs) -> None:
        """``DiffusionPipeline.save_pretrained``, plus ``pdiff_hub.json``: the sha256 of every component's weights
        file, so that a replaced or damaged component is named when the folder is loaded, :attr:`provenance` and
        :attr:`condition_info`.

        With ``push_to_hub``, the folder is uploaded by :meth:`push_to_hub` (``repo_id``, ``commit_message``,
        ``private``, ``token`` and ``create_pr`` are passed on), record included.
        """
        hub_keys = ("repo_id", "commit_message", "private", "token", "create_pr")
        hub_kwargs = {k: kwargs.pop(k) for k in hub_keys if k in kwargs}
        super().save_pretrained(save_directory, *args, **kwargs)
        folder = Path(save_directory)
        record = {"checksums": {name: weight_checksums(folder / name) for name in COMPONENTS if name != "scheduler"},
                  "provenance": self.provenance, "pdiff_hub_version": __version__}
        if self.condition_info:  # absent for unconditional pipelines: their record is as before
            record["condition_info"] = self.condition_info
        (folder / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        if push_to_hub:
            self.push_to_hub(hub_kwargs.pop("repo_id", folder.name), **hub_kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> PDiffPipeline:
        """Load a pipeline from a local folder or a Hub repo id.

        A repo id is downloaded with ``huggingface_hub.snapshot_download`` (``revision``, ``token``, ``cache_dir``
        and ``local_files_only`` are passed on), then loaded from the folder. Every component folder and
        safetensors file is checked first, so a missing or corrupt file is named rather than silently replaced, and
        every weights file must match the checksum recorded in ``pdiff_hub.json`` when the pipeline was saved (a
        component swapped in from another run is refused). Pipelines saved by earlier versions, without that record
        or naming modules that have since moved, load unchanged. Other keyword arguments go to
        ``DiffusionPipeline.from_pretrained``.
        """
        hub_keys = ("revision", "token", "cache_dir", "local_files_only")
        hub_kwargs = {k: kwargs.pop(k) for k in hub_keys if k in kwargs}
        path = resolve_folder(pretrained_model_name_or_path, "pipeline folder",
                              lambda repo_id: snapshot_download(repo_id, **hub_kwargs))
        check_pipeline_folder(path, trust_remote_code=kwargs.get("trust_remote_code", False))
        record = check_recorded_checksums(path)
        kwargs.setdefault("use_safetensors", True)
        pipe = super().from_pretrained(path, **kwargs)
        pipe.provenance = dict(record.get("provenance", {})) if record else {}
        pipe.condition_info = dict(record.get("condition_info", {})) if record else {}
        return pipe

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str = "Upload p-diff pipeline with pdiff_hub",
        private: bool = False,
        token: str | None = None,
        create_pr: bool = False,
        revision: str | None = None,
        model_card: str | None = None,
    ) -> str:
        """Upload the pipeline (safetensors) with its card and recipe in one commit; returns the commit URL.

        Unlike ``DiffusionPipeline.push_to_hub``, which writes a generic card and may split a large upload into
        several commits, the card is ``model_card``, else the README.md of the folder the pipeline was loaded from
        (the training card), else a short generated one; that folder's ``args.yaml`` (the recipe the scripts read)
        goes along. :func:`pdiff_hub.hub.push_pipeline_to_hub` also takes the folder's other files (metrics,
        figures), refuses to upload a token found in a file and says why a push failed.

        Args:
            repo_id: ``"org/name"`` of the model repo (created if missing).
            commit_message: the commit message.
            private: create the repo private.
            token: a Hub token with write access; default: the stored login or ``HF_TOKEN``.
            create_pr: open a pull request instead of committing.
            revision: the branch to commit to (created if missing).
            model_card: the README.md text to publish.

        Example:
            ```py
            >>> pipe = PDiffPipeline.from_pretrained("runs/fmnist/pipeline")
            >>> pipe.push_to_hub("org/pdiff-fashion-mnist-resnet18")
            ```
        """
        source = Path(self.name_or_path) if self.name_or_path else None
        with tempfile.TemporaryDirectory(prefix="pdiff-pipeline-") as tmp:
            staging = Path(tmp)
            self.save_pretrained(staging, safe_serialization=True)
            for name in ("README.md", "args.yaml"):
                if source is not None and (source / name).is_file():
                    shutil.copy2(source / name, staging / name)
            if model_card is not None or not (staging / "README.md").is_file():
                card = model_card if model_card is not None else self._minimal_card(repo_id)
                (staging / "README.md").write_text(card, encoding="utf-8")
            # One create_commit, so the components, card and recipe land together or not at all.
            operations = [CommitOperationAdd(path.relative_to(staging).as_posix(), str(path))
                          for path in sorted(staging.rglob("*")) if path.is_file()]
            api = HfApi(token=token, library_name="pdiff_hub", library_version=__version__)
            repo_id = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True).repo_id
            if revision is not None and not create_pr:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.create_commit(repo_id, operations, commit_message=commit_message, revision=revision,
                                     create_pr=create_pr)
        return (info.pr_url or info.commit_url) if create_pr else info.commit_url

    def _minimal_card(self, repo_id: str) -> str:
        config = self.target.config
        metadata = ModelCardData(library_name="pdiff_hub",
                                 tags=["p-diff", "neural-network-diffusion", "parameter-generation", config.model_name])
        return (f"---\n{metadata.to_yaml()}\n---\n\n"
                f"# p-diff pipeline for `{config.model_name}`\n\nGenerates the {self.target.layout.num_params} "
                f"parameters `{', '.join(config.param_patterns)}` of a `{config.model_name}` with a latent diffusion "
                f"model ([p-diff](https://arxiv.org/abs/2402.13144)), made with `pdiff_hub` {__version__}.\n\n"
                "```python\nimport torch\nfrom pdiff_hub import PDiffPipeline\n\n"
                f'pipe = PDiffPipeline.from_pretrained("{repo_id}")\n'
                "out = pipe(num_models=10, generator=torch.Generator().manual_seed(0))\n```\n")


def is_accuracy_info(condition_info: dict | None) -> bool:
    """Whether a pipeline's ``condition_info`` is that of one trained with ``train.accuracy_prompt``."""
    return (condition_info or {}).get("kind") == "accuracy"


def accuracy_conditions(condition_info: dict, accuracy: float | Sequence[float]) -> torch.Tensor:
    """Accuracies in percent as the standardized (C, 1) conditions of an accuracy-conditioned pipeline, whose
    ``condition_info`` records the mean and standard deviation of its checkpoints' validation accuracies.

    Raises:
        ValueError: for a pipeline that is not accuracy-conditioned, or accuracies that are not finite numbers.
    """
    if not is_accuracy_info(condition_info):
        what = (f"conditioned on {condition_info['description']!r}; give its conditions with condition="
                if condition_info.get("description") else "not conditioned on accuracy")
        raise ValueError(f"accuracy= needs a pipeline trained with train.accuracy_prompt; this one is {what}")
    try:
        values = torch.as_tensor(accuracy, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"accuracy must be a number or a list of numbers (percent), got {accuracy!r}") from err
    if values.ndim > 1 or values.numel() == 0:
        raise ValueError(f"accuracy must be a number or a non-empty list of numbers (percent), got {accuracy!r}")
    values = values.reshape(-1)
    if not torch.isfinite(values).all():
        raise ValueError(f"accuracy must be finite numbers (percent), got {values.tolist()}")
    mean, std = condition_info["accuracy_mean"], condition_info["accuracy_std"]
    low, high = condition_info["accuracy_min"], condition_info["accuracy_max"]
    outside = [a for a in values.tolist() if a < low - 2 * std or a > high + 2 * std]
    if outside:  # stacklevel: this function <- __call__ <- torch.no_grad's wrapper <- the user's call
        warnings.warn(f"accuracy {outside} lies more than 2 standard deviations ({std:.3g} points) outside the "
                      f"checkpoints' validation accuracies [{low:g}, {high:g}]: the denoiser extrapolates there",
                      stacklevel=4)
    return ((values - mean) / std).float().unsqueeze(1)


def _check_compatible(target: TargetModel, autoencoder: ParameterAutoencoder, denoiser: LatentDenoiser) -> None:
    layout = target.layout
    if autoencoder.config.num_params != layout.num_params:
        raise ValueError(f"The autoencoder encodes vectors of {autoencoder.config.num_params} values, but the target "
                         f"{target.config.model_name!r} generates {layout.num_params} ({list(layout.names)})")
    sizes = autoencoder.config.tensor_sizes
    if sizes is not None and list(sizes) != layout.sizes:
        raise ValueError(f"The autoencoder's tensor sizes {list(sizes)} do not match the target's layout "
                         f"{dict(zip(layout.names, layout.sizes))}")
    if denoiser.config.latent_dim != autoencoder.config.latent_dim:
        raise ValueError(f"The denoiser works on latents of {denoiser.config.latent_dim} values, the autoencoder "
                         f"makes {autoencoder.config.latent_dim}")
