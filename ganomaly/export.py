"""A fitted GANomaly model as one ONNX graph, for scoring outside Python.

:func:`export_onnx` (``ganomaly export MODEL -o model.onnx``) and
:meth:`GANomalyDetector.to_onnx <ganomaly.GANomalyDetector.to_onnx>` write one
self-contained ONNX file that holds the fitted preprocessing, every member's
encoder and decoder, the calibration of the score (per-feature error units,
prototypes, medians) and the threshold, so that ONNX Runtime (Java, C#, C++,
Python, Triton...) scores rows the way ``ganomaly score`` does, without gankit.
Model files of version 2 (members, the nearest-prototype term and the
geometric-mean score of issue 18), 3 (with the nearest-neighbour term's references,
searched in the same cells as :class:`ganomaly.neighbours.NeighbourIndex`) and 4
(with the known anomalies of ``use_labels``, searched the same way); older ones are
refused with an :class:`ExportError` that says to fit again.

The graph's interface (``gankit.onnx_interface`` = :data:`INTERFACE_VERSION`):

Inputs, one per training column, named as the column, each of shape ``[N]`` (any
number of rows):

* a number column: ``tensor(double)``; ``NaN`` is a missing value; a column fitted
  on booleans takes 1.0 (true) and 0.0 (false);
* a categorical column: ``tensor(string)``, the category as the text the model was
  fitted on; the empty string is a missing value (as an empty CSV field is for
  ``ganomaly score``); a category never seen in training encodes as "none of the
  known ones", as in Python.

Outputs:

* ``anomaly_score`` ``tensor(double)[N]``: higher is more suspicious;
* ``is_anomaly`` ``tensor(bool)[N]``: ``anomaly_score > threshold``;
* ``contributions`` ``tensor(float)[N, n_columns]``: every input column's share of
  what sets the row apart (its reconstruction error and, with the nearest-row
  term, its distance to the nearest training row the model keeps, see
  :func:`ganomaly._scorer.feature_attribution`; one-hot features summed per
  column), in input order, summing to 1; what :meth:`GANomalyDetector.explain`
  ranks;
* ``top_columns`` ``tensor(int64)[N, k]`` and ``top_contributions``
  ``tensor(float)[N, k]``: the ``k`` (``top_k``, default 3) largest of them, largest
  first, ties to the earlier column: ``explain``'s ``feature_i`` (as the column's
  position among the inputs, and in the metadata entry ``gankit.columns``) and
  ``contribution_i``.  Positions rather than names: names would be strings made
  for every row, which took a third of the graph's time.

A row that ``ganomaly score`` would reject as bad (an infinite number, or a missing
value when the model was fitted with ``missing="error"``) scores ``NaN``, with
``is_anomaly`` false, ``NaN`` contributions and top columns -1.  A row's outputs
never depend on the other rows of the batch.

The graph is built with :mod:`onnx.helper` rather than by exporting a torch module:
string inputs and a string-to-index lookup (``ai.onnx.ml.LabelEncoder``) have no
torch counterpart, the networks are small MLPs (a matrix product, a bias and a
LeakyReLU per layer), and building the graph node by node from the model file's
arrays keeps it independent of torch's exporter (and of torch: ``ganomaly export``
never imports it).  The graph computes as the estimator's numpy scorer does
(:class:`ganomaly._scorer.Scorer` in float64; ``ganomaly score --precision
float64``): preprocessing in float64, rounded to float32; the networks, the
prototype distances and the score in float64; the per-feature errors rounded to
float32 for the explanations.  Not float32 networks (``ganomaly score``'s
``--precision auto`` where its BLAS allows): the nearest-prototype term is the
squared distance of a code to a prototype that may be very near it, and the
rounding of float32 codes can move it, and the score, far more than float32's
own precision.  Every export is checked against the float64 scorer on probe rows before
it is returned (:class:`ExportError` if they disagree).

A row's outputs are the same to the last bit in a batch of any size: each member
runs as its own two-dimensional products (:func:`network_nodes`), the geometric
mean is a product of powers (``Pow``, computed value by value) rather than ``exp``
of a mean of logarithms (``Log`` and ``Exp`` in double give the last values of a
batch other bits), and the signed logarithm of skewed columns takes its ``Log``
row by row (:func:`_log_by_row`).

Opset 17 with ``ai.onnx.ml`` 3, IR version 8.  Three parts, each one function:
:func:`preprocessing_nodes`, :func:`network_nodes` (and :func:`neighbour_nodes`) and
:func:`combine_scores` (the score from the members' terms, mirroring
``ganomaly._scorer.combine_scores``: a change to the score belongs there and here),
then :func:`attribution_nodes` (mirroring ``ganomaly._scorer.feature_attribution``)
and :func:`explanation_nodes`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gancore.exporting import require_onnx, save_onnx, set_metadata

from ._scorer import BOOST_TERMS, RATIO_FLOOR, SCORE_TERMS, score_terms
from .model_file import MODEL_KIND, READABLE_VERSIONS
from .neighbours import NeighbourIndex

__all__ = [
    "INTERFACE_VERSION",
    "ExportError",
    "GraphBuilder",
    "attribution_nodes",
    "build_onnx",
    "check_graph",
    "combine_scores",
    "explanation_nodes",
    "export_onnx",
    "network_nodes",
    "preprocessing_nodes",
]

INTERFACE_VERSION = 1
OPSET = 17
ML_OPSET = 3
IR_VERSION = 8
OUTPUTS = (
    "anomaly_score",
    "is_anomaly",
    "contributions",
    "top_columns",
    "top_contributions",
)
# ganomaly._model's LeakyReLU, between the layers of every MLP.
_NEGATIVE_SLOPE = 0.2
# check_graph's tolerance on probe rows' scores (relative) and shares: the graph
# and the float64 scorer differ by the rounding of their float64 products, and
# where that flips the float32 rounding of an encoded value.
_TOLERANCE = 1e-6
# Shares (float32) closer than this to a neighbour's are not compared by rank.
_SHARE_GAP = 1e-5
# preprocessing's clip, which keeps float32 finite whatever the input.
_SAFETY_CLIP = 1e6
# What scoring runs of each member (the second encoder only trains).
_PARTS = ("encoder", "decoder")
# The nearest-row term's padded cell table (cells x largest cell x features,
# float64) is refused above this: ONNX files hold at most 2 GB, and a graph this
# large would be slow to load everywhere.  A trained model's table is a few to
# tens of MiB (benchmarks/RESULTS.md).
MAX_CELL_TABLE_BYTES = 512 * 2**20
# LabelEncoder's codes for "no known category" and, under missing="error", for
# the empty string (a missing value, which makes the row bad).
_UNKNOWN, _REFUSED = -1, -2
# onnx.TensorProto's codes of the element types used (onnx is imported lazily).
_FLOAT, _DOUBLE, _BOOL, _UINT8, _INT64 = 1, 11, 9, 2, 7


class ExportError(ValueError):
    """The model cannot be exported, or the exported graph does not score as the
    model does."""


class GraphBuilder:
    """Collects the nodes and constants of an ONNX graph, naming each output.

    Every name it makes starts with ``gankit/``, so that none can collide with an
    input (a column) or an output.

    Examples
    --------
    >>> graph = GraphBuilder()
    >>> two = graph.constant(np.array([2.0]), "two")
    >>> graph.op("Mul", "x", two, hint="double")
    'gankit/double_2'
    """

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        """A fresh name for a value."""
        self._count += 1
        return f"gankit/{hint}_{self._count}"

    def constant(self, value: Any, hint: str = "constant") -> str:
        """A constant tensor (an initializer) holding ``value``; its name."""
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(
        self,
        op_type: str,
        *inputs: str,
        hint: str | None = None,
        n_outputs: int = 1,
        domain: str = "",
        **attributes: Any,
    ) -> Any:
        """Add a node; its output name (a list of them for ``n_outputs > 1``)."""
        from onnx import helper

        outputs = [self.name(hint or op_type.lower()) for _ in range(n_outputs)]
        self.nodes.append(
            helper.make_node(
                op_type, list(inputs), outputs, domain=domain or None, **attributes
            )
        )
        return outputs[0] if n_outputs == 1 else outputs


# ------------------------------------------------------------------ preprocessing
def preprocessing_nodes(
    graph: GraphBuilder, preprocessor: Any, inputs: dict[str, str]
) -> tuple[str, str]:
    """The fitted preprocessing of :class:`~ganomaly.preprocessing.TabularPreprocessor`
    as nodes: the encoded rows and which rows are bad.

    Number columns are worked on together, as a ``[n_numbers, N]`` float64 matrix:
    missing values filled, then ``(x - center) / scale`` (robust and standard
    columns), followed by the signed logarithm ``sign(z) * log1p(|z|)`` where the
    column's ``log`` flag is set (skewed columns under ``"standard_log"``), or the
    interpolation through stored quantiles with linear extrapolation (quantile
    columns), then clipped and rounded to float32, as ``transform`` does.  Each
    categorical column goes through a ``LabelEncoder`` to its category's index and
    becomes a one-hot block.  The blocks, feature-major (``[width, N]``), are put
    back in the preprocessor's feature order by one ``Gather`` of whole rows, then
    transposed.

    Parameters
    ----------
    graph : GraphBuilder
    preprocessor : TabularPreprocessor
        Fitted.
    inputs : dict of str to str
        Graph input of every input column.

    Returns
    -------
    encoded : str
        ``tensor(float)[N, n_features_out_]``.
    bad : str
        ``tensor(bool)[N]``: rows that ``ganomaly score`` would reject.
    """
    specs = preprocessor.specs_
    numbers = [s for s in specs if s["kind"] == "numeric"]
    strict = preprocessor.missing == "error"
    blocks: list[str] = []  # [width, N] float32 pieces, numbers first
    block_features: list[str] = []  # their feature names, in that order
    bad: list[str] = []  # [N] bool
    if numbers:
        matrix, missing, infinite = _number_matrix(graph, numbers, inputs)
        bad.append(infinite)
        if strict:
            bad.append(_any_row(graph, missing))
        scaled_rows, names = _scaled_numbers(graph, numbers, matrix)
        indicated = [i for i, s in enumerate(numbers) if s["missing_indicator"]]
        if indicated:
            flags = graph.op(
                "Gather", missing, graph.constant(np.array(indicated, np.int64))
            )
            scaled_rows.append(graph.op("Cast", flags, to=_DOUBLE))
            names += [f"{numbers[i]['name']}__missing" for i in indicated]
        stacked = (
            graph.op("Concat", *scaled_rows, axis=0)
            if len(scaled_rows) > 1
            else scaled_rows[0]
        )
        blocks.append(graph.op("Cast", stacked, to=_FLOAT))
        block_features += names
    for spec in specs:
        if spec["kind"] != "categorical":
            continue
        one_hot, refused = _one_hot(graph, spec, inputs[spec["name"]], strict)
        blocks.append(one_hot)
        block_features += [f"{spec['name']}={c}" for c in spec["categories"]]
        if spec["missing_category"]:
            block_features.append(f"{spec['name']}=<missing>")
        if refused is not None:
            bad.append(refused)
    together = graph.op("Concat", *blocks, axis=0) if len(blocks) > 1 else blocks[0]
    position = {name: i for i, name in enumerate(block_features)}
    order = [position[name] for name in preprocessor.feature_names_out_]
    if order != list(range(len(order))):
        together = graph.op(
            "Gather", together, graph.constant(np.array(order, np.int64)), axis=0
        )
    encoded = graph.op("Transpose", together, perm=[1, 0], hint="encoded")
    return encoded, _any_of(graph, bad, inputs[specs[0]["name"]])


def _number_matrix(
    graph: GraphBuilder, numbers: list[dict], inputs: dict[str, str]
) -> tuple[str, str, str]:
    """The number columns as a ``[k, N]`` float64 matrix with missing values
    filled; the ``[k, N]`` missing mask; the ``[N]`` rows with an infinite value."""
    columns = [inputs[s["name"]] for s in numbers]
    flat = graph.op("Concat", *columns, axis=0) if len(columns) > 1 else columns[0]
    matrix = graph.op(
        "Reshape", flat, graph.constant(np.array([len(numbers), -1], np.int64))
    )
    missing = graph.op("IsNaN", matrix, hint="missing")
    infinite = _any_row(graph, graph.op("IsInf", matrix))
    fill = np.array([[float(s["fill"])] for s in numbers])
    filled = graph.op("Where", missing, graph.constant(fill, "fill"), matrix)
    return filled, missing, infinite


def _any_row(graph: GraphBuilder, mask: str) -> str:
    """``[N]`` bool: whether any of the ``k`` rows of a ``[k, N]`` mask is true."""
    as_number = graph.op("Cast", mask, to=_FLOAT)
    return graph.op(
        "Cast", graph.op("ReduceMax", as_number, axes=[0], keepdims=0), to=_BOOL
    )


def _any_of(graph: GraphBuilder, masks: list[str], like: str) -> str:
    """``[N]`` bool: the union of ``masks``, or all false (shaped as ``like``)."""
    if not masks:
        shape = graph.op("Shape", like)
        zeros = graph.op(
            "ConstantOfShape",
            shape,
            value=_tensor(np.zeros(1, dtype=bool)),
        )
        return zeros
    result = masks[0]
    for mask in masks[1:]:
        result = graph.op("Or", result, mask)
    return result


def _tensor(value: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(value)


def _scaled_numbers(
    graph: GraphBuilder, numbers: list[dict], filled: str
) -> tuple[list[str], list[str]]:
    """The scaled, clipped number columns (``[k_i, N]`` float64 pieces: linear
    columns, linear columns with the signed logarithm, then quantile columns) and
    the features they are, in that order."""
    linear = ("robust", "standard")
    groups = {
        "linear": [
            i
            for i, s in enumerate(numbers)
            if s["scaling"] in linear and not s.get("log")
        ],
        "log": [
            i for i, s in enumerate(numbers) if s["scaling"] in linear and s.get("log")
        ],
        "quantile": [i for i, s in enumerate(numbers) if s["scaling"] == "quantile"],
    }
    unknown = [
        s["scaling"] for s in numbers if s["scaling"] not in (*linear, "quantile")
    ]
    if unknown:
        raise ExportError(f"the export does not know the scaling {unknown[0]!r}")
    pieces, names = [], []
    for group, members in groups.items():
        if not members:
            continue
        rows = filled
        if len(members) < len(numbers):
            rows = graph.op(
                "Gather", filled, graph.constant(np.array(members, np.int64))
            )
        specs = [numbers[i] for i in members]
        if group == "quantile":
            pieces.append(_interpolate(graph, specs, rows))
        else:
            center = np.array([[float(s["center"])] for s in specs])
            scale = np.array([[float(s["scale"])] for s in specs])
            # (x - center) / scale, in transform's order of operations.
            shifted = graph.op("Sub", rows, graph.constant(center, "center"))
            scaled = graph.op("Div", shifted, graph.constant(scale, "scale"))
            if group == "log":
                scaled = _signed_log1p(graph, scaled, len(specs))
            pieces.append(scaled)
        names += [s["name"] for s in specs]
    low = graph.constant(np.array(-_SAFETY_CLIP))
    high = graph.constant(np.array(_SAFETY_CLIP))
    return [graph.op("Clip", piece, low, high) for piece in pieces], names


def _signed_log1p(graph: GraphBuilder, z: str, n_columns: int) -> str:
    """``sign(z) * log1p(|z|)`` of float64 values, as ``transform`` computes it
    for a skewed column (``copysign(log1p(|z|), z)``).

    ONNX has no ``Log1p``; ``log(1 + u)`` loses the low digits of a small ``u``
    to the rounding of ``1 + u``.  Goldberg's correction, ``log(w) * u / (w - 1)``
    with ``w = 1 + u`` (``u`` itself where ``w`` is 1, and ``log(w)`` where ``w``
    is ``u``: huge or infinite values), is within a few units in the last place
    of ``log1p``, far below the rounding to float32 that follows.
    """
    u = graph.op("Abs", z)
    one = graph.constant(np.array(1.0))
    w = graph.op("Add", u, one)
    correction = graph.op("Div", u, graph.op("Sub", w, one))
    correction = graph.op("Where", graph.op("Equal", w, u), one, correction)
    logged = graph.op("Mul", _log_by_row(graph, w, n_columns), correction)
    logged = graph.op("Where", graph.op("Equal", w, one), u, logged)
    return graph.op("Mul", graph.op("Sign", z), logged, hint="signed_log")


def _log_by_row(graph: GraphBuilder, values: str, n_columns: int) -> str:
    """``Log`` of a ``[k, N]`` float64 matrix, laid out so that a row's values
    get the same bits in a batch of any size.

    ONNX Runtime computes a double ``Log`` in SIMD packets and the values left
    over at the end one by one, which differ in the last bit: which values are
    left over depends on the batch.  Taken row by row (``[N, k]``) and padded
    with ones to a multiple of 8 values a row, every value falls in a packet.
    """
    rows = graph.op("Transpose", values, perm=[1, 0])
    width = -(-n_columns // 8) * 8
    if width > n_columns:
        pads = graph.constant(np.array([0, 0, 0, width - n_columns], np.int64))
        rows = graph.op("Pad", rows, pads, graph.constant(np.array(1.0)))
    logged = graph.op("Log", rows)
    if width > n_columns:
        logged = graph.op(
            "Slice",
            logged,
            graph.constant(np.array([0], np.int64)),
            graph.constant(np.array([n_columns], np.int64)),
            graph.constant(np.array([1], np.int64)),
        )
    return graph.op("Transpose", logged, perm=[1, 0])


def _interpolate(graph: GraphBuilder, specs: list[dict], values: str) -> str:
    """``numpy.interp`` through each column's quantiles, extrapolated linearly
    beyond them with the stored slopes: the quantile transform of ``transform``.

    The segment of a value is the first quantile above it, found by comparing the
    value with every quantile of its column (``ArgMax`` over the comparisons; ONNX
    has no binary search).  Quantile tables are padded to one width with +inf, so
    that there always is a quantile above a finite value.
    """
    width = max(len(s["quantiles"]) for s in specs) + 1
    quantiles = np.full((len(specs), width), np.inf)
    references = np.zeros((len(specs), width))
    slopes = np.zeros((len(specs), width))
    last_segment = np.zeros((len(specs), 1), dtype=np.int64)
    for row, spec in enumerate(specs):
        xp = np.asarray(spec["quantiles"], dtype=np.float64)
        fp = np.asarray(spec["references"], dtype=np.float64)
        quantiles[row, : xp.size] = xp
        references[row, : fp.size] = fp
        # numpy.interp's slope of a segment, and its formula below.
        slopes[row, : xp.size - 1] = (fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1])
        last_segment[row] = xp.size - 2
    above_value = graph.op(
        "Greater",
        graph.constant(quantiles[:, :, None], "quantiles"),
        graph.op("Unsqueeze", values, graph.constant(np.array([1], np.int64))),
    )
    first_above = graph.op(
        "ArgMax", graph.op("Cast", above_value, to=_UINT8), axis=1, keepdims=0
    )
    segment = graph.op("Sub", first_above, graph.constant(np.array(1, np.int64)))
    segment = graph.op("Min", segment, graph.constant(last_segment, "last_segment"))
    segment = graph.op("Max", segment, graph.constant(np.array(0, np.int64)))
    offsets = (np.arange(len(specs), dtype=np.int64) * width)[:, None]
    flat_index = graph.op("Add", segment, graph.constant(offsets, "offsets"))

    def table(array: np.ndarray, hint: str) -> str:
        return graph.op("Gather", graph.constant(array.reshape(-1), hint), flat_index)

    start, level, slope = (
        table(quantiles, "q"),
        table(references, "r"),
        table(slopes, "slope"),
    )
    # slope * (x - x_j) + y_j, as numpy.interp computes it.
    inside = graph.op(
        "Add", graph.op("Mul", slope, graph.op("Sub", values, start)), level
    )

    def column(key: str, index: int) -> str:
        return graph.constant(np.array([[float(s[key][index])] for s in specs]))

    def line(edge: str, level: str, slope_key: str) -> str:
        # reference + (x - quantile) * slope, as transform computes it.
        slope = graph.constant(np.array([[float(s[slope_key])] for s in specs]))
        return graph.op(
            "Add", level, graph.op("Mul", graph.op("Sub", values, edge), slope)
        )

    first_q, last_q = column("quantiles", 0), column("quantiles", -1)
    below = line(first_q, column("references", 0), "low_slope")
    beyond = line(last_q, column("references", -1), "high_slope")
    result = graph.op("Where", graph.op("Greater", values, last_q), beyond, inside)
    return graph.op("Where", graph.op("Less", values, first_q), below, result)


def _one_hot(
    graph: GraphBuilder, spec: dict, column: str, strict: bool
) -> tuple[str, str | None]:
    """A categorical column's ``[width, N]`` float32 one-hot block, and under
    ``missing="error"`` its ``[N]`` bad rows (empty strings)."""
    categories = [str(c) for c in spec["categories"]]
    if "" in categories:
        raise ExportError(
            f"column {spec['name']!r} has the empty string as a category; the "
            "exported graph reads the empty string as a missing value"
        )
    keys, codes = list(categories), list(range(len(categories)))
    if spec["missing_category"]:
        keys.append("")
        codes.append(len(categories))
    elif strict:
        keys.append("")
        codes.append(_REFUSED)
    code = graph.op(
        "LabelEncoder",
        column,
        domain="ai.onnx.ml",
        keys_strings=keys,
        values_int64s=codes,
        default_int64=_UNKNOWN,
        hint="category",
    )
    width = len(categories) + int(spec["missing_category"])
    hot = graph.op(
        "Equal", code, graph.constant(np.arange(width, dtype=np.int64)[:, None])
    )
    refused = None
    if strict and not spec["missing_category"]:
        refused = graph.op("Equal", code, graph.constant(np.array(_REFUSED)))
    return graph.op("Cast", hot, to=_FLOAT), refused


# ----------------------------------------------------------------------- networks
def network_nodes(
    graph: GraphBuilder,
    layers: dict[str, list[list[tuple[np.ndarray, np.ndarray]]]],
    encoded: str,
    feature_error_scale: np.ndarray,
    prototypes: np.ndarray | None,
) -> tuple[str, dict[str, list[str]]]:
    """The members' generators on the encoded rows: per-feature errors and every
    member's score terms, as :meth:`ganomaly._scorer.Scorer.errors` computes them
    in float64 (the estimator's scorer).

    Each member is its own chain of two-dimensional products (``[N, in]`` by a
    constant ``[in, out]``), a bias and a LeakyReLU(0.2) (``max(x, 0.2 x)``, as
    the scorer computes it) between layers, none after the last.  One product per
    member and layer rather than one batched product of all members: ONNX Runtime
    then gives a row the same bits in a batch of any size, which its batched
    products do not (a single row took another kernel).

    Parameters
    ----------
    graph : GraphBuilder
    layers : dict
        ``"encoder"`` and ``"decoder"``: per member, ``(W.T, b)`` of each linear
        layer (:meth:`ganomaly._scorer.Scorer.member_layers`, float64).
    encoded : str
        ``tensor(float)[N, F]``.
    feature_error_scale : ndarray of shape (M, F)
        Per-feature units of each member's squared errors.
    prototypes : ndarray of shape (M, R, L), or None
        Each member's prototypes of the latent codes; None when the score has no
        nearest-prototype term.

    Returns
    -------
    errors : str
        ``tensor(float)[N, F]``: the members' mean of ``(x - G_m(x))^2 /
        feature_error_scale[m]``, what the explanations rank.
    terms : dict of str to list of str
        ``tensor(double)[N]`` per term and member: ``"reconstruction"`` (the mean
        of the member's scaled squared errors over the features) and, with
        prototypes, ``"nearest"`` (the squared distance from the member's code to
        its nearest prototype).
    """

    def mlp(x: str, part: str, member: int) -> str:
        member_layers = layers[part][member]
        for index, (transposed, bias) in enumerate(member_layers):
            transposed = np.ascontiguousarray(transposed, np.float64)
            product = graph.op("MatMul", x, graph.constant(transposed, part))
            x = graph.op("Add", product, graph.constant(bias.astype(np.float64)))
            if index < len(member_layers) - 1:
                x = graph.op("Max", x, graph.op("Mul", x, slope))
        return x

    slope = graph.constant(np.array(_NEGATIVE_SLOPE))
    x = graph.op("Cast", encoded, to=_DOUBLE)
    n_members = len(feature_error_scale)
    scaled_errors = []
    terms: dict[str, list[str]] = {"reconstruction": []}
    if prototypes is not None:
        terms["nearest"] = []
    for member in range(n_members):
        codes = mlp(x, "encoder", member)
        difference = graph.op("Sub", x, mlp(codes, "decoder", member))
        squared = graph.op("Mul", difference, difference)
        scale = np.asarray(feature_error_scale[member], np.float64)
        scaled = graph.op("Div", squared, graph.constant(scale, "error_scale"))
        scaled_errors.append(scaled)
        terms["reconstruction"].append(
            graph.op("ReduceMean", scaled, axes=[1], keepdims=0, hint="reconstruction")
        )
        if prototypes is not None:
            terms["nearest"].append(_nearest_nodes(graph, codes, prototypes[member]))
    errors = scaled_errors[0]
    if n_members > 1:  # the scorer's order: the members' sum, times 1/M
        total = graph.op("Sum", *scaled_errors)
        errors = graph.op("Mul", total, graph.constant(np.array(1.0 / n_members)))
    return graph.op("Cast", errors, to=_FLOAT, hint="errors"), terms


def _expanded_products(
    graph: GraphBuilder, rows: str, points: np.ndarray, hint: str
) -> str:
    """``[N, P]`` float64: ``|p|^2 - 2 x.p`` for every row (``[N, F]`` float64) and
    point, the scorer's rule for picking the nearest (its order of operations:
    product, times -2, plus the norms)."""
    points = np.asarray(points, np.float64)
    transposed = graph.constant(np.ascontiguousarray(points.T), hint)
    products = graph.op("MatMul", rows, transposed)
    products = graph.op("Mul", products, graph.constant(np.array(-2.0)))
    norms = graph.constant(np.einsum("ij,ij->i", points, points), f"{hint}_norms")
    return graph.op("Add", products, norms)


def _top_k(graph: GraphBuilder, values: str, k: int, largest: bool) -> list[str]:
    """ONNX TopK along axis 1, sorted (equal values: the lower index first):
    ``[values, indices]``."""
    return graph.op(
        "TopK",
        values,
        graph.constant(np.array([k], np.int64)),
        axis=1,
        largest=int(largest),
        sorted=1,
        n_outputs=2,
    )


def _nearest_nodes(graph: GraphBuilder, codes: str, prototypes: np.ndarray) -> str:
    """``[N]`` float64: the squared distance from a member's codes (``[N, L]``
    float64) to its nearest prototype, as
    :func:`ganomaly._scorer.nearest_squared_distances` computes it: the nearest by
    the smallest ``|p|^2 - 2 z.p`` (the first of equals), its distance as
    ``sum((z - p)^2)``."""
    prototypes = np.asarray(prototypes, np.float64)
    products = _expanded_products(graph, codes, prototypes, "prototypes")
    nearest = graph.op("ArgMin", products, axis=1, keepdims=0, select_last_index=0)
    chosen = graph.op("Gather", graph.constant(prototypes, "prototype_table"), nearest)
    gap = graph.op("Sub", codes, chosen)
    return graph.op(
        "ReduceSum",
        graph.op("Mul", gap, gap),
        graph.constant(np.array([1], np.int64)),
        keepdims=0,
        hint="nearest",
    )


def neighbour_nodes(
    graph: GraphBuilder, encoded: str, index: NeighbourIndex, gaps: bool = True
) -> tuple[str, str | None]:
    """``[N]`` float64: the squared distance from each encoded row to its nearest
    reference among the cells it probes (the second nearest where the nearest
    equals the row), as
    :meth:`ganomaly.neighbours.NeighbourIndex.squared_distances` computes it; and,
    with ``gaps`` (else None), ``[N, F]`` float32: that distance's ``(x - r)^2``
    per feature.  The nearest-neighbour and the known-anomaly terms both.

    The probed cells are the ``probes`` smallest ``|c|^2 - 2 x.c`` (TopK, the
    lower cell first among equals).  The cells are stored padded to the largest
    (``[C, S, F]``, a padding reference's norm +inf): a row gathers its probed
    cells, takes ``|r|^2 - 2 x.r`` for their references (one batched product),
    and the two smallest (TopK; equal float64 values, which distinct references
    practically never have, go to the nearer cell where the scorer takes the
    lower reference) get their distance ``sum((x - r)^2)``.
    """
    x = graph.op("Cast", encoded, to=_DOUBLE)
    to_centres = _expanded_products(graph, x, index.centres, "centres")
    _, probed = _top_k(graph, to_centres, index.probes, largest=False)
    references = np.asarray(index.references, np.float64)
    sizes = np.diff(index.starts)
    width = int(sizes.max())
    n_features = references.shape[1]
    table_bytes = index.n_cells * width * n_features * 8
    if table_bytes > MAX_CELL_TABLE_BYTES:
        raise ExportError(
            f"the nearest-row term's cells would take {table_bytes / 2**20:,.0f} MiB "
            f"in the graph (largest cell {width} of {len(references)} rows); fit "
            "with a smaller --n-references to export this model"
        )
    table = np.zeros((index.n_cells, width, n_features))
    norms = np.full((index.n_cells, width), np.inf)
    numbers = np.zeros((index.n_cells, width), dtype=np.int64)
    for cell, (first, size) in enumerate(zip(index.starts[:-1], sizes, strict=True)):
        table[cell, :size] = references[first : first + size]
        norms[cell, :size] = np.einsum(
            "ij,ij->i", table[cell, :size], table[cell, :size]
        )
        numbers[cell, :size] = np.arange(first, first + size)
    flat = graph.constant(np.array([0, -1], np.int64))  # [N, probes * S]
    gathered = graph.op("Gather", graph.constant(table, "cells"), probed)
    column_x = graph.op("Unsqueeze", x, graph.constant(np.array([1, 3], np.int64)))
    products = graph.op(  # [N, probes, S, 1]
        "MatMul", gathered, column_x
    )
    products = graph.op(
        "Add",
        graph.op(
            "Mul",
            graph.op("Reshape", products, flat),
            graph.constant(np.array(-2.0)),
        ),
        graph.op(
            "Reshape",
            graph.op("Gather", graph.constant(norms, "cell_norms"), probed),
            flat,
        ),
    )
    candidates = min(2, index.probes * width)
    values, position = _top_k(graph, products, candidates, largest=False)
    number_of = graph.op(
        "Reshape",
        graph.op("Gather", graph.constant(numbers, "cell_rows"), probed),
        flat,
    )
    nearest = graph.op("GatherElements", number_of, position, axis=1)
    chosen = graph.op("Gather", graph.constant(references, "references"), nearest)
    row = graph.op("Unsqueeze", x, graph.constant(np.array([1], np.int64)))
    gap = graph.op("Sub", row, chosen)
    squares = graph.op("Mul", gap, gap)  # [N, candidates, F]
    distances = graph.op(  # [N, candidates]
        "ReduceSum", squares, graph.constant(np.array([2], np.int64)), keepdims=0
    )

    def column(tensor: str, k: int) -> str:
        return graph.op(
            "Squeeze",
            graph.op(
                "Slice",
                tensor,
                graph.constant(np.array([k], np.int64)),
                graph.constant(np.array([k + 1], np.int64)),
                graph.constant(np.array([1], np.int64)),
            ),
            graph.constant(np.array([1], np.int64)),
        )

    nearest_distance = column(distances, 0)
    if candidates == 1:
        distance = graph.op("Identity", nearest_distance, hint="neighbour")
        if not gaps:
            return distance, None
        return distance, graph.op("Cast", column(squares, 0), to=_FLOAT)
    # The nearest is the row itself: the second counts, if it was searched.
    itself = graph.op(
        "And",
        graph.op("Equal", nearest_distance, graph.constant(np.array(0.0))),
        graph.op("Less", column(values, 1), graph.constant(np.array(np.inf))),
    )
    distance = graph.op(
        "Where", itself, column(distances, 1), nearest_distance, hint="neighbour"
    )
    if not gaps:
        return distance, None
    by_row = graph.op("Unsqueeze", itself, graph.constant(np.array([1], np.int64)))
    counted = graph.op("Where", by_row, column(squares, 1), column(squares, 0))
    return distance, graph.op("Cast", counted, to=_FLOAT, hint="gaps")


# -------------------------------------------------------------------------- score
def combine_scores(
    graph: GraphBuilder,
    terms: dict[str, list[str]],
    score_type: str,
    calibration: dict[str, np.ndarray],
) -> str:
    """The anomaly score from the members' terms, as nodes.

    Mirrors :func:`ganomaly._scorer.combine_scores` (the score of ``ganomaly
    score`` and of the estimator): the geometric mean, over members and the score
    type's terms, of each term divided by its median on held-out normal rows, each
    ratio at least :data:`ganomaly._scorer.RATIO_FLOOR`, times the boost of the
    known-anomaly term where the model has it.  Computed as the product
    of the ratios' ``1/k``-th powers (``k`` ratios), which neither overflows nor
    depends on a row's place in the batch (see the module docstring), where the
    scorer takes ``exp`` of the mean of their logarithms: the two agree to the
    rounding of float64.  When the score changes there, it changes here; the
    probe rows of every export (:func:`build_onnx`) catch a graph that no longer
    agrees.

    Parameters
    ----------
    graph : GraphBuilder
    terms : dict of str to list of str
        ``tensor(double)[N]`` per term and member, from :func:`network_nodes`.
    score_type : {"combined", "reconstruction"}
        ``"combined"``: the reconstruction and nearest-prototype terms, and the
        nearest-row term and known-anomaly boost where the model has them;
        ``"reconstruction"``: the reconstruction terms alone.
    calibration : dict of str to ndarray of shape (M,)
        The medians of the terms.

    Returns
    -------
    str
        ``tensor(double)[N]``.
    """
    if score_type not in SCORE_TERMS:
        raise ExportError(f"the export does not know the score {score_type!r}")
    names = score_terms(score_type, calibration)
    averaged = [name for name in names if name not in BOOST_TERMS]
    return _product(
        graph,
        (
            factor
            for name in names
            for factor in _ratio_powers(
                graph,
                terms,
                name,
                calibration,
                1 if name in BOOST_TERMS else len(averaged),
            )
        ),
    )


def _ratio_powers(
    graph: GraphBuilder,
    terms: dict[str, list[str]],
    name: str,
    calibration: dict[str, np.ndarray],
    n_terms: int,
) -> list[str]:
    """Per member of term ``name``: its ratio to the median (at least
    :data:`~ganomaly._scorer.RATIO_FLOOR`; for the
    :data:`~ganomaly._scorer.BOOST_TERMS`, the median over the term, within
    ``[1, 1 / RATIO_FLOOR]``) to the power ``1 / (n_terms * M)``."""
    floor = graph.constant(np.array(RATIO_FLOOR))
    medians = np.asarray(calibration[name], np.float64)
    power = graph.constant(np.array(1.0 / (n_terms * len(terms[name]))))
    factors = []
    for member, term in enumerate(terms[name]):
        median = graph.constant(medians[member], f"{name}_median")
        ratio = graph.op("Max", graph.op("Div", term, median), floor)
        if name in BOOST_TERMS:
            one = graph.constant(np.array(1.0))
            ratio = graph.op("Div", one, graph.op("Min", ratio, one))
        factors.append(graph.op("Pow", ratio, power))
    return factors


def _product(graph: GraphBuilder, factors: Any) -> str:
    product = None
    for factor in factors:
        product = factor if product is None else graph.op("Mul", product, factor)
    return product


# ------------------------------------------------------------------- explanations
def attribution_nodes(
    graph: GraphBuilder,
    errors: str,
    gaps: str,
    terms: dict[str, list[str]],
    calibration: dict[str, np.ndarray],
) -> str:
    """``[N, F]`` float32: each feature's part in what sets a row apart, as
    :func:`ganomaly._scorer.feature_attribution` computes it from the
    reconstruction errors (``errors``) and the nearest-row term's ``gaps``, each
    split weighted by its term's excess ratio ``max(ratio - 1, 0)`` (both 1 where
    neither is above its median)."""
    zero = graph.constant(np.array(0.0))
    excess = {}
    for name in ("reconstruction", "neighbour"):
        ratio = _product(graph, _ratio_powers(graph, terms, name, calibration, 1))
        excess[name] = graph.op(
            "Max", graph.op("Sub", ratio, graph.constant(np.array(1.0))), zero
        )
    neither = graph.op(
        "And",
        graph.op("Equal", excess["reconstruction"], zero),
        graph.op("Equal", excess["neighbour"], zero),
    )
    axis = graph.constant(np.array([1], np.int64))
    parts = None
    for name, split in (("reconstruction", errors), ("neighbour", gaps)):
        weight = graph.op("Where", neither, graph.constant(np.array(1.0)), excess[name])
        total = graph.op(
            "ReduceSum", graph.op("Cast", split, to=_DOUBLE), axis, keepdims=0
        )
        positive = graph.op("Greater", total, zero)
        safe = graph.op("Where", positive, total, graph.constant(np.array(1.0)))
        factor = graph.op("Where", positive, graph.op("Div", weight, safe), zero)
        factor = graph.op("Unsqueeze", graph.op("Cast", factor, to=_FLOAT), axis)
        part = graph.op("Mul", split, factor)
        parts = part if parts is None else graph.op("Add", parts, part)
    return parts


def explanation_nodes(
    graph: GraphBuilder,
    errors: str,
    sources: np.ndarray,
    n_columns: int,
    top_k: int,
) -> tuple[str, str, str]:
    """Every input column's share of a row's per-feature parts, and the ``top_k``
    largest, as :func:`ganomaly._scorer.top_contributions` computes them.

    Parameters
    ----------
    graph : GraphBuilder
    errors : str
        ``tensor(float)[N, F]``: the per-feature parts (the reconstruction errors,
        or :func:`attribution_nodes`).
    sources : ndarray of shape (F,)
        Input column of every feature.
    n_columns : int
        Number of input columns.
    top_k : int

    Returns
    -------
    contributions, top_columns, top_contributions : str
        ``tensor(float)[N, n_columns]``, ``tensor(int64)[N, k]`` (column
        positions), ``tensor(float)[N, k]``.
    """
    per_column = errors
    if list(sources) != list(range(n_columns)):  # one-hot blocks: summed
        summing = np.zeros((len(sources), n_columns), dtype=np.float32)
        summing[np.arange(len(sources)), sources] = 1.0
        per_column = graph.op("MatMul", errors, graph.constant(summing, "by_column"))
    total = graph.op(
        "ReduceSum", per_column, graph.constant(np.array([1], np.int64)), keepdims=1
    )
    positive = graph.op("Greater", total, graph.constant(np.array(0, np.float32)))
    total = graph.op("Where", positive, total, graph.constant(np.array(1, np.float32)))
    shares = graph.op("Div", per_column, total)
    k = min(int(top_k), n_columns)
    top_values, top_indices = _top_k(graph, shares, k, largest=True)
    return shares, top_indices, top_values


# ---------------------------------------------------------------------- the model
def build_onnx(
    arrays: dict[str, np.ndarray],
    config: dict,
    path: str | os.PathLike | None = None,
    *,
    top_k: int = 3,
) -> Any:
    """The ONNX graph of a fitted GANomalyDetector, checked against its scorer.

    Parameters
    ----------
    arrays : dict of str to ndarray
        The model's tensors (what a model file holds: ``generator.*``,
        ``calibration.feature_error_scale``...).
    config : dict
        The model's JSON configuration.
    path : str or path-like, optional
        Where to write the graph (atomically); not written if None.
    top_k : int, default=3
        Columns in ``top_columns`` and ``top_contributions``.

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ImportError
        Without the ``onnx`` extra (one line naming it).
    ExportError
        A model this export does not know, or a graph that does not score as the
        model's scorer does on probe rows.

    Examples
    --------
    >>> from ganomaly import GANomalyDetector, make_transactions
    >>> X, y = make_transactions(500, random_state=0, return_X_y=True)
    >>> detector = GANomalyDetector(n_epochs=1, random_state=0).fit(X[y == 0])
    >>> model = detector.to_onnx()
    >>> [i.name for i in model.graph.input][:3]
    ['amount', 'merchant_category', 'hour']
    >>> print(*[o.name for o in model.graph.output])
    anomaly_score is_anomaly contributions top_columns top_contributions
    """
    onnx, _ = require_onnx("onnx", "onnxruntime")
    from onnx import TensorProto, helper

    from ._scorer import Scorer

    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    version = config.get("version", 1) if isinstance(config, dict) else None
    if version not in READABLE_VERSIONS:
        versions = " and ".join(map(str, READABLE_VERSIONS))
        raise ExportError(
            f"a GANomalyDetector of model version {version!r}; this export writes "
            f"graphs of version {versions} models only: fit the model again with "
            "this gankit (ganomaly fit), then export it"
        )
    try:
        scorer = Scorer.from_model(arrays, config, dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"not a model this export knows ({exc})") from exc
    preprocessor = scorer.preprocessor_
    columns = list(preprocessor.input_columns_)
    clashes = [c for c in columns if c in OUTPUTS or c.startswith("gankit/")]
    if clashes:
        raise ExportError(
            f"column(s) {clashes} have the names of the graph's outputs or of its "
            "inner values (gankit/...); rename them"
        )
    graph = GraphBuilder()
    inputs = {name: name for name in columns}
    encoded, bad = preprocessing_nodes(graph, preprocessor, inputs)
    errors, terms = network_nodes(
        graph,
        {part: scorer.member_layers(part) for part in _PARTS},
        encoded,
        scorer.feature_error_scale_,
        scorer.prototypes_ if "nearest" in scorer.calibration_ else None,
    )
    score_parts = errors
    if "neighbour" in scorer.calibration_:
        distance, gaps = neighbour_nodes(graph, encoded, scorer.neighbours_)
        terms["neighbour"] = [distance]
        score_parts = attribution_nodes(graph, errors, gaps, terms, scorer.calibration_)
    if "known" in scorer.calibration_:
        distance, _ = neighbour_nodes(graph, encoded, scorer.known_, gaps=False)
        terms["known"] = [distance]
    score = combine_scores(graph, terms, scorer.score_type, scorer.calibration_)
    shares, top, values = explanation_nodes(
        graph,
        score_parts,
        np.asarray(preprocessor.source_columns_),
        len(columns),
        top_k,
    )
    # Bad rows: NaN scores and contributions, no flag, no top columns (-1).  By
    # arithmetic on a per-row column ([N, 1]): ONNX Runtime's Where with such a
    # broadcast condition took a fifth of the graph's time.
    nan_if_bad = graph.op(
        "Where", bad, graph.constant(np.array(np.nan)), graph.constant(np.array(0.0))
    )
    axis = graph.constant(np.array([1], np.int64))
    blank = graph.op("Unsqueeze", graph.op("Cast", nan_if_bad, to=_FLOAT), axis)
    keep = graph.op(
        "Unsqueeze", graph.op("Cast", graph.op("Not", bad), to=_INT64), axis
    )
    graph.nodes += [
        helper.make_node("Add", [score, nan_if_bad], ["anomaly_score"]),
        helper.make_node("Add", [shares, blank], ["contributions"]),
        helper.make_node("Add", [values, blank], ["top_contributions"]),
        helper.make_node(  # top * keep + (keep - 1): the column, or -1
            "Add",
            [
                graph.op("Mul", top, keep),
                graph.op("Sub", keep, graph.constant(np.array(1, np.int64))),
            ],
            ["top_columns"],
        ),
    ]
    threshold = graph.constant(np.array(scorer.threshold_))
    graph.nodes.append(
        helper.make_node("Greater", ["anomaly_score", threshold], ["is_anomaly"])
    )
    k = min(top_k, len(columns))
    kinds = {s["name"]: s["kind"] for s in preprocessor.specs_}
    graph_inputs = [
        helper.make_tensor_value_info(
            name,
            TensorProto.STRING if kinds[name] == "categorical" else TensorProto.DOUBLE,
            ["N"],
        )
        for name in columns
    ]
    graph_outputs = [
        helper.make_tensor_value_info("anomaly_score", TensorProto.DOUBLE, ["N"]),
        helper.make_tensor_value_info("is_anomaly", TensorProto.BOOL, ["N"]),
        helper.make_tensor_value_info(
            "contributions", TensorProto.FLOAT, ["N", len(columns)]
        ),
        helper.make_tensor_value_info("top_columns", TensorProto.INT64, ["N", k]),
        helper.make_tensor_value_info("top_contributions", TensorProto.FLOAT, ["N", k]),
    ]
    for value_info in graph_inputs:
        value_info.doc_string = _input_doc(value_info.name, kinds[value_info.name])
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "ganomaly",
            graph_inputs,
            graph_outputs,
            initializer=graph.initializers,
        ),
        opset_imports=[
            helper.make_opsetid("", OPSET),
            helper.make_opsetid("ai.onnx.ml", ML_OPSET),
        ],
        ir_version=IR_VERSION,
        doc_string=_MODEL_DOC,
    )
    set_metadata(
        model,
        MODEL_KIND,
        INTERFACE_VERSION,
        {
            "gankit.columns": json.dumps(_column_doc(preprocessor)),
            "gankit.threshold": repr(scorer.threshold_),
            "gankit.score_type": scorer.score_type,
            "gankit.n_members": str(scorer.n_members),
            "gankit.top_k": str(k),
            "gankit.missing": "NaN for a number, the empty string for a category",
            "gankit.outputs": ", ".join(OUTPUTS),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    check_graph(model, scorer, top_k=k)
    if path is not None:
        save_onnx(model, path)
    return model


_MODEL_DOC = (
    "GANomaly anomaly scorer exported by gankit. Inputs: one [N] tensor per training "
    "column, named as the column: double for numbers (NaN = missing), string for "
    "categories (empty string = missing). Outputs: anomaly_score (double, higher = "
    "more suspicious), is_anomaly (score > threshold), contributions (each column's "
    "share of the error, in input order), top_columns (positions of the largest "
    "shares among the inputs) and top_contributions (those shares). Metadata "
    "gankit.columns lists the columns and their known categories."
)


def _input_doc(name: str, kind: str) -> str:
    if kind == "categorical":
        return f"{name}: category as text; empty string = missing"
    return f"{name}: number; NaN = missing"


def _column_doc(preprocessor: Any) -> list[dict]:
    """The columns as a caller needs them: name, input type, known categories."""
    described = []
    for spec in preprocessor.specs_:
        entry: dict[str, Any] = {"name": spec["name"]}
        if spec["kind"] == "categorical":
            entry.update(type="string", categories=list(spec["categories"]))
        else:
            entry["type"] = "double"
            if spec.get("boolean"):
                entry["boolean"] = True
        described.append(entry)
    return described


def check_graph(model: Any, scorer: Any, *, top_k: int, n_rows: int = 64) -> None:
    """Score probe rows with ONNX Runtime and with ``scorer`` (float64); an
    ExportError unless scores (:data:`_TOLERANCE` relative), flags and top features
    agree.

    The probe rows take every number column around its typical values and far
    beyond them, every known category, unknown ones and, where the model imputes,
    missing values.  A flag or a ranking is compared only where the scorer's value
    is not within the tolerance of the threshold or of the next column's share.
    """
    import onnxruntime

    columns, feeds = _probe_rows(scorer.preprocessor_, n_rows)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    scores, flags, _, top_columns, _ = session.run(list(OUTPUTS), feeds)
    encoded = scorer.preprocessor_.transform(columns)
    expected, top, shares = scorer.score_and_explain(encoded, top_k)
    tolerance = _TOLERANCE * np.maximum(np.abs(expected), 1e-3)
    worst = float(np.max(np.abs(scores - expected) / np.maximum(tolerance, 1e-300)))
    clear = np.abs(expected - scorer.threshold_) > tolerance
    # A rank is compared where its share is clear of its neighbours' shares.
    gaps = -np.diff(shares, axis=1)
    wide = np.full((len(gaps), 1), np.inf)
    decided = (np.c_[wide, gaps] > _SHARE_GAP) & (np.c_[gaps, wide] > _SHARE_GAP)
    if worst > 1 or not np.array_equal(
        flags[clear], (expected > scorer.threshold_)[clear]
    ):
        raise ExportError(
            "the exported graph does not score as the model does on probe rows "
            f"(largest difference {worst:.3g} times the tolerance); this export "
            "does not know this model's score"
        )
    if not np.array_equal(top_columns[decided], top[decided]):
        raise ExportError(
            "the exported graph does not explain scores as the model does on "
            "probe rows (top features differ)"
        )


def _probe_rows(preprocessor: Any, n_rows: int) -> tuple[dict, dict]:
    """Probe rows for :func:`check_graph`: the columns for ``transform`` and the
    graph's inputs."""
    rng = np.random.default_rng(0)
    imputes = preprocessor.missing == "impute"
    columns, feeds = {}, {}
    spread = np.r_[np.ones(n_rows // 2), np.full(n_rows - n_rows // 2, 30.0)]
    for spec in preprocessor.specs_:
        if spec["kind"] == "categorical":
            choices = list(spec["categories"]) + ["gankit probe: unknown"]
            texts = np.array([choices[i % len(choices)] for i in range(n_rows)], object)
            if imputes:
                texts[1::7] = None
            columns[spec["name"]] = texts
            feeds[spec["name"]] = np.array(
                ["" if t is None else t for t in texts], dtype=object
            )
            continue
        if spec["scaling"] in ("robust", "standard"):
            center, unit = spec["center"], spec["scale"]
        else:
            quantiles = spec["quantiles"]
            center = quantiles[len(quantiles) // 2]
            unit = (quantiles[-1] - quantiles[0]) / 4 or 1.0
        values = center + unit * spread * rng.standard_normal(n_rows)
        values[3::16] = center  # 0 once scaled: log1p's smallest arguments
        if spec.get("boolean"):
            values = (rng.random(n_rows) < 0.5).astype(np.float64)
        if imputes:
            values[2::5] = np.nan
        columns[spec["name"]] = values
        feeds[spec["name"]] = values
    return columns, feeds


def export_onnx(
    model: str | os.PathLike, path: str | os.PathLike, *, top_k: int = 3
) -> Any:
    """Write a GANomalyDetector model file as one ONNX file (``ganomaly export``).

    The model file is read without torch (:func:`gancore.io.load_arrays`, with its
    checks); see the module docstring for the graph's inputs and outputs.

    Parameters
    ----------
    model : str or path-like
        A model file written by ``ganomaly fit`` or ``GANomalyDetector.save``.
    path : str or path-like
        The ONNX file to write (atomically).
    top_k : int, default=3

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    gancore.ModelFileError
        Not a GANomalyDetector model file, or a damaged one.
    ImportError
        Without the ``onnx`` extra.
    ExportError
        See :func:`build_onnx`.
    """
    from gancore.io import load_arrays

    require_onnx("onnx", "onnxruntime")
    arrays, config = load_arrays(Path(model), kind=MODEL_KIND)
    return build_onnx(arrays, config, path, top_k=top_k)
