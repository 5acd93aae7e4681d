"""The ``ganaug`` command line: fit a GAN on labelled images, generate, demo.

Examples
--------
::

    ganaug fit scans/ --labels labels.csv -o model.safetensors --image-size 64
    ganaug fit pacs_export/ -o model.safetensors --pseudonymise-labels ~/keys/map.csv
    ganaug fit scans/ -o translator.safetensors --method translate --image-size 64
    ganaug translate translator.safetensors normal_scans/ --to pneumonia -o out/
    ganaug generate model.safetensors -n 500 --class pneumonia -o synthetic/ \\
        --format dicom --data scans/ --labels labels.csv
    ganaug demo --output-dir ./ganaug-demo
    ganaug export model.safetensors -o generator.onnx
    torchrun --nproc_per_node=4 -m ganaug fit scans/ --labels labels.csv \\
        -o model.safetensors

``fit``, ``generate`` and ``translate`` check their outputs before they write anything
(:func:`gancore.files.check_outputs`): none may be an input, another output or a
non-regular file, none may go into the training data's folder, and ``generate``
never writes synthetic images into a folder of images that are not synthetic.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from gancore.cli import (
    CliError,
    HelpFormatter,
    add_hidden_alias,
    count_or_auto,
    os_error,
    version,
)

__all__ = ["main"]

_SPLIT_SEED_OFFSET = 7919  # the audit split's seed differs from the GAN's


# ------------------------------------------------------------------ helpers


def _load_labelled(
    data: Path,
    labels: Path | None,
    image_size: int | None,
    window,
    strict: bool,
    pseudonymise: bool = False,
):
    from ganaug.io import load_images

    loaded = load_images(
        data,
        labels=labels,
        image_size=image_size,
        window=window,
        strict=strict,
        pseudonymise_labels=pseudonymise,
    )
    if loaded.labels is None:
        raise CliError(
            f"{data}: no labels; pass --labels labels.csv (file,label rows) or put "
            "each class's images in a sub-folder named after the class"
        )
    if len(loaded.images) < 2:
        raise CliError(
            f"{data}: found {len(loaded.images)} image; a GAN needs at least 2 "
            "per class"
        )
    counts = Counter(loaded.labels.tolist())
    if len(counts) < 2:
        raise CliError(
            f"{data}: all images have the label {next(iter(counts))!r}; "
            "ganaug needs at least two classes"
        )
    small = sorted(str(label) for label, count in counts.items() if count < 2)
    if small:
        raise CliError(
            f"{data}: class(es) {', '.join(small)} have a single image; every class "
            "needs at least 2 (better: dozens)"
        )
    return loaded


def _audit_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out images: ``fraction`` of each class, at least 1
    when the class has 3 or more images."""
    rng = np.random.default_rng(seed + _SPLIT_SEED_OFFSET)
    held_out = np.zeros(len(labels), dtype=bool)
    if fraction <= 0:
        return held_out
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        n_out = int(round(fraction * len(rows)))
        if len(rows) >= 3:
            n_out = max(1, n_out)
        n_out = min(n_out, len(rows) - 2)
        if n_out > 0:
            held_out[rng.choice(rows, n_out, replace=False)] = True
    return held_out


def _window(value: list[str] | None):
    if value is None:
        return None
    if value == ["dicom"]:
        return "dicom"
    if len(value) == 2:
        try:
            return float(value[0]), float(value[1])
        except ValueError:
            pass
    raise CliError("--window takes 'dicom' or two numbers: CENTER WIDTH")


def _grayscale_display(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    return images[:, 0] if images.shape[1] == 1 else np.moveaxis(images, 1, -1)


def save_sample_grid(
    path: Path,
    real: np.ndarray,
    real_labels: np.ndarray,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
    value_range: tuple[float, float],
    per_class: int = 8,
) -> Path:
    """Write a PNG grid: per class, a row of real and a row of synthetic images."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from gancore.files import atomic_write

    classes = [c for c in np.unique(real_labels)]
    low, high = value_range
    figure, axes = plt.subplots(
        2 * len(classes),
        per_class,
        figsize=(per_class * 1.0 + 0.4, 2 * len(classes) * 1.15),
        squeeze=False,
    )
    for index, label in enumerate(classes):
        rows = (
            ("real", real[real_labels == label]),
            ("SYNTHETIC", synthetic[synthetic_labels == label]),
        )
        for offset, (kind, images) in enumerate(rows):
            shown = _grayscale_display(images[:per_class])
            for column in range(per_class):
                axis = axes[2 * index + offset, column]
                axis.axis("off")
                if column < len(shown):
                    image = np.clip(
                        (shown[column] - low) / max(high - low, 1e-12), 0, 1
                    )
                    axis.imshow(image, cmap="gray", vmin=0, vmax=1)
            axes[2 * index + offset, 0].set_title(
                f"{kind}: {label}", fontsize=8, loc="left"
            )
    figure.tight_layout()
    with atomic_write(path) as temp:
        figure.savefig(temp, format="png", dpi=90)
    plt.close(figure)
    return path


def save_loss_curve(path: Path, history) -> Path:
    """Write a PNG of the per-epoch discriminator and generator losses."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from gancore.files import atomic_write

    runs = history if isinstance(history, dict) else {"": history}
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for name, records in runs.items():
        epochs = [r["epoch"] for r in records]
        suffix = f" ({name})" if name != "" else ""
        axis.plot(
            epochs, [r["d_loss"] for r in records], label=f"discriminator{suffix}"
        )
        axis.plot(epochs, [r["g_loss"] for r in records], label=f"generator{suffix}")
    axis.set_xlabel("epoch")
    axis.set_ylabel("mean loss")
    axis.legend(fontsize=7)
    figure.tight_layout()
    with atomic_write(path) as temp:
        figure.savefig(temp, format="png", dpi=90)
    plt.close(figure)
    return path


def _artifact(output: Path, suffix: str) -> Path:
    """A file beside ``output`` (a model file, an output folder or file), named
    after it: ``model.safetensors`` -> ``model_losses.png``, ``synthetic/`` ->
    ``synthetic_memorization.png``."""
    output = Path(os.path.abspath(output))  # "." and "out/" have a name too
    name = output.name
    for ending in (".safetensors", ".model", ".npz", ".nii.gz", ".nii"):
        if name.endswith(ending):
            name = name[: -len(ending)]
    return output.with_name(f"{name}{suffix}")


# ------------------------------------------------------------------ outputs


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or inside it (symbolic links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def _data_folder(data: Path | None) -> Path | None:
    """The folder of real images a run reads: the data folder, or a DICOMDIR's."""
    if data is None:
        return None
    if data.is_dir():
        return data
    if data.name.upper() == "DICOMDIR":
        return data.parent
    return None


def _check_run(
    outputs: list[tuple[str, Path | None]],
    inputs: list[tuple[str, Path | None]],
    data: Path | None,
    directories: tuple[str, ...] = (),
) -> None:
    """Refuse, before anything is written, outputs that would destroy or mix with
    what the run reads.

    :func:`gancore.files.check_outputs` refuses an output that is an input (any
    file of the data folder too, by any spelling or hard link), another output or
    a non-regular file; on top, nothing goes into the folder of real images (the
    training data, or the images to translate), where the next run would read it
    as patient data.
    """
    from gancore.files import UnsafeOutputError, check_outputs

    folder = _data_folder(data)
    data_files = []
    if folder is not None:
        data_files = [
            ("training image", path) for path in folder.rglob("*") if path.is_file()
        ]
    check_outputs(outputs, inputs + data_files, directories=directories)
    if folder is None:
        return
    for role, path in outputs:
        if path is not None and _inside(path, folder):
            raise UnsafeOutputError(
                f"{path}: the {role} would be inside the folder of real images "
                f"{folder}, where it would be taken for patient data; choose a path "
                "outside it"
            )


def _refuse_real_images(folder: Path, recursive: bool) -> None:
    """Refuse to write synthetic images where images that are not synthetic are:
    mixed with them, the synthetic ones would pass for patient data."""
    from ganaug.io import find_real_image
    from gancore.files import UnsafeOutputError

    real = find_real_image(folder, recursive=recursive)
    if real is not None:
        raise UnsafeOutputError(
            f"{folder}: holds images that are not synthetic (e.g. {real}); ganaug "
            "does not write synthetic images among real ones: choose a new or "
            "empty folder"
        )


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise CliError(f"--threads must be at least 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


# ------------------------------------------------------------------ commands


def _check_fit(args) -> dict[str, Path]:
    """The files ``fit`` writes, checked before anything is written."""
    from gancore.files import UnsafeOutputError

    written = {
        "model (-o)": args.output,
        "sample grid": _artifact(args.output, "_samples.png"),
        "loss curve": _artifact(args.output, "_losses.png"),
        "memorisation figure": _artifact(args.output, "_memorization.png"),
    }
    mapping = args.pseudonymise_labels
    _check_run(
        [
            *written.items(),
            ("label mapping (--pseudonymise-labels)", mapping),
            ("checkpoint (--checkpoint)", args.checkpoint),
        ],
        [("training data", args.data), ("labels CSV (--labels)", args.labels)],
        args.data,
    )
    if mapping is not None and any(
        os.path.realpath(path.parent) == os.path.realpath(Path(mapping).parent)
        for path in written.values()
    ):
        raise UnsafeOutputError(
            f"{mapping}: the label mapping would sit beside the model and its "
            "figures; it is the key back to the original labels: keep it in another "
            "folder"
        )
    return written


# The options of fit that only the noise GAN has, and their flags.
_GAN_ONLY = {
    "architecture": "--architecture",
    "latent_dim": "--latent-dim",
    "r1_gamma": "--r1-gamma",
}


def _sampler_for(args, device, verbose: bool):
    """The sampler ``fit --method`` asks for, with the options given; the others
    keep the sampler's own defaults (they differ between the two)."""
    from ganaug import GANAugmenter, GANTranslator

    kind = GANTranslator if args.method == "translate" else GANAugmenter
    options = {
        "n_epochs": args.n_epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "base_channels": args.base_channels,
        "diffaugment": args.diffaugment,
        "loss": args.loss,
        "filter_synthetic": args.filter_synthetic,
    }
    if kind is GANAugmenter:
        options.update({name: getattr(args, name) for name in _GAN_ONLY})
    else:
        gan_defaults = GANAugmenter().get_params()
        for name, flag in _GAN_ONLY.items():
            if getattr(args, name) not in (None, gan_defaults[name]):
                raise CliError(f"{flag} applies to --method gan only")
        if args.loss == "wgan-gp":
            raise CliError("--method translate takes --loss hinge or bce")
    options = {k: v for k, v in options.items() if v is not None}
    if options.get("diffaugment") == "none":
        options["diffaugment"] = None
    return kind(
        **options,
        device=args.device if device is None else str(device),
        random_state=args.random_state,
        verbose=verbose,
        checkpoint_path=str(args.checkpoint) if args.checkpoint else None,
    )


def _cmd_fit(args) -> int:
    from ganaug.privacy import memorization_report, write_label_mapping
    from gancore import distributed_context, init_distributed

    _set_threads(args.threads)
    if args.image_size is not None and args.image_size < 4:
        raise CliError(f"--image-size must be at least 4 pixels, got {args.image_size}")
    if not 0 <= args.holdout_fraction < 1:
        raise CliError(
            f"--holdout-fraction must be in [0, 1), got {args.holdout_fraction}"
        )
    written = _check_fit(args)
    if args.resume and not args.checkpoint:
        raise CliError("--resume needs --checkpoint PATH")
    if args.checkpoint and not args.resume:
        existing = sorted(Path(args.checkpoint).parent.glob(args.checkpoint.name + "*"))
        if existing:
            raise CliError(
                f"{existing[0]}: a checkpoint exists; pass --resume to continue from "
                "it, or remove it to start afresh"
            )
    # Under torchrun (WORLD_SIZE > 1) this joins the process group: every process
    # trains on its shard of the images, and only rank 0 writes and reports.
    device = init_distributed(args.device)
    rank, world = distributed_context()
    loaded = _load_labelled(
        args.data,
        args.labels,
        args.image_size,
        _window(args.window),
        args.strict,
        pseudonymise=args.pseudonymise_labels is not None,
    )
    if loaded.label_mapping is not None and rank == 0:
        write_label_mapping(loaded.label_mapping, args.pseudonymise_labels)
        print(
            f"labels pseudonymised as {', '.join(sorted(loaded.label_mapping))}; "
            f"the mapping is in {args.pseudonymise_labels} (keep it apart from the "
            "model and the synthetic images)",
            file=sys.stderr,
        )
    images, labels = loaded.images, loaded.labels.astype(str)
    sources = np.asarray([Path(source).name for source in loaded.sources])
    held_out = _audit_split(labels, args.holdout_fraction, args.random_state)
    train_images, train_labels = images[~held_out], labels[~held_out]
    counts = Counter(train_labels.tolist())
    if rank == 0:
        print(
            f"{len(images)} images of {images.shape[1:]} (C, H, W), classes "
            + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
            + f"; {int(held_out.sum())} held out for the quality metrics and the "
            "memorisation audit",
            file=sys.stderr,
        )
    sampler = _sampler_for(args, device if world > 1 else None, verbose=rank == 0)
    started = time.perf_counter()
    sampler.fit_resample(train_images, train_labels)
    if rank != 0:  # the same weights as rank 0, which writes them
        return 0
    print(f"trained in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    sampler.save(
        args.output,
        metadata={
            "holdout_fraction": args.holdout_fraction,
            "split_seed": args.random_state,
            "n_images": len(images),
            # For the synthetic DICOM files' Burned In Annotation.
            "burned_in_annotation": loaded.burned_in_annotation,
        },
    )
    print(f"model written to {args.output}")
    per_class = 8
    synthetic, synthetic_labels = sampler.sample(
        per_class * len(counts),
        y=np.repeat(sorted(counts), per_class),
        random_state=args.random_state,
    )
    grid = save_sample_grid(
        written["sample grid"],
        train_images,
        train_labels,
        synthetic,
        synthetic_labels,
        sampler.data_range_,
    )
    curve = save_loss_curve(written["loss curve"], sampler.history_)
    print(f"sample grid: {grid}\nloss curve: {curve}")
    if held_out.any():
        from ganaug.quality import sampler_quality

        quality = sampler_quality(
            sampler,
            train_images,
            train_labels,
            images[held_out],
            labels[held_out],
            random_state=args.random_state,
        )
        print(
            f"synthetic against the {int(held_out.sum())} held-out images, beside "
            f"the {len(train_images)} training images against them:\n"
            + quality.summary()
        )
        n_audit = int(min(1000, max(len(train_images), 50)))
        translated = args.method == "translate"
        audit, _, *rows = sampler.sample(
            n_audit,
            random_state=args.random_state + 1,
            **({"return_sources": True} if translated else {}),
        )
        report = memorization_report(
            audit,
            train_images,
            images[held_out],
            figure_path=written["memorisation figure"],
            train_names=sources[~held_out].tolist(),
            identifiers=loaded.identifiers,
            sources=train_images[rows[0]] if translated else None,
        )
        print(report.summary())
    return 0


def _check_image_outputs(
    args,
    inputs: list[tuple[str, Path | None]],
    data: Path | None,
    artifact: tuple[str, Path | None],
    what: str,
) -> None:
    """Check, before anything is written, where ``generate`` or ``translate``
    writes ``what`` images (``args.output`` in ``args.format``) and its figure
    (``artifact``: role and path, or None): not over an input, not among real
    images, not into the folder of the model or of ``data``."""
    from ganaug.io import NIFTI_SUFFIXES
    from gancore.files import UnsafeOutputError

    out = args.output
    one_file = (args.format == "npz" and out.suffix == ".npz") or (
        args.format == "nifti" and out.name.endswith(NIFTI_SUFFIXES)
    )
    outputs = [("output (-o)", out)]
    if args.format == "npz" and not one_file:
        outputs.append(("output file", out / "synthetic.npz"))
    outputs.append(artifact)
    _check_run(
        outputs,
        [("model", args.model), *inputs],
        data,
        directories=() if one_file else ("output (-o)",),
    )
    if not one_file and _inside(args.model, out):
        raise UnsafeOutputError(
            f"{out}: the output folder holds the model {args.model}; write the "
            f"{what} images to a folder of their own"
        )
    if not one_file:
        _refuse_real_images(out, recursive=True)
    elif args.format == "nifti":  # a volume among real ones would be read as one
        _refuse_real_images(out.parent, recursive=False)


def _check_generate(args) -> Path | None:
    """Check ``generate``'s outputs before anything is written; returns the path
    of the memorisation figure (None without --data)."""
    figure = (
        _artifact(args.output, "_memorization.png") if args.data is not None else None
    )
    _check_image_outputs(
        args,
        [
            ("training data (--data)", args.data),
            ("labels CSV (--labels)", args.labels),
        ],
        args.data,
        ("memorisation figure", figure),
        "synthetic",
    )
    return figure


def _cmd_generate(args) -> int:
    from tqdm.auto import tqdm

    from ganaug import GANAugmenter
    from ganaug.io import write_images
    from ganaug.privacy import check_labels, memorization_report, safe_display_name
    from gancore.device import seed_from_random_state

    _set_threads(args.threads)
    sampler = _load(GANAugmenter, args.model)  # a missing model is the first error
    figure = _check_generate(args)
    classes = [str(c) for c in sampler.classes_.tolist()]
    if args.n_samples < 1:
        raise CliError(f"-n must be at least 1, got {args.n_samples}")
    loaded, identifiers = None, None
    if args.data is not None:
        size = sampler.image_shape_[1:] if sampler.image_shape_ else None
        # Pseudonymised here whatever the folder's labels are: the audit only needs
        # which images share a class, and it writes no label.
        loaded = _load_labelled(
            args.data, args.labels, size, _window(args.window), False, True
        )
        identifiers = loaded.identifiers
    # The model's labels name the output files and fill their tags: screened
    # against the training images' headers too when they are given.
    check_labels(
        classes,
        identifiers,
        origin=f"class label of the model {args.model.name}",
        how="refit the model with --pseudonymise-labels MAPPING.csv",
    )
    if args.class_name is not None:
        if args.class_name not in classes:
            raise CliError(
                f"class {args.class_name!r} is not in the model; it knows "
                + ", ".join(classes)
            )
        label = sampler.classes_[classes.index(args.class_name)]
        wanted = np.full(args.n_samples, label, dtype=sampler.classes_.dtype)
    else:
        wanted = np.resize(sampler.classes_, args.n_samples)
    # Without --random-state the noise is fresh entropy: left to itself, a loaded
    # sampler starts from the model's random_state, the same images every run.
    seed = args.random_state
    if seed is None:
        seed = seed_from_random_state(None)
    chunks_x, chunks_y = [], []
    first = True
    for start in tqdm(range(0, args.n_samples, 256), desc="generating", unit="batch"):
        x, y = sampler.sample(
            len(wanted[start : start + 256]),
            y=wanted[start : start + 256],
            random_state=seed if first else None,
        )
        first = False
        chunks_x.append(x)
        chunks_y.append(y)
    images, labels = np.concatenate(chunks_x), np.concatenate(chunks_y)
    if images.ndim == 3:
        images = images[:, None]
    metadata = getattr(sampler, "metadata_", {}) or {}
    model_name = safe_display_name(Path(args.model).name, "a model", identifiers)
    paths = write_images(
        images,
        args.output,
        fmt=args.format,
        labels=[str(v) for v in labels],
        value_range=sampler.data_range_,
        model_description=f"{model_name} (GANAugmenter, "
        f"{sampler.architecture}, {sampler.loss} loss)",
        burned_in_annotation=metadata.get("burned_in_annotation"),
    )
    print(f"wrote {len(images)} synthetic images ({args.format}) to {args.output}")
    if len(paths) <= 3:
        for path in paths:
            print(f"  {path}")
    if loaded is None:
        print(
            "memorisation audit skipped: pass --data (and --labels) with the training "
            "images to compare the synthetic images with them",
            file=sys.stderr,
        )
        return 0
    if metadata.get("n_images") not in (None, len(loaded.images)):
        warnings.warn(
            f"{args.data} has {len(loaded.images)} images but the model was trained "
            f"from {metadata['n_images']}: the audit's held-out split will differ",
            stacklevel=1,
        )
    held_out = _audit_split(
        loaded.labels.astype(str),
        float(metadata.get("holdout_fraction", 0.1)),
        int(metadata.get("split_seed", 0)),
    )
    if not held_out.any():
        print("memorisation audit skipped: the model was fit without held-out images")
        return 0
    names = np.asarray([Path(source).name for source in loaded.sources])
    report = memorization_report(
        images,
        loaded.images[~held_out],
        loaded.images[held_out],
        # Beside the output, not inside it: the audit figure must never be
        # mistaken for one of the synthetic images.
        figure_path=figure,
        train_names=names[~held_out].tolist(),
        identifiers=identifiers,
    )
    print(report.summary())
    return 0


def _load(kind, path: Path):
    """``kind.load(path)``, with what to do instead when the file holds the other
    sampler."""
    from gancore import ModelFileError

    try:
        return kind.load(path)
    except ModelFileError as err:
        if "holds a 'ganaug.GANTranslator'" in str(err):
            raise CliError(
                f"{path}: is a translator (fit --method translate): it makes images "
                "from given ones; use 'ganaug translate MODEL IMAGES --to CLASS'"
            ) from err
        if "holds a 'ganaug.GANAugmenter'" in str(err):
            raise CliError(
                f"{path}: is a GAN (fit --method gan): it translates nothing; use "
                "'ganaug generate MODEL -n N', or fit with --method translate"
            ) from err
        raise


def save_translation_grid(
    path: Path,
    sources: np.ndarray,
    outputs: np.ndarray,
    value_range: tuple[float, float],
    target: str,
    per_row: int = 8,
) -> Path:
    """Write a PNG: a row of source images above the row of their translations."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from gancore.files import atomic_write

    n = min(per_row, len(sources))
    low, high = value_range
    figure, axes = plt.subplots(2, n, figsize=(n * 1.0 + 0.4, 2 * 1.2), squeeze=False)
    for offset, (title, images) in enumerate(
        (("real source", sources), (f"SYNTHETIC: translated to {target}", outputs))
    ):
        shown = _grayscale_display(images[:n])
        for column in range(n):
            axis = axes[offset, column]
            axis.axis("off")
            image = np.clip((shown[column] - low) / max(high - low, 1e-12), 0, 1)
            axis.imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[offset, 0].set_title(title, fontsize=8, loc="left")
    figure.tight_layout()
    with atomic_write(path) as temp:
        figure.savefig(temp, format="png", dpi=90)
    plt.close(figure)
    return path


def _check_translate(args) -> Path:
    """Check ``translate``'s outputs before anything is written; returns the path
    of the before/after grid."""
    grid = _artifact(args.output, "_translation.png")
    _check_image_outputs(
        args,
        [
            ("images to translate", args.images),
            ("labels CSV (--labels)", args.labels),
        ],
        args.images,
        ("before/after grid", grid),
        "translated",
    )
    return grid


def _cmd_translate(args) -> int:
    from ganaug import GANTranslator
    from ganaug.io import load_images, write_images
    from ganaug.privacy import check_labels, safe_display_name, source_similarity

    _set_threads(args.threads)
    translator = _load(GANTranslator, args.model)
    grid_path = _check_translate(args)
    classes = [str(c) for c in translator.classes_.tolist()]
    if args.to not in classes:
        raise CliError(
            f"--to {args.to!r} is not a class of the model; it knows "
            + ", ".join(classes)
        )
    size = translator.image_shape_[1:] if translator.image_shape_ else None
    loaded = load_images(
        args.images,
        labels=args.labels,
        image_size=size,
        window=_window(args.window),
        strict=args.strict,
        pseudonymise_labels=True,  # their classes are not used: read, never shown
    )
    images = loaded.images
    if len(images) == 0:
        raise CliError(f"{args.images}: no image to translate")
    if images.shape[1] != translator.image_shape_[0]:
        raise CliError(
            f"{args.images}: images have {images.shape[1]} channel(s); the model "
            f"was fitted on {translator.image_shape_[0]}"
        )
    target = translator.classes_[classes.index(args.to)]
    # The class names the output files and fills their tags: screened against
    # the source images' headers too.
    check_labels(
        [args.to],
        loaded.identifiers,
        origin=f"class label of the model {args.model.name}",
        how="refit the model with --pseudonymise-labels MAPPING.csv",
    )
    translator.verbose = True  # a progress bar over the batches
    started = time.perf_counter()
    sources = images
    outputs = translator.translate(sources, to=target)
    seconds = time.perf_counter() - started
    model_name = safe_display_name(Path(args.model).name, "a model", loaded.identifiers)
    metadata = getattr(translator, "metadata_", {}) or {}
    burned_in = loaded.burned_in_annotation
    if burned_in is None:
        burned_in = metadata.get("burned_in_annotation")
    paths = write_images(
        outputs,
        args.output,
        fmt=args.format,
        labels=[args.to] * len(outputs),
        value_range=translator.data_range_,
        model_description=f"{model_name} (GANTranslator)",
        burned_in_annotation=burned_in,
        translated=True,
    )
    print(
        f"translated {len(outputs)} images to {args.to} in {seconds:.0f} s; wrote "
        f"them ({args.format}) to {args.output}"
    )
    if len(paths) <= 3:
        for path in paths:
            print(f"  {path}")
    grid = save_translation_grid(
        grid_path, sources, outputs, translator.data_range_, args.to
    )
    similarity = source_similarity(outputs, sources)
    print(
        f"before/after grid: {grid}\nmedian correlation of a translated image with "
        f"its own source: {float(np.median(similarity)):.3f} (1 = unchanged); each "
        "output is derived from one real patient's image and stays close to it"
    )
    return 0


# The demo's image size and GAN batch: 32 pixels, and small batches for more
# generator steps in the couple of minutes the demo may take on 2 CPU cores.
_DEMO_SIZE = 32
_DEMO_BATCH = 16


def _demo_images(n_per_class: dict[str, int], size: int, seed: int):
    """Two visibly different classes of MONAI test images: few large blobs
    ("large") against many small ones ("small")."""
    from monai.data import create_test_image_2d

    state = np.random.RandomState(seed)
    images, labels = [], []
    for label, count in n_per_class.items():
        for _ in range(count):
            if label == "large":
                image, _ = create_test_image_2d(
                    size,
                    size,
                    num_objs=2,
                    rad_max=size // 4,
                    rad_min=size // 6,
                    noise_max=0.1,
                    random_state=state,
                )
            else:
                image, _ = create_test_image_2d(
                    size,
                    size,
                    num_objs=8,
                    rad_max=max(3, size // 10),
                    rad_min=2,
                    noise_max=0.1,
                    random_state=state,
                )
            images.append(image)
            labels.append(label)
    images = (np.clip(np.stack(images), 0, 1) * 255).astype(np.uint8)
    return images, np.asarray(labels)


def _cmd_demo(args) -> int:
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import FunctionTransformer

    from ganaug import GANAugmenter
    from ganaug.quality import sampler_quality

    _set_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = _DEMO_SIZE
    n_train = {"large": 200, "small": 20}
    train_x, train_y = _demo_images(n_train, size, args.random_state)
    test_x, test_y = _demo_images(
        {"large": 200, "small": 200}, size, args.random_state + 1
    )

    def flat(images):
        return images.reshape(len(images), -1)

    def accuracy(*steps) -> float:
        classifier = make_pipeline(
            *steps,
            FunctionTransformer(lambda x: x / 255.0),
            LogisticRegression(C=0.1, max_iter=2000),
        ).fit(flat(train_x), train_y)
        return balanced_accuracy_score(test_y, classifier.predict(flat(test_x)))

    sampler = GANAugmenter(
        image_shape=(1, size, size),
        n_epochs=args.n_epochs,
        batch_size=_DEMO_BATCH,
        random_state=args.random_state,
        device=args.device,
        verbose=True,
    )
    network = {"dcgan": "DCGAN", "resnet": "residual GAN", "mlp": "MLP GAN"}
    print(
        f"demo: {len(train_x)} training images ({size}x{size}, "
        f"{n_train['large']} 'large' vs {n_train['small']} 'small'), "
        f"{len(test_x)} test images; training GANAugmenter's "
        f"{'conditional ' if sampler.conditional else ''}"
        f"{network[sampler.architecture]} for {sampler.n_epochs} epochs of batch "
        f"{sampler.batch_size}, then a logistic regression without over-sampling, "
        "with RandomOverSampler and with the synthetic images, and the quality "
        "metrics...",
        file=sys.stderr,
    )
    started = time.perf_counter()
    gan_score = accuracy(sampler)
    seconds = time.perf_counter() - started
    scores = {
        "without over-sampling": accuracy(),
        "RandomOverSampler": accuracy(RandomOverSampler(random_state=0)),
        "GANAugmenter": gan_score,
    }
    # imblearn's pipeline (without memory) fits its steps in place: the sampler
    # is the fitted one.
    synthetic, synthetic_y = sampler.sample(
        16, y=np.repeat(["large", "small"], 8), random_state=args.random_state
    )
    images = (-1, 1, size, size)
    grid = save_sample_grid(
        out / "samples.png",
        train_x.reshape(images),
        train_y,
        synthetic.reshape(images),
        synthetic_y,
        sampler.data_range_,
    )
    curve = save_loss_curve(out / "losses.png", sampler.history_)
    sampler.save(out / "demo-model.safetensors")
    quality = sampler_quality(
        sampler,
        flat(train_x),
        train_y,
        flat(test_x),
        test_y,
        random_state=args.random_state,
    )
    print(
        f"GAN and its classifier trained in {seconds:.0f} s; sample grid: {grid}; "
        f"loss curve: {curve}"
    )
    print(
        "synthetic images against the test images, beside the training images "
        "against them:\n" + quality.summary()
    )
    print("balanced accuracy of a logistic regression on the test images:")
    for name, score in scores.items():
        print(f"  {name + ':':24s}{score:.3f}")
    none, ros = scores["without over-sampling"], scores["RandomOverSampler"]
    print(
        f"  gain over no over-sampling: {gan_score - none:+.3f}, over "
        f"RandomOverSampler: {gan_score - ros:+.3f}"
    )
    return 0


def _cmd_export(args) -> int:
    """The model's generator as one ONNX file (see :mod:`ganaug.export`)."""
    from gancore.exporting import MissingExtraError
    from gancore.files import check_outputs

    from .export import export_onnx

    check_outputs([("ONNX file (-o)", args.output)], [("model file", args.model)])
    _set_threads(args.threads)
    try:
        export_onnx(args.model, args.output)
    except MissingExtraError as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {args.output}: the generator of {args.model}, as ONNX")
    return 0


# --------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganaug",
        description="GAN augmentation of small, imbalanced medical imaging datasets.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version("ganaug"))
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice)"
    )

    def add_parser(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            formatter_class=HelpFormatter,
            **kwargs,
        )

    def random_state(command: argparse.ArgumentParser, **kwargs) -> None:
        # The spelling ganomaly uses too; --seed is the older one.
        command.add_argument("--random-state", type=int, **kwargs)
        add_hidden_alias(command, "--seed", "random_state", type=int)

    def n_epochs(command: argparse.ArgumentParser, type=int, **kwargs) -> None:
        command.add_argument("--n-epochs", type=type, **kwargs)
        add_hidden_alias(command, "--epochs", "n_epochs", type=type)

    # fit's defaults are the samplers' own: one home for them.  The options both
    # have default to None here ("the method's"), and their help shows both.
    from ganaug import GANAugmenter, GANTranslator

    default = GANAugmenter().get_params()
    translator = GANTranslator().get_params()

    def both(name: str) -> str:
        return f"gan {default[name]}, translate {translator[name]}"

    fit = add_parser("fit", help="train a GAN (or a translator) on labelled images")
    fit.add_argument("data", type=Path, help="folder of DICOM/NIfTI/PNG/JPEG, or .npz")
    fit.add_argument("--labels", type=Path, help="CSV of file,label rows")
    fit.add_argument("-o", "--output", type=Path, required=True, help="model file")
    # Training only: generate and translate run the generator on the CPU, where
    # a fixed --random-state gives the same images on every run.
    fit.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    fit.add_argument(
        "--method",
        choices=["gan", "translate"],
        default="gan",
        help="gan: a class-conditional GAN makes images from noise (GANAugmenter); "
        "translate: a StarGAN translates other classes' images into a class "
        "(GANTranslator; use 'ganaug translate' with the model)",
    )
    fit.add_argument("--image-size", type=int, help="resize images to SIZE x SIZE")
    fit.add_argument(
        "--window",
        nargs="+",
        metavar="W",
        help="DICOM VOI window: 'dicom' or CENTER WIDTH",
    )
    n_epochs(
        fit,
        type=count_or_auto,
        help="passes over the images, or 'auto': a budget of pixels seen (gan: "
        "about 40,000 images at 64x64, at most 400 epochs; translate: about "
        f"12,000, at most 200) (default: {both('n_epochs')})",
    )
    fit.add_argument(
        "--batch-size",
        type=int,
        help=f"images per step (default: {both('batch_size')})",
    )
    fit.add_argument(
        "--latent-dim", type=int, default=default["latent_dim"], help="noise size (gan)"
    )
    fit.add_argument(
        "--learning-rate",
        type=float,
        help=f"Adam step size, both networks (default: {both('learning_rate')})",
    )
    fit.add_argument(
        "--base-channels",
        type=int,
        help=f"width of the networks (default: {both('base_channels')})",
    )
    fit.add_argument(
        "--architecture",
        choices=["dcgan", "resnet", "mlp"],
        default=default["architecture"],
        help="network family of the gan (resnet: residual nets, several times "
        "slower per image on a CPU)",
    )
    fit.add_argument(
        "--loss",
        choices=["hinge", "wgan-gp", "bce"],
        help="adversarial loss; translate takes hinge or bce "
        f"(default: {both('loss')})",
    )
    fit.add_argument(
        "--diffaugment",
        help="augmentation of the discriminator's inputs: a DiffAugment policy "
        "such as 'color,translation,cutout' (or a subset), 'ada' (adaptive "
        "augmentation, gan only), 'none', or 'auto' (the full policy below 5,000 "
        "images, none above) (default: auto)",
    )
    fit.add_argument(
        "--r1-gamma",
        type=float,
        default=default["r1_gamma"],
        help="weight of the R1 penalty on real images (0: off; gan)",
    )
    fit.add_argument(
        "--filter",
        dest="filter_synthetic",
        action=argparse.BooleanOptionalAction,
        default=default["filter_synthetic"],
        help="keep only synthetic images that a classifier trained on the real "
        "images assigns to their class (it is saved with the model, so generate "
        "and translate filter too; up to 8 candidates drawn per kept image)",
    )
    fit.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.1,
        help="fraction of each class kept out of training, for the quality "
        "metrics and the memorisation audit",
    )
    random_state(fit, default=0, help="seeds weights, noise and the audit split")
    fit.add_argument(
        "--strict",
        action="store_true",
        help="stop at an unreadable file instead of skipping it",
    )
    fit.add_argument(
        "--checkpoint",
        type=Path,
        help="write a training checkpoint here after every epoch",
    )
    fit.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed fit from --checkpoint (same data and options)",
    )
    fit.add_argument(
        "--pseudonymise-labels",
        "--pseudonymize-labels",
        type=Path,
        metavar="MAPPING.csv",
        help="train on labels class_0, class_1, ... instead of the folder names or "
        "CSV labels, and write which is which to MAPPING.csv (kept out of the model "
        "and its folder); needed when a label looks like a patient's name, ID or "
        "date",
    )
    fit.set_defaults(func=_cmd_fit)

    generate = add_parser("generate", help="write synthetic images from a model")
    generate.add_argument("model", type=Path, help="model file written by ganaug fit")
    generate.add_argument(
        "-n", "--n-samples", type=int, required=True, help="images to write"
    )
    generate.add_argument("--class", dest="class_name", help="only this class")
    generate.add_argument(
        "-o", "--output", type=Path, required=True, help="folder to write them to"
    )
    generate.add_argument(
        "--format",
        choices=["dicom", "png", "nifti", "npz"],
        default="png",
        help="file format of the synthetic images",
    )
    random_state(generate, help="seeds the noise (default: fresh entropy)")
    generate.add_argument(
        "--data", type=Path, help="the training images, for the memorisation audit"
    )
    generate.add_argument("--labels", type=Path, help="CSV of file,label for --data")
    generate.add_argument(
        "--window", nargs="+", metavar="W", help="DICOM VOI window of --data"
    )
    generate.set_defaults(func=_cmd_generate)

    translate = add_parser(
        "translate",
        help="translate images into a class with a model of fit --method translate",
    )
    translate.add_argument(
        "model", type=Path, help="model file written by ganaug fit --method translate"
    )
    translate.add_argument(
        "images", type=Path, help="folder of DICOM/NIfTI/PNG/JPEG, or .npz"
    )
    translate.add_argument(
        "--to", required=True, metavar="CLASS", help="the class to translate into"
    )
    translate.add_argument(
        "-o", "--output", type=Path, required=True, help="folder to write them to"
    )
    translate.add_argument(
        "--format",
        choices=["dicom", "png", "nifti", "npz"],
        default="png",
        help="file format of the translated images",
    )
    translate.add_argument(
        "--labels", type=Path, help="CSV of file,label rows for the images"
    )
    translate.add_argument(
        "--window", nargs="+", metavar="W", help="DICOM VOI window of the images"
    )
    translate.add_argument(
        "--strict",
        action="store_true",
        help="stop at an unreadable file instead of skipping it",
    )
    translate.set_defaults(func=_cmd_translate)

    export = sub.add_parser(
        "export",
        formatter_class=HelpFormatter,
        help="write the model's generator as one ONNX file (needs gankit[onnx])",
    )
    export.add_argument("model", type=Path, help="model file written by ganaug fit")
    export.add_argument(
        "-o", "--output", type=Path, required=True, help="ONNX file to write"
    )
    export.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice)"
    )
    export.set_defaults(func=_cmd_export)

    demo = sub.add_parser(
        "demo",
        formatter_class=HelpFormatter,
        help="offline demo on MONAI's synthetic test images",
    )
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    demo.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads: the demo's small batches gain little from a second "
        "one, and run many times slower with two when another process keeps a "
        "core busy",
    )
    demo.add_argument(
        "--output-dir", type=Path, default=Path("ganaug-demo"), help="where to write"
    )
    n_epochs(demo, default=150, help="passes over the images")
    random_state(demo, default=0, help="seeds the data and the GAN")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``ganaug`` command line; return the exit status.

    Errors in the input (unreadable or inconsistent data, a bad model file)
    are printed as one line on stderr, without a traceback, and give status 2.

    Examples
    --------
    >>> main(["generate", "missing.safetensors", "-n", "1", "-o", "out"])
    2
    """
    from gancore import ModelFileError, TrainingDivergedError

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        return args.func(args)
    except (CliError, ModelFileError, TrainingDivergedError, ValueError) as err:
        # ValueError includes ImageReadError, IdentifyingLabelError and
        # UnsafeOutputError: each names the file or label and what to do.
        print(f"ganaug {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder, a file for a folder
        print(f"ganaug {args.command}: error: {os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ganaug {args.command}: interrupted", file=sys.stderr)
        return 130
