"""Generate models with a p-diff pipeline, measure them, keep the best by validation accuracy, export them for timm.

    python scripts/generate.py --pipeline runs/fmnist/pipeline --num_models 100 --export_dir runs/fmnist/generated
    python scripts/generate.py --pipeline org/pdiff-fashion-mnist-resnet18 --num_models 100 --select 3 \\
        --export_dir OUT --push_to_hub --hub_model_id org/fmnist-resnet18-generated

All models are sampled in one batch and measured on the validation and test splits of the pipeline's dataset (read
from the ``data`` section of the ``args.yaml`` saved beside the pipeline; ``--dataset``/``--image_size`` otherwise).
The chosen ones (by VALIDATION accuracy) are written to ``EXPORT_DIR/sample-<i>/`` as timm Hub repo folders
(``config.json``, ``model.safetensors``, ``README.md``), with ``EXPORT_DIR/generation.json`` recording the seed,
the steps and every accuracy. The export folder appears complete or not at all. With ``--push_to_hub`` each sample
goes to ``<hub_model_id>-sample-<i>`` (a single one to ``hub_model_id``); log in first (``hf auth login``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
import yaml
from diffusers import DDIMScheduler, DDPMScheduler

from pdiff_hub import PDiffPipeline
from pdiff_hub.core.io import atomic_output_dir
from pdiff_hub.data.images import DEFAULT_MEAN, DEFAULT_STD, dataset_to_tensors, load_image_dataset, num_classes
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.hub import GenerationRecord, export_timm_model, push_folder_to_hub

SCHEDULERS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="pipeline folder or Hub repo id")
    parser.add_argument("--revision", default=None, help="revision of a Hub pipeline")
    parser.add_argument("--num_models", type=int, default=100, help="models generated in one batch")
    parser.add_argument("--export_dir", required=True, help="output folder: sample-<i>/ and generation.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    parser.add_argument("--select", default="best", type=_selection,
                        help="'best' (one model), 'all', or K (the top K) by validation accuracy")
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="ddim")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    data = parser.add_argument_group("data (default: the 'data' section of the pipeline's args.yaml)")
    data.add_argument("--dataset", default=None, help="built-in name, folder or Hub dataset id")
    data.add_argument("--image_size", type=int, default=None, help="default: the target's image_size")
    data.add_argument("--val_size", type=int, default=None,
                      help="validation images carved from train (default 5000); must match the collection run so "
                           "that selection never sees the base model's training images")
    data.add_argument("--split_seed", type=int, default=None, help="seed of the train/validation split (default 0)")
    hub = parser.add_argument_group("Hub")
    hub.add_argument("--push_to_hub", action="store_true", help="push each exported model to the Hub")
    hub.add_argument("--hub_model_id", default=None, help="'org/name'; several samples go to '<id>-sample-<i>'")
    hub.add_argument("--hub_private", action="store_true", help="create the repos private")
    args = parser.parse_args(argv)
    if args.num_models < 1:
        parser.error("--num_models must be at least 1")
    if isinstance(args.select, int) and args.select > args.num_models:
        parser.error(f"--select {args.select} asks for more models than --num_models {args.num_models}")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id org/name")
    return args


def _selection(value: str) -> str | int:
    if value in ("best", "all"):
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise argparse.ArgumentTypeError(f"expected 'best', 'all' or a positive count, got {value!r}")


def data_settings(args: argparse.Namespace, pipeline_dir: Path, target_image_size: int) -> dict:
    """The dataset and its split: ``args.yaml``'s ``data`` section, overridden by the command line."""
    recipe_file = pipeline_dir / "args.yaml"
    recipe = yaml.safe_load(recipe_file.read_text()) if recipe_file.is_file() else {}
    data = {"val_size": 5000, "split_seed": 0, "image_size": target_image_size, **(recipe.get("data") or {})}
    for key in ("dataset", "image_size", "val_size", "split_seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if not data.get("dataset"):
        raise SystemExit(f"{pipeline_dir} has no args.yaml with a data section: pass --dataset (and --image_size, "
                         f"--val_size, --split_seed as used when collecting the parameters)")
    return data


def select_indices(val_accuracy: torch.Tensor, select: str | int) -> list[int]:
    """Row indices of the chosen models: best first by validation accuracy (ties: lower index), or all in order."""
    if select == "all":
        return list(range(len(val_accuracy)))
    ranked = torch.sort(val_accuracy, descending=True, stable=True).indices.tolist()
    return ranked[: 1 if select == "best" else select]


def main(args: argparse.Namespace) -> list[str]:
    """Generate, measure, select, export and optionally push; returns the commit URLs of the pushes."""
    pipe = PDiffPipeline.from_pretrained(args.pipeline, revision=args.revision)
    pipe.scheduler = SCHEDULERS[args.scheduler].from_config(pipe.scheduler.config)
    target = pipe.target
    model_kwargs = dict(target.config.model_kwargs or {})
    in_chans = int(model_kwargs.get("in_chans", 3))
    data = data_settings(args, Path(pipe.name_or_path), target.config.image_size)

    splits = load_image_dataset(data["dataset"], val_size=data["val_size"], seed=data["split_seed"])
    if "num_classes" in model_kwargs and num_classes(splits) != model_kwargs["num_classes"]:
        raise SystemExit(f"{data['dataset']} has {num_classes(splits)} classes but the target "
                         f"{target.config.model_name} has {model_kwargs['num_classes']}: wrong --dataset?")
    tensors = {name: dataset_to_tensors(splits[name], image_size=data["image_size"], in_chans=in_chans)
               for name in ("validation", "test")}

    generator = torch.Generator().manual_seed(args.seed)
    vectors = pipe(num_models=args.num_models, num_inference_steps=args.num_inference_steps, generator=generator,
                   output_type="pt").parameters
    accuracy = {name: ParameterEvaluator(target.model, target.layout, images, labels).accuracy(vectors)
                for name, (images, labels) in tensors.items()}
    chosen = select_indices(accuracy["validation"], args.select)
    ranks = {i: r + 1 for r, i in enumerate(torch.sort(accuracy["validation"], descending=True, stable=True)
                                             .indices.tolist())}
    repo_ids = {i: (args.hub_model_id if len(chosen) == 1 else f"{args.hub_model_id}-sample-{i}")
                for i in chosen} if args.push_to_hub else dict.fromkeys(chosen)
    label_feature = splits["test"].features["label"]
    label_names = getattr(label_feature, "names", None)

    records = {}
    export_dir = Path(args.export_dir)
    with atomic_output_dir(export_dir, overwrite=args.overwrite) as tmp:
        for i in chosen:
            records[i] = GenerationRecord(
                pipeline=str(args.pipeline), revision=args.revision, seed=args.seed, num_models=args.num_models,
                index=i, num_inference_steps=args.num_inference_steps, scheduler=type(pipe.scheduler).__name__,
                dataset=str(data["dataset"]), val_accuracy=float(accuracy["validation"][i]),
                test_accuracy=float(accuracy["test"][i]), val_size=len(tensors["validation"][1]),
                test_size=len(tensors["test"][1]), rank=ranks[i], repo_id=repo_ids[i])
            export_timm_model(target, vectors[i], tmp / f"sample-{i}", card_values=records[i], mean=DEFAULT_MEAN,
                              std=DEFAULT_STD, label_names=label_names, image_size=data["image_size"])
        summary = {
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
            "pipeline": str(args.pipeline), "revision": args.revision, "seed": args.seed,
            "num_models": args.num_models, "num_inference_steps": args.num_inference_steps,
            "scheduler": type(pipe.scheduler).__name__, "data": data, "select": args.select,
            "val_accuracy": accuracy["validation"].tolist(), "test_accuracy": accuracy["test"].tolist(),
            "samples": [{"folder": f"sample-{i}", **vars(records[i])} for i in chosen],
        }
        (tmp / "generation.json").write_text(json.dumps(summary, indent=2))

    val, test = accuracy["validation"], accuracy["test"]
    print(f"{args.num_models} models ({args.scheduler}, {args.num_inference_steps} steps, seed {args.seed}): "
          f"validation {val.min():.2f}/{val.mean():.2f}/{val.max():.2f}, "
          f"test {test.min():.2f}/{test.mean():.2f}/{test.max():.2f} (min/mean/max %)")
    for i in chosen:
        print(f"  sample-{i}: validation {val[i]:.2f}%, test {test[i]:.2f}% -> {export_dir / f'sample-{i}'}")

    urls = []
    for i in chosen if args.push_to_hub else []:
        urls.append(push_folder_to_hub(export_dir / f"sample-{i}", repo_ids[i], "model", private=args.hub_private,
                                       commit_message=f"Generated model {i} of {args.num_models} (seed {args.seed})"))
        print(f"  pushed sample-{i} to {repo_ids[i]}: {urls[-1]}")
    return urls


if __name__ == "__main__":
    main(parse_args())
