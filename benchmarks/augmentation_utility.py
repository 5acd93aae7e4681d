"""Does GAN augmentation help a classifier on small, imbalanced medical image sets?

Three dev sets from ``../shared/data``, each at its own resolution:

* ``pneumoniamnist28``: evaluation part the official ``val`` split (524 images);
  training sets of 40 normal + 400 pneumonia drawn from ``train``.
* ``chest64`` (``chest_xray_64.npz``, 1 channel): evaluation part 30 % of the
  patients of each class (1,567 images); training sets of 100 normal + 1,000
  pneumonia drawn from the rest.
* ``skin64`` (``skin_lesions_64.npz``, RGB, 7 classes): evaluation part 30 % of
  each class, stratified (1,796 images); training sets of akiec 40, bcc 60,
  bkl 120, df 15, mel 100, nv 500, vasc 20 drawn from the rest (855 images, all
  seven classes, imbalanced 33:1).

The evaluation parts are fixed (split seed 2020, whatever the run's seeds): for
``chest64`` the split is by patient (``personN`` of the pneumonia file names, the
``IM-NNNN`` or ``NORMAL2-IM-NNNN`` stem of the normal ones), so no patient is on
both sides; HAM10000 holds one image per lesion and no patient identifier, so
``skin64`` is split by image. The official test splits stay held back.

Arms, each trained with the same classifier for the same number of steps:

=================  ===========================================================
``none``           the imbalanced training images as they are
``ros``            imblearn ``RandomOverSampler``
``classical``      MONAI random flips, rotations (10 degrees), zoom (0.9-1.1)
``ros+classical``  both
``gan``            ``GANAugmenter()`` with its defaults (``--gan-param`` to vary)
``gan+classical``  the GAN's output, then the classical augmentation
``translator``     ``GANTranslator()`` with its defaults: other classes' images
                   translated into each class (``--translator-param`` to vary;
                   ``rebalance="synthetic" augment_ratio=0``, the default
                   before 2026-12-04, translates in place of RandomOverSampler's
                   copies)
``translator+``    the translator's output, then the classical augmentation
``classical``
=================  ===========================================================

The classifier (:class:`SmallCNN`, defined here, no downloaded weights) has a 3x3
conv stem (stride 2 at 48 px and above) and conv / batch-norm / ReLU stages with
max-pooling down to 8 pixels or less, global average pooling, dropout and a
linear layer; Adam with cosine decay, 600 steps of 64 images, cross-entropy.
Reported per arm: balanced accuracy (argmax), macro AUROC (one-vs-rest), recall
of the rarest class of the training set. For the GAN: fit seconds and epochs,
FID / KID / precision / recall / density / coverage per class
(:mod:`ganaug.quality`, in the features of a
:class:`ganaug.reference.RealImageClassifier` trained on the training set; the
synthetic images against the evaluation part, beside the training images
against it), and the memorisation audit (:func:`ganaug.privacy.memorization_report`;
for the translator also each image's similarity to its own source).

GANs are cached: with ``--checkpoint-dir`` each set, seed and GAN training
configuration keeps its checkpoint, and a finished one is resumed (sampling only,
identical on the CPU), so arms and sampling options share trained GANs.

Run (single-threaded; see benchmarks/RESULTS.md for times)::

    python benchmarks/augmentation_utility.py --checkpoint-dir ck --json-dir out
    python benchmarks/augmentation_utility.py --summarise out/*.json

    # a variant of the GAN arms only, on the same splits and cached peers:
    python benchmarks/augmentation_utility.py --sets chest64 --seeds 0 \\
        --arms gan gan+classical --variant resnet \\
        --gan-param architecture=resnet base_channels=16 \\
        --checkpoint-dir ck --json-dir out
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ARMS = (
    "none",
    "ros",
    "classical",
    "ros+classical",
    "gan",
    "gan+classical",
    "translator",
    "translator+classical",
)
PEER_ARMS = ARMS[:4]
# The arms of each sampler, its class and its record's key.
SAMPLERS = {"gan": "GANAugmenter", "translator": "GANTranslator"}
SPLIT_SEED = 2020
EVAL_FRACTION = 0.3
SKIN_DRAW = {
    "akiec": 40,
    "bcc": 60,
    "bkl": 120,
    "df": 15,
    "mel": 100,
    "nv": 500,
    "vasc": 20,
}
# GANAugmenter options that do not change the trained GAN: variants differing only
# in these share one checkpoint.
SAMPLING_ONLY = {
    "augment_ratio",
    "augment_basis",
    "rebalance",
    "filter_synthetic",
    "sampling_strategy",
}


# ------------------------------------------------------------------------ data


class DevSet:
    """A dev set: its fixed pool and evaluation part, and the per-seed draw."""

    def __init__(self, name, pool_x, pool_y, eval_x, eval_y, classes, draw):
        self.name, self.classes = name, list(classes)
        self.pool_x, self.pool_y = pool_x, pool_y
        self.eval_x, self.eval_y = eval_x, eval_y
        self.draw_counts = draw  # class index -> images per training set

    def draw(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        rows = np.concatenate(
            [
                rng.choice(np.flatnonzero(self.pool_y == k), n, replace=False)
                for k, n in self.draw_counts.items()
            ]
        )
        rng.shuffle(rows)
        return self.pool_x[rows], self.pool_y[rows]


def _patient(name: str) -> str:
    """The patient of a Kermany chest X-ray file name."""
    stem = Path(name).name
    match = re.match(r"(person\d+)_", stem)
    if match:
        return match.group(1)
    match = re.match(r"((?:NORMAL2-)?IM-\d+)", stem)
    return match.group(1) if match else stem


def _grouped_split(labels, groups, fraction, seed) -> np.ndarray:
    """Evaluation mask: per class, whole groups drawn until ``fraction`` of it."""
    rng = np.random.default_rng(seed)
    evaluation = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        names = np.unique(groups[rows])
        rng.shuffle(names)
        taken = 0
        for name in names:
            if taken >= fraction * len(rows):
                break
            members = rows[groups[rows] == name]
            evaluation[members] = True
            taken += len(members)
    return evaluation


def load_set(name: str, data: Path) -> DevSet:
    if name == "pneumoniamnist28":
        archive = np.load(data / "pneumoniamnist_28.npz")
        return DevSet(
            name,
            archive["train_images"][:, None],
            archive["train_labels"].ravel(),
            archive["val_images"][:, None],
            archive["val_labels"].ravel(),
            ["normal", "pneumonia"],
            {0: 40, 1: 400},
        )
    if name == "chest64":
        archive = np.load(data / "chest_xray_64.npz")
        x, y = archive["images"][:, None], archive["labels"]
        patients = np.array([_patient(str(f)) for f in archive["files"]])
        evaluation = _grouped_split(y, patients, EVAL_FRACTION, SPLIT_SEED)
        return DevSet(
            name,
            x[~evaluation],
            y[~evaluation],
            x[evaluation],
            y[evaluation],
            ["normal", "pneumonia"],
            {0: 100, 1: 1000},
        )
    if name == "skin64":
        from sklearn.model_selection import train_test_split

        archive = np.load(data / "skin_lesions_64.npz")
        x = np.moveaxis(archive["images"], -1, 1)  # (n, 3, 64, 64)
        y = archive["labels"]
        classes = [str(c) for c in archive["classes"]]
        pool, evaluation = train_test_split(
            np.arange(len(y)),
            test_size=EVAL_FRACTION,
            stratify=y,
            random_state=SPLIT_SEED,
        )
        return DevSet(
            name,
            x[pool],
            y[pool],
            x[evaluation],
            y[evaluation],
            classes,
            {classes.index(c): n for c, n in SKIN_DRAW.items()},
        )
    raise ValueError(f"unknown set {name!r}")


SETS = ("pneumoniamnist28", "chest64", "skin64")


# ------------------------------------------------------------------ classifier


class SmallCNN(nn.Module):
    """Conv stem, conv stages with max-pooling down to 8 px, pooling, linear head."""

    def __init__(self, channels: int, side: int, n_classes: int, width: int = 16):
        super().__init__()
        stride = 2 if side >= 48 else 1
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 3, stride=stride, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        in_c, side, out_c = width, side // stride, 2 * width
        while side > 8:
            layers += [
                nn.MaxPool2d(2),
                nn.Conv2d(in_c, out_c, 3, padding=1),
                nn.BatchNorm2d(out_c),
                nn.ReLU(),
            ]
            in_c, side, out_c = out_c, side // 2, min(2 * out_c, 8 * width)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(in_c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.body(x)))


def classical_augmenter(seed: int, group: int = 8):
    """MONAI random flips, rotations and zoom for (n, C, H, W) float batches."""
    from monai.transforms import Compose, RandFlip, RandRotate, RandZoom

    transform = Compose(
        [
            RandFlip(prob=0.5, spatial_axis=1),
            RandRotate(range_x=np.deg2rad(10), prob=0.5, padding_mode="border"),
            RandZoom(prob=0.5, min_zoom=0.9, max_zoom=1.1, padding_mode="edge"),
        ]
    )
    transform.set_random_state(seed=seed)

    def augment(batch: np.ndarray) -> np.ndarray:
        # MONAI draws one set of parameters per call and applies it to every
        # channel: stacking a group of images as channels gives each group its
        # own flip / rotation / zoom at a fraction of the per-image cost.
        n, channels = batch.shape[:2]
        out = np.empty_like(batch)
        for start in range(0, n, group):
            chunk = batch[start : start + group]
            stacked = chunk.reshape(1, -1, *chunk.shape[2:])[0]
            out[start : start + group] = np.asarray(transform(stacked)).reshape(
                chunk.shape
            )
        return out

    return augment


def train_classifier(images, labels, n_classes, *, seed, steps, augment=None):
    """Train :class:`SmallCNN` on uint8 (n, C, H, W) images; deterministic per seed
    (weights and dropout from a fork of torch's generator seeded here)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = SmallCNN(images.shape[1], images.shape[2], n_classes)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        x_all = images.astype(np.float32) / 255.0
        y_all = torch.from_numpy(labels.astype(np.int64))
        model.train()
        order, position, batch_size = (
            torch.randperm(len(x_all), generator=generator),
            0,
            64,
        )
        for _ in range(steps):
            if position + batch_size > len(order):
                order, position = torch.randperm(len(x_all), generator=generator), 0
            rows = order[position : position + batch_size].numpy()
            position += batch_size
            batch = x_all[rows]
            if augment is not None:
                batch = augment(batch)
            logits = model(torch.from_numpy(np.ascontiguousarray(batch)))
            loss = F.cross_entropy(logits, y_all[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def predict_proba(model, images):
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    return torch.cat([torch.softmax(model(c), 1) for c in x.split(512)]).numpy()


def scores(eval_y, proba, rarest: int) -> dict:
    from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

    predicted = proba.argmax(1)
    if proba.shape[1] == 2:
        auroc = roc_auc_score(eval_y, proba[:, 1])
    else:
        auroc = roc_auc_score(eval_y, proba, multi_class="ovr", average="macro")
    rarest_recall = recall_score(eval_y, predicted, labels=[rarest], average=None)
    return {
        "balanced_accuracy": float(balanced_accuracy_score(eval_y, predicted)),
        "auroc": float(auroc),
        "rarest_recall": float(rarest_recall[0]),
    }


# ----------------------------------------------------------------------- a run


def _gan_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _training_tag(params: dict) -> str:
    training = {k: v for k, v in sorted(params.items()) if k not in SAMPLING_ONLY}
    return hashlib.sha256(json.dumps(training).encode()).hexdigest()[:10]


def _resample(kind: str, dev: DevSet, seed: int, x, y, args):
    """Fit one sampler (``kind`` in :data:`SAMPLERS`) on a training set; its
    output, its record, and its quality and memorisation figures."""
    import ganaug
    from ganaug.privacy import memorization_report
    from ganaug.quality import quality_report
    from ganaug.reference import RealImageClassifier

    params = _gan_params(args.gan_param if kind == "gan" else args.translator_param)
    checkpoint = None
    if args.checkpoint_dir:
        args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = (
            args.checkpoint_dir
            / f"{dev.name}_seed{seed}_{kind}_{_training_tag(params)}.ckpt"
        )
        if kind == "gan":  # the name GAN checkpoints had before the translator
            checkpoint = checkpoint.with_name(
                f"{dev.name}_seed{seed}_{_training_tag(params)}.ckpt"
            )
    resumed = bool(checkpoint and checkpoint.exists())
    sampler = getattr(ganaug, SAMPLERS[kind])(
        **params,
        random_state=seed,
        device="cpu",
        verbose=args.verbose,
        checkpoint_path=str(checkpoint) if checkpoint else None,
    )
    started = time.perf_counter()
    x_new, y_new = sampler.fit_resample(x, y)
    seconds = time.perf_counter() - started
    first = len(x) + sum(sampler.n_duplicated_.values())
    synthetic, synthetic_y = x_new[first:], y_new[first:]
    acceptance = getattr(sampler, "filter_acceptance_", None)
    info = {
        "params": params,
        "fit_seconds": seconds,
        "resumed_from_checkpoint": resumed,
        "n_epochs": int(sampler.n_epochs_),
        "n_synthetic": {int(k): int(v) for k, v in sampler.n_synthetic_.items()},
        "filter_acceptance": (
            {int(k): float(v) for k, v in acceptance.items()} if acceptance else None
        ),
    }
    print(f"  {dev.name} seed {seed} {kind}: {info}", flush=True)
    extra = {}
    suffix = "" if kind == "gan" else f"_{kind}"
    if not args.no_metrics and len(synthetic):
        judge = RealImageClassifier(random_state=seed).fit(
            x.astype(np.float32) / 255.0, y
        )

        def feature_fn(images):
            return judge.features(images.astype(np.float32) / 255.0)

        report = quality_report(
            feature_fn,
            dev.eval_x,
            dev.eval_y,
            synthetic,
            synthetic_y,
            x,
            y,
            random_state=seed,
        )
        extra[f"quality{suffix}"] = report.to_dict()
        print(report.summary(), flush=True)
        sources = getattr(sampler, "source_indices_", None)
        memo = memorization_report(
            synthetic[:1000],
            x,
            dev.eval_x[:1000],
            feature_fn=feature_fn,
            sources=x[sources[:1000]] if sources is not None else None,
        )
        extra[f"memorization{suffix}"] = {
            "n_synthetic": int(min(1000, len(synthetic))),
            "flagged_pixels": int(memo.n_flagged),
            "flagged_features": int(memo.feature_flagged.sum()),
            **(
                {"source_similarity_median": float(np.median(memo.source_similarity))}
                if memo.source_similarity is not None
                else {}
            ),
        }
        if args.grid_dir:
            save_grid(
                args.grid_dir / f"{args.variant}_{kind}_{dev.name}_seed{seed}.png",
                x,
                y,
                synthetic,
                synthetic_y,
                dev.classes,
            )
    return (x_new, y_new), info, extra


def run(dev: DevSet, seed: int, args) -> dict:
    from imblearn.over_sampling import RandomOverSampler

    x, y = dev.draw(seed)
    n_classes = len(dev.classes)
    counts = np.bincount(y, minlength=n_classes)
    rarest = int(np.argmin(counts))
    record = {
        "set": dev.name,
        "seed": seed,
        "variant": args.variant,
        "train_counts": counts.tolist(),
        "eval_counts": np.bincount(dev.eval_y, minlength=n_classes).tolist(),
        "classes": dev.classes,
        "rarest": dev.classes[rarest],
        "arms": {},
    }
    flat = x.reshape(len(x), -1)
    x_ros, y_ros = RandomOverSampler(random_state=seed).fit_resample(flat, y)
    x_ros = x_ros.reshape(-1, *x.shape[1:])
    sets = {"none": (x, y), "ros": (x_ros, y_ros)}
    for kind in SAMPLERS:
        if any(arm.split("+")[0] == kind for arm in args.arms):
            sets[kind], record[kind], extra = _resample(kind, dev, seed, x, y, args)
            record.update(extra)
    for arm in args.arms:
        base = arm.replace("classical", "").rstrip("+") or "none"
        images, labels = sets[base]
        started = time.perf_counter()
        model = train_classifier(
            images,
            labels,
            n_classes,
            seed=seed,
            steps=args.clf_steps,
            augment=classical_augmenter(seed) if arm.endswith("classical") else None,
        )
        result = scores(dev.eval_y, predict_proba(model, dev.eval_x), rarest)
        result["seconds"] = time.perf_counter() - started
        record["arms"][arm] = result
        print(f"  {dev.name} seed {seed} {arm:14s} {result}", flush=True)
    return record


def save_grid(path: Path, real, real_y, synthetic, synthetic_y, classes, per_row=8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        2 * len(classes), per_row, figsize=(per_row, 2 * len(classes)), squeeze=False
    )
    for index, name in enumerate(classes):
        for offset, (kind, images) in enumerate(
            (
                ("real", real[real_y == index]),
                ("synthetic", synthetic[synthetic_y == index]),
            )
        ):
            for column in range(per_row):
                axis = axes[2 * index + offset, column]
                axis.axis("off")
                if column < len(images):
                    image = images[column]
                    if image.shape[0] == 1:
                        axis.imshow(image[0], cmap="gray", vmin=0, vmax=255)
                    else:
                        axis.imshow(np.moveaxis(image, 0, -1))
            axes[2 * index + offset, 0].set_title(
                f"{kind} {name}", fontsize=7, loc="left"
            )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


# --------------------------------------------------------------------- summary


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} +- {sd:.3f}"


def summarise(records: list[dict]) -> str:
    """Markdown tables per set: peers and every sampler variant, mean +- sd over
    seeds, and each sampler arm's paired difference with its peer."""
    lines = []
    for name in [s for s in SETS if any(r["set"] == s for r in records)]:
        own = [r for r in records if r["set"] == name]
        rows: dict[str, dict[int, dict]] = {}
        extra: dict[str, dict[int, dict]] = {}
        for record in own:
            for arm, result in record["arms"].items():
                key = arm if arm in PEER_ARMS else f"{arm} [{record['variant']}]"
                rows.setdefault(key, {})[record["seed"]] = result
            for kind in SAMPLERS:
                if kind in record:
                    key = (kind, record["variant"])
                    extra.setdefault(key, {})[record["seed"]] = record
        rarest = own[0]["rarest"]
        lines += [
            f"### {name}: train {own[0]['train_counts']}, evaluation "
            f"{own[0]['eval_counts']} ({', '.join(own[0]['classes'])})",
            "",
            f"| arm | seeds | balanced accuracy | macro AUROC | recall {rarest} "
            "| paired bal. acc. vs peer |",
            "|---|---|---|---|---|---|",
        ]
        order = [k for k in PEER_ARMS if k in rows] + sorted(
            k for k in rows if k not in PEER_ARMS
        )
        for key in order:
            by_seed = rows[key]
            seeds = sorted(by_seed)
            cells = [
                _mean_sd([by_seed[s][metric] for s in seeds])
                for metric in ("balanced_accuracy", "auroc", "rarest_recall")
            ]
            paired = ""
            if key.split("+")[0].split(" ")[0] in SAMPLERS:
                peer = "ros+classical" if "+classical" in key else "ros"
                common = [s for s in seeds if s in rows.get(peer, {})]
                if common:
                    diff = [
                        by_seed[s]["balanced_accuracy"]
                        - rows[peer][s]["balanced_accuracy"]
                        for s in common
                    ]
                    paired = (
                        f"{np.mean(diff):+.3f} vs {peer} ("
                        + ", ".join(f"{d:+.3f}" for d in diff)
                        + ")"
                    )
            lines.append(
                f"| {key} | {','.join(map(str, seeds))} | "
                + " | ".join(cells)
                + f" | {paired} |"
            )
        for (kind, variant), by_seed in sorted(extra.items()):
            suffix = "" if kind == "gan" else f"_{kind}"
            runs = [by_seed[s] for s in sorted(by_seed)]
            fits = [
                f"{r[kind]['fit_seconds']:.0f}"
                + ("*" if r[kind]["resumed_from_checkpoint"] else "")
                for r in runs
            ]
            lines.append("")
            lines.append(
                f"{SAMPLERS[kind]} [{variant}] {runs[0][kind]['params']}: epochs "
                f"{runs[0][kind]['n_epochs']}, fit seconds {', '.join(fits)} "
                "(* resumed from a finished checkpoint: sampling only)"
            )
            accept = [r[kind]["filter_acceptance"] for r in runs]
            if any(accept):
                lines.append(
                    "filter acceptance per class: "
                    + "; ".join(
                        ", ".join(f"{k}: {v:.2f}" for k, v in a.items())
                        for a in accept
                        if a
                    )
                )
            quality = [
                r[f"quality{suffix}"]["rows"] for r in runs if f"quality{suffix}" in r
            ]
            if quality:
                lines.append(
                    "| class | FID syn (real) | KID syn (real) | precision | recall "
                    "| density | coverage |"
                )
                lines.append("|---|---|---|---|---|---|---|")
                for index, first in enumerate(quality[0]):

                    def cell(metric, digits=2, index=index, quality=quality):
                        syn = np.mean([q[index][metric] for q in quality])
                        real = np.mean([q[index]["real_" + metric] for q in quality])
                        return f"{syn:.{digits}f} ({real:.{digits}f})"

                    label = first["class"]
                    label = own[0]["classes"][label] if label != "all" else "all"
                    lines.append(
                        f"| {label} | {cell('fid')} | {cell('kid', 4)} | "
                        f"{cell('precision')} | {cell('recall')} | "
                        f"{cell('density')} | {cell('coverage')} |"
                    )
            memo = [
                r[f"memorization{suffix}"] for r in runs if f"memorization{suffix}" in r
            ]
            if memo:
                lines.append(
                    "memorisation (flagged pixels / features of n): "
                    + ", ".join(
                        f"{m['flagged_pixels']}/{m['flagged_features']} of "
                        f"{m['n_synthetic']}"
                        for m in memo
                    )
                )
                similar = [
                    m["source_similarity_median"]
                    for m in memo
                    if "source_similarity_median" in m
                ]
                if similar:
                    lines.append(
                        "median correlation of a translated image with its own "
                        "source: " + ", ".join(f"{v:.3f}" for v in similar)
                    )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument(
        "--gan-param",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="GANAugmenter options (JSON values), e.g. architecture=resnet",
    )
    parser.add_argument(
        "--translator-param",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="GANTranslator options (JSON values), e.g. base_channels=32",
    )
    parser.add_argument(
        "--variant", default="default", help="name of these GAN options"
    )
    parser.add_argument("--clf-steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-dir", type=Path)
    parser.add_argument("--json-dir", type=Path, help="one JSON per set and seed")
    parser.add_argument("--grid-dir", type=Path, help="sample grids (PNG)")
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--summarise", type=Path, nargs="+", metavar="JSON")
    args = parser.parse_args(argv)
    if args.summarise:
        records = [json.loads(path.read_text()) for path in args.summarise]
        print(summarise(records))
        return 0
    if not (args.data / "chest_xray_64.npz").is_file():
        print(f"error: {args.data} has no dev sets (../shared/data)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    print(
        f"augmentation_utility: {time.strftime('%Y-%m-%d %H:%M')} "
        f"{platform.processor() or platform.machine()}, torch threads {args.threads}; "
        f"sets {args.sets}, seeds {args.seeds}, arms {args.arms}, variant "
        f"{args.variant} {args.gan_param} {args.translator_param}",
        flush=True,
    )
    records = []
    for name in args.sets:
        dev = load_set(name, args.data)
        for seed in args.seeds:
            record = run(dev, seed, args)
            records.append(record)
            if args.json_dir:
                args.json_dir.mkdir(parents=True, exist_ok=True)
                samplers = [kind for kind in SAMPLERS if kind in record]
                label = "_".join([args.variant, *samplers]) if samplers else "peers"
                path = args.json_dir / f"{label}_{name}_seed{seed}.json"
                path.write_text(json.dumps(record, indent=1))
    print()
    print(summarise(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
