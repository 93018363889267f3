"""The Convolution Weight Distribution Assumption (CWDA, Huang et al. NeurIPS 2021): the trained filters of a conv
layer are roughly i.i.d. samples of a zero-mean Gaussian-alike distribution with a near-diagonal covariance.
Here: the tests we run on it, per conv layer, and the score concentration it predicts.

The paper's exact battery of tests is not known to us; the tests below are OUR
choice: D'Agostino-Pearson K^2 (``scipy.stats.normaltest``), Anderson-Darling and Shapiro-Wilk (on a seeded
subsample: its p-value is unreliable above 5000 values) on the layer's weights pooled, a one-sample t-test of
zero mean, and the off-diagonal mass of the filters' covariance next to that of Gaussian filters of the same shape.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .prune.criteria import geometric_median, l1, l2

# CV = std / mean of a layer's scores for i.i.d. N(0, s^2) filters of length d: for L2 ~ chi_d,
# CV ~ 1/sqrt(2d); for L1 (sum of d half-normals), CV = sqrt(pi/2 - 1)/sqrt(d) = 0.756/sqrt(d).
CV_L1_CONST = math.sqrt(math.pi / 2 - 1)
SHAPIRO_MAX = 5000


def cv_prediction(criterion: str, d) -> np.ndarray:
    """The i.i.d.-Gaussian prediction of a layer's score CV for filters of length ``d`` (criterion l1 or l2)."""
    d = np.asarray(d, dtype=float)
    if criterion == "l2":
        return 1.0 / np.sqrt(2 * d)
    if criterion == "l1":
        return CV_L1_CONST / np.sqrt(d)
    raise ValueError(f"no closed-form CV prediction for {criterion!r}; known: l1, l2")


def filters(weight: torch.Tensor) -> np.ndarray:
    """(out, d) float64 array of the flattened filters, d = in * kh * kw."""
    return weight.detach().flatten(1).double().cpu().numpy()


def anderson_darling(x: np.ndarray) -> tuple[float, bool]:
    """(A^2 statistic, whether normality is rejected at 5%) of ``scipy.stats.anderson`` (mean and variance
    estimated): by its interpolated p-value on SciPy >= 1.17, by its 5% critical value before."""
    try:
        r = stats.anderson(x, dist="norm", method="interpolate")
        return float(r.statistic), bool(r.pvalue < 0.05)
    except TypeError:  # SciPy < 1.17: no ``method``; critical values only
        r = stats.anderson(x, dist="norm")
        crit = r.critical_values[list(r.significance_level).index(5.0)]
        return float(r.statistic), bool(r.statistic > crit)


def normality_tests(weight: torch.Tensor, seed: int = 0, shapiro_n: int = SHAPIRO_MAX) -> dict:
    """Our normality battery on the layer's weights pooled: K^2 and Anderson-Darling on all of them, Shapiro-Wilk
    on a seeded subsample of ``shapiro_n``; plus skewness and excess kurtosis (0 and 0 for a Gaussian)."""
    w = filters(weight).ravel()
    k2 = stats.normaltest(w)
    ad_stat, ad_reject = anderson_darling(w)
    sub = np.random.default_rng(seed).choice(w, size=min(shapiro_n, len(w)), replace=False)
    sw = stats.shapiro(sub)
    return dict(n_weights=len(w), skew=float(stats.skew(w)), excess_kurtosis=float(stats.kurtosis(w)),
                k2_stat=float(k2.statistic), k2_p=float(k2.pvalue), ad_stat=ad_stat, ad_reject_5pct=ad_reject,
                shapiro_n=len(sub), shapiro_stat=float(sw.statistic), shapiro_p=float(sw.pvalue))


def zero_mean_test(weight: torch.Tensor) -> dict:
    """One-sample t-test of mean 0 over the layer's weights, and |mean| / std (the effect size, which matters more
    than the p-value when a layer has 10^5-10^6 weights)."""
    w = filters(weight).ravel()
    t = stats.ttest_1samp(w, 0.0)
    return dict(mean=float(w.mean()), std=float(w.std(ddof=1)), mean_over_std=float(abs(w.mean()) / w.std(ddof=1)),
                t_stat=float(t.statistic), t_p=float(t.pvalue))


def covariance(weight: torch.Tensor, max_dims: int | None = None, seed: int = 0) -> np.ndarray:
    """(d, d) sample covariance of the layer's flattened filters (each filter one sample); with ``max_dims``, of
    a seeded random subset of that many of the d coordinates (a d = 4608 layer has a 4608 x 4608 covariance;
    the mean off-diagonal mass over a random subset estimates the whole one's)."""
    x = filters(weight)
    if max_dims is not None and x.shape[1] > max_dims:
        x = x[:, np.sort(np.random.default_rng(seed).choice(x.shape[1], max_dims, replace=False))]
    return np.atleast_2d(np.cov(x, rowvar=False))


def offdiag_ratio(cov: np.ndarray) -> float:
    """Mean |off-diagonal entry| / mean diagonal entry: 0 for a diagonal covariance.  A sample covariance of n
    filters has off-diagonal noise of order sqrt(1/n) even for independent components, so compare with
    ``gaussian_offdiag_ratio`` of the same shape."""
    d = cov.shape[0]
    if d < 2:
        return 0.0
    off = np.abs(cov[~np.eye(d, dtype=bool)]).mean()
    return float(off / np.diag(cov).mean())


def gaussian_offdiag_ratio(n: int, d: int, seed: int = 0) -> float:
    """``offdiag_ratio`` of n i.i.d. N(0, I_d) filters: the value a truly diagonal covariance gives at that size
    (it does not depend on d beyond d >= 2, so pass d = min(d, max_dims))."""
    x = np.random.default_rng(seed).standard_normal((n, d))
    return offdiag_ratio(np.atleast_2d(np.cov(x, rowvar=False)))


def score_cv(scores) -> float:
    """Coefficient of variation std / mean of one layer's scores (std with ddof=1)."""
    s = np.asarray(scores.detach().double().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=float)
    return float(s.std(ddof=1) / s.mean())


CV_CRITERIA = {"l1": l1, "l2": l2, "gm": geometric_median}


def layer_table(model: torch.nn.Module, seed: int = 0, max_dims: int = 512) -> pd.DataFrame:
    """One row per conv layer of ``model.conv_layers()``: shape (n filters, d), the normality battery, the
    zero-mean test, the covariance's off-diagonal ratio over at most ``max_dims`` coordinates (and its Gaussian
    control of the same shape), and the CV of L1/L2/GM scores with the i.i.d.-Gaussian predictions."""
    modules = dict(model.named_modules())
    rows = []
    for layer in model.conv_layers():
        w = modules[layer.conv].weight
        n, d = w.shape[0], w[0].numel()
        row = dict(layer=layer.id, module=layer.conv, n_filters=n, d=d, kernel=f"{w.shape[2]}x{w.shape[3]}")
        row.update(normality_tests(w, seed))
        row.update(zero_mean_test(w))
        row["offdiag_ratio"] = offdiag_ratio(covariance(w, max_dims, seed))
        row["offdiag_ratio_gaussian"] = gaussian_offdiag_ratio(n, min(d, max_dims), seed)
        for c, fn in CV_CRITERIA.items():
            row[f"cv_{c}"] = score_cv(fn(w))
        row["cv_l1_pred"] = float(cv_prediction("l1", d))
        row["cv_l2_pred"] = float(cv_prediction("l2", d))
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


def synthetic_cv(shapes: Iterable[tuple], seed: int = 0) -> pd.DataFrame:
    """The control: CV of L1/L2/GM scores of i.i.d. N(0, 1) filters with the given (n filters, d) shapes."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n, d in shapes:
        w = torch.randn(n, d, generator=g, dtype=torch.float64)
        rows.append(dict(n_filters=n, d=d, **{f"cv_{c}": score_cv(fn(w)) for c, fn in CV_CRITERIA.items()}))
    return pd.DataFrame(rows)


# A layer's L2 CV within this factor of the i.i.d. prediction (above or below) counts as concentrating as CWDA
# predicts; the Gaussian control lands at ~1x, the trained layers of the book's VGG-16 at 1.5-12x.
CONCENTRATION_FACTOR = 2.0


def cwda_parts(layers: pd.DataFrame, alpha: float = 0.05) -> dict:
    """The parts of CWDA a trained model's conv layers (:func:`layer_table`) can be held to: how many layers keep
    a zero mean (the t-test does not reject it at ``alpha``), how many concentrate as i.i.d. filters would (L2's
    CV within :data:`CONCENTRATION_FACTOR` of 1/sqrt(2d)); a part holds in a model when it holds in at least half
    of its layers.  "Gaussian-alike" is a shape, not a test: the excess kurtosis range is reported."""
    ratio = layers.cv_l2 / layers.cv_l2_pred
    n = len(layers)
    within = (ratio <= CONCENTRATION_FACTOR) & (ratio >= 1 / CONCENTRATION_FACTOR)
    zero, conc = int((layers.t_p >= alpha).sum()), int(within.sum())
    return dict(layers=n, zero_mean=zero, concentrates=conc, zero_mean_holds=n > 0 and 2 * zero >= n,
                concentration_holds=n > 0 and 2 * conc >= n, cv_ratio_median=float(ratio.median()),
                kurtosis=(float(layers.excess_kurtosis.min()), float(layers.excess_kurtosis.max())))
