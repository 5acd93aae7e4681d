"""A synthetic card-transactions table with a known, documented fraud pattern.

Used by ``ganomaly demo``, the tests and the documentation examples: no download, fully
determined by ``random_state``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["MERCHANT_CATEGORIES", "make_transactions"]

# category: (share of normal transactions, median amount, share card-present)
MERCHANT_CATEGORIES: dict[str, tuple[float, float, float]] = {
    "grocery": (0.28, 38.0, 0.97),
    "restaurant": (0.18, 27.0, 0.95),
    "fuel": (0.12, 52.0, 0.98),
    "online_retail": (0.16, 64.0, 0.05),
    "travel": (0.06, 310.0, 0.40),
    "electronics": (0.08, 180.0, 0.60),
    "jewelry": (0.02, 260.0, 0.80),
    "gambling": (0.02, 90.0, 0.10),
    "pharmacy": (0.08, 22.0, 0.96),
}
_FRAUD_CATEGORIES = ("electronics", "jewelry", "gambling", "online_retail")


def make_transactions(
    n_samples: int = 10_000,
    fraud_fraction: float = 0.01,
    random_state: int | np.random.Generator | None = None,
    *,
    return_X_y: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Generate card transactions, a known share of them fraudulent.

    Normal transactions follow everyday patterns: the merchant category sets the
    typical (log-normal) amount and whether the card is present; purchases happen
    mostly by day, close to home, a few per day, from accounts of all ages; 2 % are
    abroad.

    **The fraud pattern.** Every fraud is a purchase in a high-risk category
    (electronics, jewelry, gambling or online retail) with an amount 2 to 6 times
    that category's typical amount, and shows at least two of these four further
    signals (each with probability 0.6, re-drawn until two hold):
    card not present, night time (0-5 h), far from home (200-3000 km, often abroad),
    a burst of 8-25 transactions in the last 24 h.  Frauds also come from younger
    accounts on average.  No single column separates the classes: only the
    combination does, which is what an anomaly detector has to find.

    Missing values, as in real exports: ``distance_from_home_km`` is missing for 4 %
    of rows (no geolocation) and ``merchant_category`` for 1 %.

    Parameters
    ----------
    n_samples : int, default=10000
        Number of rows.
    fraud_fraction : float, default=0.01
        Share of fraudulent rows, in [0, 1); the count is ``round(n_samples *
        fraud_fraction)``.
    random_state : int, numpy Generator or None, default=None
        Seed for reproducible tables.
    return_X_y : bool, default=False
        Return ``(X, y)`` (features without the id and label columns, and the 0/1
        labels) instead of one DataFrame.

    Returns
    -------
    DataFrame, or (DataFrame, ndarray)
        Columns ``transaction_id`` (str), ``amount`` (float), ``merchant_category``
        (str, may be missing), ``hour`` (int 0-23), ``distance_from_home_km`` (float,
        may be missing), ``n_transactions_24h`` (int), ``account_age_days`` (int),
        ``card_present`` (0/1), ``foreign`` (0/1) and ``is_fraud`` (0/1), in shuffled
        order.

    Examples
    --------
    >>> from ganomaly.datasets import make_transactions
    >>> df = make_transactions(1000, fraud_fraction=0.02, random_state=0)
    >>> df.shape, int(df["is_fraud"].sum())
    ((1000, 10), 20)
    >>> X, y = make_transactions(200, random_state=0, return_X_y=True)
    >>> list(X.columns)[:3]
    ['amount', 'merchant_category', 'hour']
    """
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if not 0 <= fraud_fraction < 1:
        raise ValueError(f"fraud_fraction must be in [0, 1), got {fraud_fraction!r}")
    rng = np.random.default_rng(random_state)
    n_fraud = int(round(n_samples * fraud_fraction))
    n_normal = n_samples - n_fraud

    names = list(MERCHANT_CATEGORIES)
    shares = np.array([MERCHANT_CATEGORIES[c][0] for c in names])
    normal_category = rng.choice(names, size=n_normal, p=shares / shares.sum())
    fraud_category = rng.choice(
        _FRAUD_CATEGORIES, size=n_fraud, p=[0.35, 0.2, 0.15, 0.3]
    )
    category = np.concatenate([normal_category, fraud_category])
    median_amount = np.array([MERCHANT_CATEGORIES[c][1] for c in category])
    present_share = np.array([MERCHANT_CATEGORIES[c][2] for c in category])

    is_fraud = np.r_[np.zeros(n_normal, dtype=int), np.ones(n_fraud, dtype=int)]
    fraud = is_fraud == 1

    amount = median_amount * rng.lognormal(0.0, 0.6, n_samples)
    amount[fraud] = median_amount[fraud] * rng.uniform(2, 6, n_fraud)

    hour = np.clip(np.round(rng.normal(14, 4, n_samples)), 0, 23).astype(int)
    card_present = (rng.random(n_samples) < present_share).astype(int)
    distance = rng.lognormal(np.log(6), 0.9, n_samples)
    foreign = (rng.random(n_samples) < 0.02).astype(int)
    distance[foreign == 1] = rng.uniform(300, 3000, int(foreign.sum()))
    n_24h = rng.poisson(2.5, n_samples) + 1
    account_age = rng.gamma(2.0, 600.0, n_samples)

    # At least two of the four further fraud signals per fraud.
    signals = rng.random((n_fraud, 4)) < 0.6
    while (too_few := signals.sum(axis=1) < 2).any():
        signals[too_few] = rng.random((int(too_few.sum()), 4)) < 0.6
    index = np.flatnonzero(fraud)
    card_present[index[signals[:, 0]]] = 0
    hour[index[signals[:, 1]]] = rng.integers(0, 6, int(signals[:, 1].sum()))
    far = index[signals[:, 2]]
    distance[far] = rng.uniform(200, 3000, far.size)
    foreign[far] = (rng.random(far.size) < 0.7).astype(int)
    burst = index[signals[:, 3]]
    n_24h[burst] = rng.integers(8, 26, burst.size)
    account_age[fraud] = rng.gamma(1.5, 150.0, n_fraud)

    distance = np.round(distance, 1)
    distance[rng.random(n_samples) < 0.04] = np.nan
    category = category.astype(object)
    category[rng.random(n_samples) < 0.01] = None

    order = rng.permutation(n_samples)
    frame = pd.DataFrame(
        {
            "transaction_id": [f"T{i:07d}" for i in range(1, n_samples + 1)],
            "amount": np.round(amount, 2)[order],
            "merchant_category": category[order],
            "hour": hour[order],
            "distance_from_home_km": distance[order],
            "n_transactions_24h": n_24h[order],
            "account_age_days": np.round(account_age).astype(int)[order] + 1,
            "card_present": card_present[order],
            "foreign": foreign[order],
            "is_fraud": is_fraud[order],
        }
    )
    if return_X_y:
        X = frame.drop(columns=["transaction_id", "is_fraud"])
        return X, frame["is_fraud"].to_numpy()
    return frame
