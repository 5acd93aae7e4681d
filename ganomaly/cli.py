"""The ``ganomaly`` command: fit, score, evaluate, export, demo.

Examples
--------
::

    ganomaly demo --output-dir ganomaly-demo
    ganomaly fit train.csv -o model.safetensors --label-col Class --drop-cols Time
    ganomaly score model.safetensors new.csv -o scores.csv --on-bad-rows skip
    ganomaly score model.safetensors 'data/*.csv' -o out/ --scheduler tcp://host:8786
    torchrun --nproc_per_node=4 -m ganomaly fit train.csv -o model.safetensors
    ganomaly evaluate model.safetensors labelled.csv --label-col Class
    ganomaly export model.safetensors -o model.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gancore.cli import (
    CliError,
    HelpFormatter,
    add_hidden_alias,
    count_or_auto,
    os_error,
    version,
)

from .threads import set_threads

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["main"]


# ------------------------------------------------------------------ reading tables
def _read_table(path: Path) -> pd.DataFrame:
    """A whole CSV/Parquet file for fitting or evaluation, with clear errors."""
    import pandas as pd

    from .scoring import BadInputError, check_unique_columns, read_table_header

    try:
        header = read_table_header(path)
        check_unique_columns(path, header, header)
    except BadInputError as exc:
        raise CliError(str(exc)) from exc
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            # Only empty fields are missing: "NaN" or "inf" text is caught as bad data.
            frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (
        pd.errors.ParserError,
        UnicodeDecodeError,
        ValueError,
        OSError,
        EOFError,
    ) as exc:
        raise CliError(f"{path}: cannot read the table ({exc})") from exc
    if frame.shape[0] == 0:
        raise CliError(f"{path}: no data rows after the header (line 1)")
    return frame


def _require_columns(path: Path, header: list[str], wanted: list[str]) -> None:
    """A CliError naming the columns of ``wanted`` that ``header`` lacks."""
    from .scoring import BadInputError
    from .scoring.checks import check_columns

    try:
        check_columns(path, header, [], wanted)
    except BadInputError as exc:
        raise CliError(str(exc)) from exc


def _split_columns(
    frame: pd.DataFrame, path: Path, *, label_col=None, id_col=None, drop_cols=()
) -> tuple[pd.DataFrame, pd.Series | None, pd.Series | None]:
    wanted = [c for c in [label_col, id_col, *drop_cols] if c]
    _require_columns(path, [str(c) for c in frame.columns], wanted)
    labels = frame[label_col] if label_col else None
    ids = frame[id_col] if id_col else None
    features = frame.drop(columns=wanted)
    if features.shape[1] == 0:
        raise CliError(f"{path}: no feature columns left after dropping {wanted}")
    return features, labels, ids


def _training_labels(labels: pd.Series, normal_label: str, path: Path):
    """Which training rows are anomalies, and the label rule to keep in the model:
    the normal label and the other labels the file holds."""
    from .labels import LabelRule

    if labels.isna().any():
        row = int(np.flatnonzero(labels.isna().to_numpy())[0])
        raise CliError(f"{path}: line {row + 2}, column {labels.name!r}: missing label")
    texts = labels.astype(str).to_numpy()
    anomalous, _ = LabelRule(normal=(normal_label,)).classify(texts)
    rule = LabelRule(
        normal=(normal_label,), anomalous=LabelRule.others(texts, (normal_label,))
    )
    return anomalous, rule


def _data_error(exc: Exception, path: Path) -> CliError:
    """An InputDataError (row-based) as a message naming file, line and column."""
    from .preprocessing import InputDataError

    if isinstance(exc, InputDataError) and exc.row is not None:
        where = "row" if path.suffix.lower() in (".parquet", ".pq") else "line"
        number = exc.row + 1 if where == "row" else exc.row + 2
        detail = str(exc).split(": ", 1)[-1]
        return CliError(f"{path}: {where} {number}, column {exc.column!r}: {detail}")
    return CliError(f"{path}: {exc}")


# --------------------------------------------------------------------- commands
def _cmd_fit(args: argparse.Namespace) -> int:
    from gancore import distributed_context, init_distributed
    from gancore.files import check_outputs

    from ._detector import GANomalyDetector
    from .preprocessing import InputDataError

    path = Path(args.train)
    check_outputs(
        [("model file (-o)", args.output), ("checkpoint", args.checkpoint)],
        [("training file", path)],
    )
    if args.resume and not args.checkpoint:
        raise CliError("--resume needs --checkpoint PATH")
    if args.checkpoint and Path(args.checkpoint).exists() and not args.resume:
        raise CliError(
            f"{args.checkpoint}: a checkpoint exists; pass --resume to continue "
            "from it, or remove it to start afresh"
        )
    # Under torchrun (WORLD_SIZE > 1) this joins the process group: every process
    # trains on its shard of the rows, and only rank 0 writes the model and reports.
    device = init_distributed(args.device)
    rank, world = distributed_context()
    frame = _read_table(path)
    drop = [c.strip() for c in (args.drop_cols or "").split(",") if c.strip()]
    features, labels, _ = _split_columns(
        frame, path, label_col=args.label_col, id_col=args.id_col, drop_cols=drop
    )
    if args.use_labels and labels is None:
        raise CliError("--use-labels needs --label-col: the column of known anomalies")
    label_rule = known = None
    if labels is not None:
        anomalous, label_rule = _training_labels(labels, args.normal_label, path)
        if (~anomalous).sum() < 2:
            raise CliError(
                f"{path}: fewer than 2 rows with {args.label_col} = {args.normal_label}"
            )
        if args.use_labels:
            known = np.asarray(anomalous, dtype=int)
            what = "known anomalies, used to sharpen the model"
        else:
            features = features.loc[~anomalous]
            what = "other rows left out"
        if rank == 0:
            print(
                f"training on {int((~anomalous).sum())} of {len(anomalous)} rows "
                f"(those with {args.label_col} = {args.normal_label}); "
                f"{int(anomalous.sum())} {what}",
                file=sys.stderr,
            )
    detector = GANomalyDetector(
        n_members=args.n_members,
        n_epochs=args.n_epochs,
        batch_size=args.batch_size,
        score_type=args.score,
        n_references=args.n_references,
        numeric_scaling=args.numeric_scaling,
        use_labels=known is not None,
        contamination=args.contamination,
        target_fpr=args.target_fpr,
        device=args.device if world == 1 else str(device),
        random_state=args.random_state,
        verbose=not args.quiet and rank == 0,
        checkpoint_path=args.checkpoint,
    )
    start = time.perf_counter()
    try:
        detector.fit(features, known)
    except InputDataError as exc:
        raise _data_error(exc, path) from exc
    if rank != 0:  # the same weights as rank 0, which writes them
        return 0
    if label_rule is not None:  # for evaluate, which reads the same labels
        detector.metadata_["labels"] = {
            "column": args.label_col,
            **label_rule.to_dict(),
        }
    detector.save(args.output)
    kept = "no training rows kept"
    if detector.neighbours_ is not None:
        kept = f"{len(detector.neighbours_.references)} training rows kept"
    if detector.known_ is not None:
        kept += f", {len(detector.known_.references)} known anomalies kept"
    print(
        f"fitted GANomaly on {features.shape[0]} rows x {features.shape[1]} columns "
        f"in {time.perf_counter() - start:.1f} s ({detector.n_members_} members, "
        f"{detector.n_epochs_} epochs, {kept}); "
        f"threshold {detector.threshold_:.4g}; saved {args.output}",
        file=sys.stderr,
    )
    return 0


def _load_detector(path: str, device: str = "cpu"):
    from gancore import ModelFileError

    from ._detector import GANomalyDetector

    try:
        return GANomalyDetector.load(path, device=device)
    except ModelFileError as exc:
        raise CliError(str(exc)) from exc


def _load_scorer(path: str, device: str, precision: str):
    """The model as a numpy Scorer (on the CPU: no torch import) or a detector."""
    from gancore.io import ModelFileError

    from .scoring import model_for_device

    try:
        return model_for_device(path, device, precision)
    except ModelFileError as exc:
        raise CliError(str(exc)) from exc


def _cmd_score(args: argparse.Namespace) -> int:
    from .scoring import BadInputError, score_file

    many = Path(args.input).is_dir() or any(c in args.input for c in "*?[")
    if many or args.scheduler or args.workers > 1:
        return _score_many(args)
    detector = _load_scorer(args.model, args.device, args.precision)
    output = Path(args.output)
    progress_file = output.with_name(f".{output.name}.partial.json")
    if progress_file.exists() and not args.resume:
        print(
            f"note: {progress_file} records an interrupted run into {output}; "
            "starting over (--resume would continue it)",
            file=sys.stderr,
        )
    try:
        summary = score_file(
            detector,
            args.input,
            args.output,
            id_col=args.id_col,
            on_bad_rows=args.on_bad_rows,
            rejects_path=args.rejects,
            top_k=args.top_k,
            progress=None if not args.quiet else False,
            precision=args.precision,
            threads=args.score_threads,
            resume=args.resume,
        )
    except BadInputError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:  # a full disk, say: what was done is kept for --resume
        message = os_error(exc)
        if progress_file.exists():
            message += "; the rows scored so far are kept: run again with --resume"
        raise CliError(message) from exc
    resumed = f", resuming after row {summary.n_resumed}" if summary.n_resumed else ""
    message = (
        f"scored {summary.n_scored} of {summary.n_input} rows in "
        f"{summary.seconds:.1f} s{resumed} ({summary.n_anomalies} flagged as "
        f"anomalies); wrote {summary.output_path}"
    )
    if summary.rejects_path:
        message += f"; {summary.n_rejected} rejected rows in {summary.rejects_path}"
    print(message, file=sys.stderr)
    return 0


def _score_many(args: argparse.Namespace) -> int:
    """Files, a glob or a folder: one task per file, on Dask when asked for."""
    import contextlib

    from .distributed import dask_client, expand_inputs, score_files
    from .scoring import BadInputError

    if args.rejects:
        raise CliError(
            "--rejects names one file; with several inputs each file's rejects go "
            "to OUTPUT/<input name>.rejects.csv"
        )
    if args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    _load_scorer(args.model, args.device, args.precision)  # a bad model fails here
    record = Path(args.output) / ".ganomaly-score.json"
    if record.exists() and not args.resume:
        print(
            f"note: {record} records an interrupted run into {args.output}; "
            "starting over (--resume would skip the files it finished)",
            file=sys.stderr,
        )
    start = time.perf_counter()
    try:
        n_files = len(expand_inputs(args.input))
        on_dask = bool(args.scheduler) or args.workers > 1
        cluster = (
            dask_client(args.scheduler, args.workers)
            if on_dask
            else contextlib.nullcontext()
        )
        with cluster as client:
            summaries = score_files(
                args.model,
                args.input,
                args.output,
                client=client,
                id_col=args.id_col,
                on_bad_rows=args.on_bad_rows,
                top_k=args.top_k,
                device=args.device,
                threads=args.score_threads or args.threads,  # per Dask task
                precision=args.precision,
                score_threads=args.score_threads,
                progress=None if not args.quiet and not on_dask else False,
                resume=args.resume,
            )
    except (BadInputError, ImportError) as exc:
        raise CliError(str(exc)) from exc
    scored = sum(s.n_scored for s in summaries)
    resumed = sum(s.n_resumed for s in summaries)
    message = (
        f"scored {scored} of {sum(s.n_input for s in summaries)} rows in {n_files} "
        f"file(s) in {time.perf_counter() - start:.1f} s "
        f"({sum(s.n_anomalies for s in summaries)} flagged as anomalies); "
        f"wrote {args.output}"
    )
    if resumed:
        message += f"; {resumed} of these rows scored by the interrupted run"
    rejected = sum(s.n_rejected for s in summaries)
    if args.on_bad_rows == "skip":
        message += f"; {rejected} rejected rows in {args.output}/*.rejects.csv"
    print(message, file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """The model as one ONNX file (see :mod:`ganomaly.export`); no torch."""
    from gancore.exporting import MissingExtraError
    from gancore.files import check_outputs
    from gancore.io import ModelFileError

    from .export import export_onnx

    check_outputs([("ONNX file (-o)", args.output)], [("model file", args.model)])
    try:
        export_onnx(args.model, args.output, top_k=args.top_k)
    except (MissingExtraError, ModelFileError) as exc:
        raise CliError(str(exc)) from exc
    print(
        f"wrote {args.output}: {args.model} as one ONNX graph (preprocessing, "
        "networks, score, threshold, explanations)",
        file=sys.stderr,
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Streams the labelled file: memory does not grow with its width or length
    beyond 9 bytes per row (scores and labels)."""
    from gancore.files import check_outputs

    from .scoring import BadInputError, read_table_header, score_labelled
    from .scoring.formats import table_stem

    scorer = _load_scorer(args.model, args.device, "float64")
    path = Path(args.labelled)
    label_col, rule = _evaluation_labels(args, scorer.metadata.get("labels") or {})
    plot_path = Path(args.plot or f"{table_stem(path)}.evaluation.png")
    rejects = args.rejects
    if args.on_bad_rows == "skip" and not rejects:
        rejects = plot_path.with_name(f"{table_stem(path)}.rejects.csv")
    check_outputs(
        [
            ("plot (--plot)", plot_path),
            ("metrics file (--json)", args.json),
            ("rejects file", rejects),
        ],
        [("labelled file", path), ("model file", args.model)],
    )
    try:
        header = read_table_header(path)
    except BadInputError as exc:
        raise CliError(str(exc)) from exc
    _require_columns(path, header, [label_col])
    try:
        result = score_labelled(
            scorer,
            path,
            label_col,
            rule,
            on_bad_rows=args.on_bad_rows,
            rejects_path=rejects,
            progress=None,
        )
    except BadInputError as exc:
        raise CliError(str(exc)) from exc
    from .evaluation import evaluate_scores

    metrics = evaluate_scores(
        result.scores, result.anomalous, scorer.threshold_, plot_path
    )
    metrics["n_rejected"] = result.n_rejected
    _print_metrics(metrics)
    if result.rejects_path:
        print(
            f"{result.n_rejected} rejected rows in {result.rejects_path}",
            file=sys.stderr,
        )
    print(f"wrote {plot_path}", file=sys.stderr)
    if args.json:
        from gancore.files import atomic_write

        with atomic_write(args.json) as tmp:
            tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def _evaluation_labels(args: argparse.Namespace, fitted: dict):
    """The label column and rule of ``evaluate``: the options given, else those
    ``fit`` recorded in the model, else ``0`` normal and ``1`` anomalous."""
    from .labels import LabelRule

    label_col = args.label_col or fitted.get("column")
    if not label_col:
        raise CliError(
            "--label-col is needed: the model does not record a label column (it was "
            "not fitted with --label-col)"
        )
    normal = args.normal_label or (fitted.get("normal") or ["0"])[0]
    if args.anomaly_label:
        anomalous = [v.strip() for v in args.anomaly_label.split(",") if v.strip()]
    elif args.normal_label is None and fitted.get("anomalous"):
        anomalous = list(fitted["anomalous"])
    elif LabelRule(normal=(normal,)).classify(["1"])[0][0] and normal != "1":
        anomalous = ["1"]  # 0/1, False/True labels
    else:
        print(
            f"note: every label other than {normal!r} counts as an anomaly; name the "
            "anomaly labels with --anomaly-label to have any other label refused",
            file=sys.stderr,
        )
        anomalous = None
    try:
        return label_col, LabelRule(normal=(normal,), anomalous=anomalous)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _print_metrics(metrics: dict[str, float]) -> None:
    print(
        f"rows {metrics['n_rows']}, prevalence {metrics['prevalence']:.4f}\n"
        f"AUROC {metrics['auroc']:.4f}\n"
        f"AUPRC {metrics['auprc']:.4f} (prevalence {metrics['prevalence']:.4f})\n"
        f"at threshold {metrics['threshold']:.4g}: {metrics['flagged']} flagged, "
        f"precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f}"
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from .datasets import make_transactions

    start = time.perf_counter()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = make_transactions(
        args.n_samples, fraud_fraction=0.01, random_state=args.random_state
    )
    n_train = int(0.7 * len(table))
    train_path, new_path = out / "transactions_train.csv", out / "transactions_new.csv"
    table.iloc[:n_train].to_csv(train_path, index=False)
    table.iloc[n_train:].to_csv(new_path, index=False)
    print(
        f"generated {len(table)} synthetic transactions "
        f"({int(table['is_fraud'].sum())} frauds): {train_path}, {new_path}",
        file=sys.stderr,
    )
    model = out / "model.safetensors"
    common = ["--random-state", str(args.random_state)]
    steps = [
        [
            "fit",
            str(train_path),
            "-o",
            str(model),
            "--label-col",
            "is_fraud",
            "--id-col",
            "transaction_id",
            "--n-epochs",
            str(args.n_epochs),
            "--quiet",
            *common,
        ],
        [
            "score",
            str(model),
            str(new_path),
            "-o",
            str(out / "scores.csv"),
            "--id-col",
            "transaction_id",
            "--quiet",
        ],
        [
            "evaluate",
            str(model),
            str(new_path),
            "--label-col",
            "is_fraud",
            "--plot",
            str(out / "evaluation.png"),
            "--json",
            str(out / "metrics.json"),
        ],
    ]
    for step in steps:
        print("$ ganomaly " + " ".join(step), file=sys.stderr)
        code = main(step)
        if code:
            return code
    scores = pd.read_csv(out / "scores.csv")
    top = scores.sort_values("anomaly_score", ascending=False).head(5)
    print("\nmost suspicious new transactions:")
    print(top.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\ndemo finished in {time.perf_counter() - start:.1f} s; outputs in {out}")
    return 0


# ------------------------------------------------------------------------ parser
def _parser() -> argparse.ArgumentParser:
    from ._scorer import SCORES
    from .defaults import DEFAULTS
    from .preprocessing import NUMERIC_SCALINGS

    parser = argparse.ArgumentParser(
        prog="ganomaly",
        description="GANomaly fraud / anomaly detection for tables (CSV, Parquet).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version("ganomaly"))
    # Before the command, as it used to be: the network threads of any command.
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_parser(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=HelpFormatter, **kwargs)

    def network_threads(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--threads",
            type=int,
            metavar="N",
            default=argparse.SUPPRESS,
            help="CPU threads for the networks (default: 1, fastest for these "
            "small networks)",
        )

    fit = add_parser("fit", help="train on normal rows, save a model file")
    fit.add_argument("train", help="training CSV or Parquet file")
    fit.add_argument("-o", "--output", required=True, help="model file to write")
    fit.add_argument("--label-col", help="train only on rows whose label is normal")
    fit.add_argument(
        "--use-labels",
        action="store_true",
        help="with --label-col: also learn from the rows labelled anomalous (known "
        "frauds, e.g. chargebacks) instead of leaving them out; the model file then "
        "keeps them, and rows close to one score higher",
    )
    fit.add_argument("--normal-label", default="0", help="label of normal rows")
    fit.add_argument("--drop-cols", help="comma-separated columns to ignore")
    fit.add_argument("--id-col", help="identifier column (not a feature)")
    fit.add_argument(
        "--n-members",
        type=count_or_auto,
        default=DEFAULTS["n_members"],
        help="GANomaly networks trained together; the score is the geometric mean "
        "of theirs ('auto': 8 for at most 1,000 normal rows, else 2)",
    )
    fit.add_argument(
        "--n-epochs",
        default=DEFAULTS["n_epochs"],
        type=count_or_auto,
        help="passes over the rows ('auto': about 1500 steps)",
    )
    fit.add_argument(
        "--batch-size", type=int, default=DEFAULTS["batch_size"], help="rows per step"
    )
    fit.add_argument(
        "--score",
        default=DEFAULTS["score_type"],
        choices=SCORES,
        help="combined: reconstruction error, distance to the nearest normal "
        "prototype in the latent space and to the nearest kept training row; "
        "reconstruction: the error alone",
    )
    fit.add_argument(
        "--n-references",
        type=_references,
        default=DEFAULTS["n_references"],
        help="training rows the model keeps for the nearest-row term, sampled "
        "when there are more (default: %(default)s), and as many known anomalies "
        "with --use-labels; 0 keeps every training row out of the model file, "
        "without those terms",
    )
    fit.add_argument(
        "--numeric-scaling",
        choices=NUMERIC_SCALINGS,
        default=DEFAULTS["numeric_scaling"],
        help="standard_log: standardised, heavy-tailed columns then log-compressed; "
        "robust: median and IQR; auto/quantile: a quantile transform of skewed "
        "columns / of all",
    )
    fit.add_argument(
        "--contamination",
        default="auto",
        type=_contamination,
        help="share of the training rows taken for anomalies when setting the "
        "threshold ('auto': flag 1%% of held-out normal rows); --target-fpr, if "
        "given, overrides it",
    )
    fit.add_argument(
        "--target-fpr",
        type=float,
        help="share of held-out normal rows the threshold may flag (an alert "
        "budget); overrides --contamination",
    )
    fit.add_argument(
        "--random-state", type=int, default=0, help="seeds weights and shuffling"
    )
    add_hidden_alias(fit, "--seed", "random_state", type=int)
    fit.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    network_threads(fit)
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.add_argument(
        "--checkpoint", help="write a training checkpoint here after every epoch"
    )
    fit.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed fit from --checkpoint (same data and options)",
    )
    fit.set_defaults(run=_cmd_fit)

    score = add_parser("score", help="score a file of any size, streaming")
    score.add_argument("model", help="model file written by ganomaly fit")
    score.add_argument(
        "input",
        help="CSV (.csv, or compressed .csv.gz/.csv.bz2/.csv.zst) or Parquet file to "
        "score; or a quoted glob ('data/*.csv') or a folder of them, scored one "
        "task per file (OUTPUT is then a folder)",
    )
    score.add_argument(
        "-o",
        "--output",
        required=True,
        help="CSV or Parquet output (named .csv.zst, .csv.gz or .csv.bz2: "
        "compressed; .csv.zst writes fastest, about as fast as plain CSV)",
    )
    score.add_argument(
        "--scheduler", help="score on this running Dask scheduler (tcp://host:8786)"
    )
    score.add_argument(
        "--workers",
        type=int,
        default=1,
        help="without --scheduler: start a local Dask cluster of N worker processes",
    )
    score.add_argument("--id-col", help="column copied to the output (default: row)")
    score.add_argument(
        "--on-bad-rows",
        choices=["error", "skip"],
        default="error",
        help="error (default): stop at the first bad row, naming its line and "
        "column; skip: score the other rows and list the bad ones, with their "
        "reasons, in the rejects file (kept on disk as the run goes)",
    )
    score.add_argument("--rejects", help="rejects file (default OUTPUT.rejects.csv)")
    score.add_argument("--top-k", type=int, default=3, help="explanation columns")
    score.add_argument(
        "--device",
        default="cpu",
        help="cpu (default: numpy, no torch start-up) or a torch device such as cuda",
    )
    score.add_argument(
        "--precision",
        choices=["auto", "float32", "float64"],
        default="auto",
        help="of the networks (float64: the estimator's scores; float32: less "
        "CPU time, scores within ~1e-4 relative of those; auto, the default: "
        "float32 where this BLAS gives a row the same float32 score wherever it "
        "is in a block, float64 elsewhere)",
    )
    score.add_argument(
        "--threads",
        dest="score_threads",
        type=int,
        metavar="N",
        help="threads scoring blocks side by side, and as many parsing the CSV "
        "(default: the CPUs available, at most 4, for each file scored without "
        "Dask; 1 per Dask task)",
    )
    add_hidden_alias(score, "--score-threads", "score_threads", type=int)
    score.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into the same OUTPUT (killed, Ctrl-C, "
        "disk full) from its last recorded progress; a CSV input (plain or "
        "compressed) and an uncompressed CSV output. A folder or glob (on Dask "
        "too): the files done are not scored again, the interrupted ones resume. "
        "Without it a new run starts over",
    )
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(run=_cmd_score)

    export = add_parser(
        "export",
        help="write the model as one ONNX file, to score with ONNX Runtime "
        "(needs gankit[onnx])",
    )
    export.add_argument("model", help="model file written by ganomaly fit")
    export.add_argument("-o", "--output", required=True, help="ONNX file to write")
    export.add_argument(
        "--top-k", type=int, default=3, help="columns in the top_features output"
    )
    export.set_defaults(run=_cmd_export)

    ev = add_parser("evaluate", help="AUROC, AUPRC and plots on labelled rows")
    ev.add_argument("model", help="model file written by ganomaly fit")
    ev.add_argument("labelled", help="labelled CSV or Parquet file")
    ev.add_argument(
        "--label-col",
        help="label column (default: the one the model was fitted with, fit "
        "--label-col)",
    )
    ev.add_argument(
        "--normal-label",
        help="label of normal rows (default: the model's, else 0)",
    )
    ev.add_argument(
        "--anomaly-label",
        help="comma-separated labels of anomalies (default: the other labels of "
        "the training file, else 1 where normal is 0); a row with any other label "
        "is a bad row",
    )
    # Accepted for scripts written for fit's options; only the needed columns are
    # read anyway.
    ev.add_argument("--id-col", help=argparse.SUPPRESS)
    ev.add_argument("--drop-cols", help=argparse.SUPPRESS)
    ev.add_argument(
        "--on-bad-rows",
        choices=["error", "skip"],
        default="error",
        help="error (default): stop at the first bad row (a bad value, a missing or "
        "unknown label), naming its line and column; skip: leave those rows out of "
        "the metrics and list them, with their reasons, in the rejects file",
    )
    ev.add_argument(
        "--rejects", help="rejects file (default LABELLED.rejects.csv beside the plot)"
    )
    ev.add_argument("--plot", help="PNG to write (default LABELLED.evaluation.png)")
    ev.add_argument("--json", help="also write the metrics as JSON")
    ev.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    network_threads(ev)
    ev.set_defaults(run=_cmd_evaluate)

    demo = add_parser("demo", help="synthetic transactions: fit, score, evaluate")
    demo.add_argument("--output-dir", default="ganomaly-demo", help="where to write")
    demo.add_argument(
        "--n-samples", type=int, default=20000, help="transactions to make"
    )
    demo.add_argument(
        "--n-epochs",
        type=count_or_auto,
        default=DEFAULTS["n_epochs"],
        help="passes over the rows",
    )
    demo.add_argument(
        "--random-state", type=int, default=0, help="seeds the data and the model"
    )
    network_threads(demo)
    demo.set_defaults(run=_cmd_demo)
    return parser


def _references(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of rows (0 or more), got {text!r}"
        )
    return count


def _contamination(text: str) -> float | str:
    if text == "auto":
        return text
    return float(text)


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors reported in one line: bad values, and training that diverged."""
    train = sys.modules.get("gancore.train")  # imported only if something trained
    return (ValueError,) + ((train.TrainingDivergedError,) if train else ())


def main(argv: list[str] | None = None) -> int:
    """Run the ``ganomaly`` command line; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on bad input or usage (message on stderr).
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and usage errors
        return int(exc.code or 0)
    # Scoring on the CPU runs its networks in numpy and export reads the model
    # into numpy, so they need not import torch (about 1.5 s); every other command
    # trains or loads torch networks.
    lean = args.command == "export" or (
        args.command == "score" and args.device == "cpu"
    )
    set_threads(args.threads, torch_too=not lean)
    try:
        return args.run(args)
    except CliError as exc:
        print(f"ganomaly {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder, ...
        print(f"ganomaly {args.command}: error: {os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"ganomaly {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ganomaly {args.command}: interrupted", file=sys.stderr)
        return 130
