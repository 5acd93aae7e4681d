"""The score's nearest-neighbour term: the distance from a row to the nearest of the
training rows the model keeps (its *references*), found in coarse cells.

A GANomaly generator reconstructs rows that resemble its training rows, including
some rows that lie between them, where no normal row is: a nearest-neighbour
distance in the encoded input space sees those (issue 18: what it adds on the dev
pool, and costs, is in benchmarks/RESULTS.md).

Searching every reference for every scored row would cost as much as KNN itself, so
the references are cut into cells, k-means cells of a sample of them, and a row
searches exactly only the ``PROBES`` cells whose centres are nearest to it (an
inverted-file search; on the dev pool it ranked as the exact search did).  Per row
that is ``n_cells + PROBES * n_references / n_cells`` distances: about 380 for
16,384 references, against 256 prototypes per member for the latent term.

The known-anomaly term of ``use_labels=True`` keeps the known anomalies in an index
of the same kind and searches them the same way (:mod:`ganomaly._scorer`).

The search is numpy only (the streaming scorer imports it without torch or
scikit-learn); :func:`build_index` needs scikit-learn's k-means, at fit time only.
The nearest references are chosen by ``|r|^2 - 2 x.r`` (float64, equal values to
the first in reference order), and their distances computed as ``sum((x - r)^2)``,
as the prototype term does (:func:`ganomaly._scorer.nearest_squared_distances`);
where the nearest equals the row, the second counts.  The ONNX export builds the
same search (:mod:`ganomaly.export`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .model_file import INDEX_TENSORS

__all__ = ["CELLS", "PROBES", "NeighbourIndex", "build_index"]

# Cells of the references (fewer when there are fewer references: one each) and
# cells searched per row (benchmarks/RESULTS.md: 128 and 2 scored as the exact
# search on the dev pool).
CELLS = 128
PROBES = 2
# k-means of the cells runs on at most this many references.
_CENTRE_SAMPLE = 2048
_BLOCK = 16384  # rows per search block


class NeighbourIndex:
    """References sorted by cell, with the cells' centres: the nearest-neighbour
    term's part of a model.

    Parameters
    ----------
    references : ndarray of shape (n_references, n_features)
        Encoded training rows, in cell order (cell ``c`` holds
        ``references[starts[c]:starts[c + 1]]``).
    centres : ndarray of shape (n_cells, n_features)
    starts : ndarray of shape (n_cells + 1,), int
        Where each cell starts; ``starts[0] == 0``, ``starts[-1] ==
        n_references``, increasing (no cell is empty, so a row always finds a
        reference in the cells it probes).

    Examples
    --------
    >>> index = NeighbourIndex(np.array([[0.0, 0.0], [5.0, 5.0]]),
    ...                        np.array([[0.0, 0.0], [5.0, 5.0]]), np.array([0, 1, 2]))
    >>> index.squared_distances(np.array([[1.0, 0.0], [5.0, 3.0]])).tolist()
    [1.0, 4.0]
    """

    def __init__(self, references: Any, centres: Any, starts: Any):
        self.references = np.asarray(references, dtype=np.float64)
        self.centres = np.asarray(centres, dtype=np.float64)
        self.starts = np.asarray(starts, dtype=np.int64)
        n_references, n_features = self.references.shape
        if (
            self.centres.ndim != 2
            or self.centres.shape[1] != n_features
            or self.centres.shape[0] < 1
        ):
            raise ValueError(
                f"neighbour centres have shape {self.centres.shape}, expected "
                f"(n_cells >= 1, {n_features})"
            )
        starts_ok = (
            self.starts.shape == (self.centres.shape[0] + 1,)
            and self.starts[0] == 0
            and self.starts[-1] == n_references
            and bool((np.diff(self.starts) > 0).all())
        )
        if not starts_ok or n_references < 1:
            raise ValueError(
                f"neighbour cells do not cover the {n_references} references in "
                "order, each at least one"
            )
        if not (np.isfinite(self.references).all() and np.isfinite(self.centres).all()):
            raise ValueError("neighbour references or centres are not finite")
        self._reference_norms = np.einsum("ij,ij->i", self.references, self.references)
        self._centre_norms = np.einsum("ij,ij->i", self.centres, self.centres)

    @property
    def n_cells(self) -> int:
        return int(self.centres.shape[0])

    @property
    def probes(self) -> int:
        """Cells searched per row."""
        return min(PROBES, self.n_cells)

    def arrays(self, term: str = "neighbour") -> dict[str, np.ndarray]:
        """What a model file stores for the score term ``term`` (``"neighbour"``
        or ``"known"``), by tensor name (:data:`~ganomaly.model_file.INDEX_TENSORS`):
        references (float32, as the encoded rows are), centres and cell starts."""
        stored = (self.references.astype(np.float32), self.centres, self.starts)
        return dict(zip(INDEX_TENSORS[term], stored, strict=True))

    @classmethod
    def from_arrays(cls, arrays: Any, term: str = "neighbour") -> NeighbourIndex | None:
        """The index of the score term ``term`` that a model's tensors hold (numpy
        arrays or CPU torch tensors, by name), or None where the model has no such
        term."""
        names = INDEX_TENSORS[term]
        if names[0] not in arrays:
            return None
        return cls(*(np.asarray(arrays[name]) for name in names))

    def probed_cells(self, rows: np.ndarray) -> np.ndarray:
        """``(n, probes)``: each row's nearest cells, nearest first (ties to the
        lower cell), by ``|c|^2 - 2 x.c`` on an even number of rows (see
        :meth:`squared_distances`)."""
        products = _products(rows, self.centres, self._centre_norms)
        everywhere = np.arange(rows.shape[0])
        probed = np.empty((rows.shape[0], self.probes), dtype=np.intp)
        for probe in range(self.probes):  # argmin: the first of equal values
            probed[:, probe] = products.argmin(axis=1)
            products[everywhere, probed[:, probe]] = np.inf
        return probed

    def squared_distances(
        self, rows: np.ndarray, gaps: np.ndarray | None = None
    ) -> np.ndarray:
        """The squared Euclidean distance from each row to its nearest reference
        among the cells it probes, float64; a reference equal to the row is
        skipped (the next nearest counts), so that a training row the model keeps
        scores as a new row would (KNN scores its own training rows so), unless
        it is the only candidate.

        A row's result does not depend on the rows around it: the products run on
        an even number of rows (OpenBLAS computes the last row of an odd product
        with another kernel), and the distances themselves are elementwise.

        Parameters
        ----------
        rows : ndarray of shape (n, n_features)
        gaps : ndarray of shape (n, n_features), optional
            Filled, where given, with ``(x - r)^2`` per feature for the reference
            ``r`` that counts (what the distance sums): which features set a row
            apart from its nearest training row, for the explanations.
        """
        n = rows.shape[0]
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, _BLOCK):
            block = np.array(rows[start : start + _BLOCK], dtype=np.float64, order="C")
            stop = start + block.shape[0]
            out[start:stop] = self._search(
                block, None if gaps is None else gaps[start:stop]
            )
        return out

    def _search(self, rows: np.ndarray, gaps: np.ndarray | None) -> np.ndarray:
        n = rows.shape[0]
        probed = self.probed_cells(rows)
        # Per (row, probed cell) pair, the two smallest |r|^2 - 2 x.r in that cell
        # (value, reference); pairs grouped by cell, one product per cell.
        pairs = probed.ravel()
        order = np.argsort(pairs, kind="stable")
        bounds = np.searchsorted(pairs[order], np.arange(self.n_cells + 1))
        values = np.full((pairs.size, 2), np.inf)
        indices = np.zeros((pairs.size, 2), dtype=np.intp)
        for cell in range(self.n_cells):
            asked = order[bounds[cell] : bounds[cell + 1]]  # pair numbers
            if asked.size == 0:
                continue
            first, last = self.starts[cell], self.starts[cell + 1]
            products = _products(
                rows[asked // self.probes],
                self.references[first:last],
                self._reference_norms[first:last],
            )
            everywhere = np.arange(asked.size)
            for k in range(min(2, last - first)):  # argmin: the first of equals
                local = products.argmin(axis=1)
                values[asked, k] = products[everywhere, local]
                indices[asked, k] = first + local
                products[everywhere, local] = np.inf
        # The row's two smallest over its cells: equal values to the lower
        # reference (as ONNX's TopK over all of them).
        values = values.reshape(n, -1)
        indices = indices.reshape(n, -1)
        keep = np.lexsort((indices, values), axis=1)[:, :2]
        values = np.take_along_axis(values, keep, axis=1)
        indices = np.take_along_axis(indices, keep, axis=1)
        gap = rows[:, None, :] - self.references[indices]
        np.square(gap, out=gap)
        distances = gap.sum(axis=2)
        # The nearest is the row itself: the second counts, if there is one.
        itself = (distances[:, 0] == 0) & np.isfinite(values[:, 1])
        if gaps is not None:
            gaps[...] = gap[np.arange(n), itself.astype(np.intp)]
        return np.where(itself, distances[:, 1], distances[:, 0])


def _products(rows: np.ndarray, points: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``|p|^2 - 2 x.p`` for every row and point, float64, the product taken on an
    even number of rows (a zero row added to an odd number)."""
    n = rows.shape[0]
    if n % 2:
        rows = np.concatenate([rows, np.zeros((1, rows.shape[1]))])
    products = rows @ points.T
    products *= -2.0
    products += norms
    return products[:n]


def build_index(
    rows: np.ndarray, n_references: int, rng: np.random.Generator
) -> NeighbourIndex | None:
    """The index of up to ``n_references`` distinct training rows (sampled when
    there are more), cut into at most :data:`CELLS` k-means cells.

    Returns None when ``n_references`` is 0 or there are no rows.
    """
    from sklearn.cluster import KMeans

    n = rows.shape[0]
    if n_references <= 0 or n == 0:
        return None
    if n > n_references:
        rows = rows[np.sort(rng.choice(n, n_references, replace=False))]
    # A repeated row adds nothing to a nearest distance.
    references = np.unique(np.asarray(rows, dtype=np.float32), axis=0)
    references = references.astype(np.float64)
    n_cells = min(CELLS, references.shape[0])
    if n_cells == references.shape[0]:
        centres = references.copy()
    else:
        sample = references
        if sample.shape[0] > _CENTRE_SAMPLE:
            picked = rng.choice(sample.shape[0], _CENTRE_SAMPLE, replace=False)
            sample = sample[np.sort(picked)]
        seed = int(rng.integers(2**31))
        kmeans = KMeans(n_cells, n_init=1, max_iter=50, random_state=seed)
        centres = kmeans.fit(sample).cluster_centers_
    norms = np.einsum("ij,ij->i", centres, centres)
    cell_of = np.empty(references.shape[0], dtype=np.intp)
    for start in range(0, references.shape[0], _BLOCK):
        block = references[start : start + _BLOCK]
        products = _products(block, centres, norms)
        cell_of[start : start + block.shape[0]] = products.argmin(axis=1)
    # Cells that k-means left without a reference are dropped.
    used, cell_of = np.unique(cell_of, return_inverse=True)
    centres = centres[used]
    order = np.argsort(cell_of, kind="stable")
    starts = np.searchsorted(cell_of[order], np.arange(len(used) + 1))
    # Stored as float32 and read back as float64: search what will be stored.
    stored = references[order].astype(np.float32)
    return NeighbourIndex(stored, centres, starts)
