"""The sections of a recipe, each key with its type, default and rule (what values it allows), in one place.

``autoencoder`` and ``denoiser`` are built from the components' signatures (the model is the one source of their
keys and defaults); their rules are given beside them. :data:`PAIR_RULES` relates keys of different sections.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

from ..core.classifiers import LIBRARIES, classifier_io
from ..engine.fitting import kept_steps
from ..models.autoencoder import LATENT_NORMS, ParameterAutoencoder
from ..models.conditioning import CONDITION_MODES
from ..models.denoiser import LatentDenoiser
from .rules import Rule, choice, integer, items, number, odd, random_seed, setting, symmetric_channels, text

__all__ = ["PAIR_RULES", "RETIRED_KEYS", "SECTIONS", "AutoencoderConfig", "CollectConfig", "DataConfig",
           "DenoiserConfig", "EvaluateConfig", "LoraConfig", "Recipe", "TargetConfig", "TasksConfig", "TrainConfig"]

# diffusers' get_scheduler names that need no more than warm-up and total steps (piecewise_constant needs rules).
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
SAMPLERS = ("ddim", "ddpm")  # pdiff_hub.evaluation.generation.SCHEDULERS's names (a test keeps them equal)


@dataclass
class DataConfig:
    """The image dataset: a built-in name (``fashion_mnist``, ``mnist``, ``digits``), a folder or a Hub id."""

    dataset: str = setting("fashion_mnist", text())
    image_size: int = setting(32, integer(1))
    val_size: int = setting(5000, integer(0))
    split_seed: int = setting(0, random_seed())


@dataclass
class TargetConfig:
    """The network (timm or 🤗 transformers) and the name patterns of its generated parameters.

    ``library: timm`` (the default): ``model_name`` is a ``timm.create_model`` name and ``model_kwargs`` its
    arguments (``num_classes``, ``in_chans``). ``library: transformers``: ``model_name`` is an image-classification
    architecture (``ViTForImageClassification``), a config type (``resnet``), a local folder or a Hub id, and
    ``model_kwargs`` are config values (``num_labels``, ``num_channels``, ``hidden_size``...). ``param_patterns`` use
    the library's own parameter names (``layer4.1.bn1`` / ``classifier``).
    """

    library: str = setting("timm", choice(LIBRARIES))
    model_name: str = setting("resnet18", text())
    model_kwargs: dict = setting({"num_classes": 10, "in_chans": 1}, Rule(
        "a mapping of timm arguments (transformers config values) whose num_classes and in_chans (num_labels and "
        "num_channels), when given, are integers >= 1",
        lambda v: all(type(v[k]) is int and v[k] >= 1
                      for k in ("num_classes", "in_chans", "num_labels", "num_channels") if k in v)))
    param_patterns: list = setting(["layer4.1.bn1", "layer4.1.bn2"], items(str, text(), non_empty=True))

    def image_kwargs(self) -> dict:
        """``num_classes`` (when known) and ``in_chans`` of the network, in timm's words, for the data loaders."""
        classes, channels = classifier_io(self.library, self.model_name, self.model_kwargs)
        return {"in_chans": channels, **({"num_classes": classes} if classes is not None else {})}


@dataclass
class LoraConfig:
    """A PEFT LoRA adapter as the generated parameters: a base network adapted to another task (rank 0 = none).

    The base network (``target``) is trained from scratch on ``base_classes`` of the dataset only (empty = all of
    them), or of ``base_dataset`` when set (another dataset with as many classes, split like ``data``: MNIST for a
    Fashion-MNIST adapter); then ``peft.get_peft_model`` adds LoRA matrices of rank ``rank`` (scale
    ``alpha / rank``) to the modules ``target_modules`` names, and trains whole copies of ``modules_to_save`` (the
    head, for new classes), all from the trained base. The adapter, trained on every class at ``collect.lr`` for
    ``burn_in_steps`` steps before the first kept checkpoint, is what collection keeps and the pipeline generates:
    ``target.param_patterns`` choose among the adapter's parameters (``["*"]`` = all of them).
    """

    rank: int = setting(0, integer(0))
    alpha: float = setting(8.0, number(0, above=True))
    target_modules: list = setting([], items(str, text(), distinct=True))
    modules_to_save: list = setting([], items(str, text(), distinct=True))
    base_classes: list = setting([], items(int, integer(0), distinct=True))
    base_dataset: str = ""
    burn_in_steps: int = setting(0, integer(0))

    def peft_arguments(self) -> dict | None:
        """``peft.LoraConfig`` arguments of the adapter (None for rank 0: no adapter)."""
        if self.rank == 0:
            return None
        return {"r": self.rank, "lora_alpha": self.alpha, "target_modules": list(self.target_modules),
                "modules_to_save": list(self.modules_to_save) or None}


@dataclass
class CollectConfig:
    """Base training from scratch, then checkpoint collection of the generated subset (AdamW, constant lr)."""

    base_epochs: int = setting(3, integer(1))
    base_lr: float = setting(2e-3, number(0, above=True))
    base_weight_decay: float = setting(0.05, number(0))
    base_batch_size: int = setting(128, integer(1))
    num_checkpoints: int = setting(200, integer(2))
    lr: float = setting(0.15, number(0, above=True))
    weight_decay: float = setting(0.0, number(0))
    batch_size: int = setting(128, integer(1))
    seeds: list = setting([0], items(int, random_seed(), non_empty=True, distinct=True))
    eval_batch_size: int = setting(1024, integer(1))


def _component_section(name: str, component: type, derived: tuple[str, ...], rules: dict[str, Rule],
                       doc: str) -> type:
    """A recipe section whose keys and defaults are ``component.__init__``'s: the model is the one source of both.

    ``derived`` names the arguments the data decides (the parameter count, the latent size a denoiser inherits),
    which are not settings; ``rules`` gives the others theirs. Tuple defaults become lists, the form YAML reads and
    writes.
    """
    fields = []
    for arg in inspect.signature(component.__init__).parameters.values():
        if arg.name == "self" or arg.name in derived or arg.default is inspect.Parameter.empty:
            continue
        default = list(arg.default) if isinstance(arg.default, tuple) else arg.default
        kind = type(default) if default is not None else Any
        fields.append((arg.name, kind, field(default_factory=functools.partial(copy.deepcopy, default),
                                             metadata={"rule": rules[arg.name]} if arg.name in rules else {})))
    section = dataclasses.make_dataclass(name, fields)
    section.__module__, section.__doc__ = __name__, doc
    return section


AutoencoderConfig = _component_section(
    "AutoencoderConfig", ParameterAutoencoder, ("num_params", "tensor_sizes"),
    {"latent_dim": integer(1), "channels": items(int, integer(1), non_empty=True), "kernel_size": odd(1),
     "input_noise": number(0), "latent_noise": number(0), "latent_norm": choice(LATENT_NORMS),
     "latent_kl": number(0)},
    "The parameter autoencoder: the arguments of ParameterAutoencoder, with its defaults.")
DenoiserConfig = _component_section(
    "DenoiserConfig", LatentDenoiser, ("latent_dim", "condition_dim"),
    {"channels": symmetric_channels(), "kernel_size": odd(1), "time_embed_dim": integer(1),
     "condition_mode": choice(CONDITION_MODES)},
    "The latent denoiser: the arguments of LatentDenoiser, with its defaults (latent_dim is the autoencoder's; "
    "condition_dim is the parameter dataset's, its number of classes for a task family, else 0).")

# Keys that were settings once and are derived from the data now, each with why. An args.yaml recorded before (a
# recipe with a ``run`` section) still loads, the key dropped; any other recipe that sets one is refused.
RETIRED_KEYS = {
    "denoiser.condition_dim": "the condition size is derived from the parameter dataset (a task family's number of "
                              "classes, else 0)",
}


@dataclass
class TrainConfig:
    """Both training stages, and the paper's DDPM noise schedule.

    ``condition_dropout``: the fraction of a diffusion batch's rows trained with the null condition instead of
    theirs (classifier-free guidance), for a task family or an accuracy prompt; unused without conditions.
    ``accuracy_prompt``: condition the denoiser on each checkpoint's validation accuracy, standardized over the
    checkpoints (the G.pt idea: ``pipe(accuracy=...)`` prompts for an accuracy); off, the paper's unconditional
    p-diff. Not with a task family, whose condition is its task.
    """

    seed: int = setting(0, random_seed())
    autoencoder_steps: int = setting(1500, integer(1))
    autoencoder_lr: float = setting(1e-3, number(0, above=True))
    autoencoder_batch_size: int = setting(50, integer(1))
    diffusion_steps: int = setting(3000, integer(1))
    diffusion_lr: float = setting(1e-3, number(0, above=True))
    diffusion_batch_size: int = setting(50, integer(1))
    condition_dropout: float = setting(0.1, number(0, below=1))
    accuracy_prompt: bool = False
    weight_decay: float = setting(2e-6, number(0))
    lr_scheduler: str = setting("cosine", choice(LR_SCHEDULERS))
    lr_warmup_steps: int = setting(0, integer(0))
    use_ema: bool = False
    ema_decay: float = setting(0.999, number(0, below=1))
    num_train_timesteps: int = setting(1000, integer(1))
    beta_start: float = setting(1e-4, number(0, above=True, below=1))
    beta_end: float = setting(2e-2, number(0, above=True, below=1))


@dataclass
class EvaluateConfig:
    """Generation and the baselines of the memorization critique.

    ``val_images`` / ``test_images``: evaluate on a random subset of this many images of the split (drawn with
    ``seed``; 0 = the whole split), for models whose generated layers are expensive to run hundreds of times.
    ``noise_amplitudes`` may be empty (no noise baseline). ``accuracy_prompts``: the validation accuracies (%) an
    accuracy-prompted pipeline (``train.accuracy_prompt``) is evaluated at, one row of ``num_models`` models each;
    empty = the checkpoints' recorded validation accuracy at its median, 90th percentile and maximum. Unused for
    other pipelines.
    """

    num_models: int = setting(100, integer(1))
    num_inference_steps: int = setting(50, integer(1))
    scheduler: str = setting("ddim", choice(SAMPLERS))
    seed: int = setting(0, random_seed())
    noise_amplitudes: list = setting([0.01, 0.06, 0.12], items(float, number(0)))
    average_size: int = setting(16, integer(1))
    batch_size: int = setting(2048, integer(1))
    val_images: int = setting(0, integer(0))
    test_images: int = setting(0, integer(0))
    accuracy_prompts: list = setting([], items(float, number(0), distinct=True))


@dataclass
class TasksConfig:
    """A family of binary tasks (subsets of the classes): the generated part is fitted once per task (0 = no tasks).

    ``num_train_tasks`` codes are collected and ``num_heldout_tasks`` more are kept for evaluation only, all drawn and
    split with ``seed`` (:mod:`pdiff_hub.data.tasks`). Each task fits the target's generated parameters (a 2-way
    head, optionally the last normalization layers) from the same start with AdamW at ``lr``, and keeps
    ``checkpoints_per_task`` checkpoints, one every ``checkpoint_every`` steps after ``burn_in_steps``.
    ``backbone_classes`` lists the classes the frozen backbone is trained on (empty = all of them). ``backbone``, when
    set, names an already trained backbone instead: a parameter dataset's or pipeline's folder (its ``target/`` is
    used), a target folder itself, or a pipeline's Hub id; it must be the recipe's ``target`` network.
    """

    num_train_tasks: int = setting(0, integer(0))
    num_heldout_tasks: int = setting(0, integer(0))
    seed: int = setting(0, random_seed())
    burn_in_steps: int = setting(200, integer(0))
    checkpoints_per_task: int = setting(10, integer(1))
    checkpoint_every: int = setting(10, integer(1))
    lr: float = setting(1e-2, number(0, above=True))
    weight_decay: float = setting(0.0, number(0))
    batch_size: int = setting(256, integer(1))
    backbone_classes: list = setting([], items(int, integer(0), distinct=True))
    backbone: str = ""

    def kept_steps(self) -> range:
        """The 0-based steps whose values each task keeps (:func:`~pdiff_hub.engine.fitting.kept_steps`)."""
        return kept_steps(self.checkpoints_per_task, self.checkpoint_every, self.burn_in_steps)


@dataclass
class Recipe:
    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def is_task_family(self) -> bool:
        """Whether the recipe collects a family of binary tasks (``tasks.num_train_tasks`` > 0)."""
        return self.tasks.num_train_tasks > 0

    def generated_model_kwargs(self) -> dict:
        """The timm arguments of the network whose parameters are generated: ``target.model_kwargs``, with a 2-way
        head for a task family (its frozen backbone is built with ``target.model_kwargs`` as they are)."""
        kwargs = copy.deepcopy(self.target.model_kwargs)
        if self.is_task_family:
            kwargs["num_classes"] = 2
        return kwargs

    def target_kwargs(self, model_kwargs: dict | None = None) -> dict:
        """The :class:`~pdiff_hub.models.target.TargetModel` arguments of the recipe's network, built with
        ``model_kwargs`` (default: :meth:`generated_model_kwargs`)."""
        t = self.target
        return {"model_name": t.model_name, "param_patterns": list(t.param_patterns), "library": t.library,
                "model_kwargs": self.generated_model_kwargs() if model_kwargs is None else model_kwargs,
                "image_size": self.data.image_size, "adapter": self.lora.peft_arguments()}


# Rules between keys: (first key, second key, holds, what is allowed). Checked after every key passed its own rule.
PAIR_RULES = [
    ("train.beta_start", "train.beta_end", lambda a, b: a < b, "train.beta_start must be below train.beta_end"),
    ("evaluate.num_inference_steps", "train.num_train_timesteps", lambda a, b: a <= b,
     "evaluate.num_inference_steps cannot exceed train.num_train_timesteps"),
    ("tasks.num_train_tasks", "tasks.num_heldout_tasks", lambda a, b: a > 0 or b == 0,
     "held-out tasks need training tasks: tasks.num_heldout_tasks must be 0 when tasks.num_train_tasks is 0"),
    ("train.accuracy_prompt", "tasks.num_train_tasks", lambda a, b: not (a and b > 0),
     "a task family is conditioned on its tasks: train.accuracy_prompt must be false when tasks.num_train_tasks > 0"),
    ("autoencoder.bound_latent", "autoencoder.latent_norm", lambda a, b: not (a and b != "none"),
     "autoencoder.bound_latent must be false with autoencoder.latent_norm 'layer' (a normalized latent has a fixed "
     "scale already)"),
    ("autoencoder.latent_kl", "autoencoder.bound_latent", lambda a, b: a == 0 or not b,
     "autoencoder.bound_latent must be false when autoencoder.latent_kl > 0 (the KL term sets the latent's scale)"),
    ("autoencoder.latent_kl", "autoencoder.latent_norm", lambda a, b: a == 0 or b == "none",
     "autoencoder.latent_norm must be 'none' when autoencoder.latent_kl > 0 (the KL term sets the latent's scale)"),
    ("lora.rank", "lora.target_modules", lambda a, b: a == 0 or len(b) > 0,
     "a LoRA adapter needs modules to adapt: lora.target_modules must name some when lora.rank > 0"),
    ("lora.rank", "lora.base_classes", lambda a, b: a > 0 or not b,
     "base classes are those of an adapted base network: lora.base_classes must be empty when lora.rank is 0"),
    ("lora.rank", "lora.base_dataset", lambda a, b: a > 0 or not b,
     "a base dataset is that of an adapted base network: lora.base_dataset must be empty when lora.rank is 0"),
    ("lora.rank", "lora.burn_in_steps", lambda a, b: a > 0 or b == 0,
     "the burn-in is an adapter's: lora.burn_in_steps must be 0 when lora.rank is 0"),
    ("lora.rank", "tasks.num_train_tasks", lambda a, b: a == 0 or b == 0,
     "a task family fits its own heads: lora.rank must be 0 when tasks.num_train_tasks > 0"),
    ("target.library", "tasks.num_train_tasks", lambda a, b: a == "timm" or b == 0,
     "a task family replaces the head with timm's reset_classifier: tasks.num_train_tasks must be 0 when "
     "target.library is not timm"),
]


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Recipe) if f.name != "name"}
