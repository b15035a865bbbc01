"""Linear probes of learned codes (pure NumPy): how much of each true factor a code holds.

For a code ``c`` (``[N, D]``) and a true factor group ``y`` (``[N, F]``), a ridge regression
``y ≈ standardise(c) W + b`` is fitted on a train split and scored by R² on a held-out split. The
factor-by-code table of R² is the measured disentanglement (the papers never measured it): a
disentangled representation has a dominant diagonal (each code predicts its own factor, R² near 1,
and nothing else, R² near 0).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float = 1e-2):
    """Ridge regression on standardised inputs.

    Args:
      x: ``[N, D]`` inputs.
      y: ``[N, F]`` targets.
      alpha: L2 penalty per sample (the normal equations use ``alpha * N``).

    Returns:
      ``(mean [D], scale [D], weights [D, F], bias [F])``; predict with :func:`ridge_predict`.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(
            f"ridge_fit: need x [N, D] and y [N, F] with N >= 2, got {x.shape}, {y.shape}"
        )
    mean = x.mean(0)
    scale = x.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (x - mean) / scale
    y_mean = y.mean(0)
    gram = z.T @ z + alpha * len(z) * np.eye(z.shape[1])
    weights = np.linalg.solve(gram, z.T @ (y - y_mean))
    return mean, scale, weights, y_mean


def ridge_predict(params, x: np.ndarray) -> np.ndarray:
    """``[N, D] -> [N, F]`` with the parameters of :func:`ridge_fit`."""
    mean, scale, weights, bias = params
    return ((np.asarray(x, np.float64) - mean) / scale) @ weights + bias


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination averaged over target dimensions (uniform average).

    ``R²_f = 1 − Σ(y − ŷ)² / Σ(y − ȳ)²`` per column ``f``; columns without variance are skipped.
    1 is a perfect prediction, 0 the mean's, negative worse than the mean.

    Args:
      y_true, y_pred: ``[N, F]`` (or ``[N]``).
    """
    y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    total = np.sum(np.square(y_true - y_true.mean(0)), axis=0)
    keep = total > 1e-12 * max(float(total.max(initial=0.0)), 1e-30)
    if not np.any(keep):
        return float("nan")
    resid = np.sum(np.square(y_true - y_pred), axis=0)
    return float(np.mean(1.0 - resid[keep] / total[keep]))


def probe_r2(x_train, y_train, x_test, y_test, alpha: float = 1e-2) -> float:
    """Held-out R² of a ridge probe fitted on the train split."""
    return r2_score(y_test, ridge_predict(ridge_fit(x_train, y_train, alpha), x_test))


def probe_r2_per_dim(x_train, y_train, x_test, y_test, alpha: float = 1e-2) -> list[float]:
    """Held-out R² of each target dimension ``[F]`` (the terms :func:`probe_r2` averages)."""
    pred = ridge_predict(ridge_fit(x_train, y_train, alpha), x_test)
    y_test = np.asarray(y_test).reshape(len(y_test), -1)
    return [r2_score(y_test[:, f], pred[:, f]) for f in range(y_test.shape[1])]


def kernel_probe_r2(x_train, y_train, x_test, y_test, alpha: float = 1e-2) -> float:
    """Held-out R² of an RBF kernel-ridge probe (a nonlinear reading of the same code).

    Contrastive codes spread over the sphere and need not be linear in a factor's parameters;
    this probe tells "the factor is in the code, non-linearly" from "the factor is absent". Inputs
    are standardised with the train split's statistics, the bandwidth is the median train
    pairwise distance, and ``(K + alpha N I) c = y - ȳ`` is solved exactly.
    """
    x_train = np.asarray(x_train, np.float64)
    x_test = np.asarray(x_test, np.float64)
    y_train = np.asarray(y_train, np.float64).reshape(len(y_train), -1)
    mean, scale = x_train.mean(0), np.where(x_train.std(0) > 1e-12, x_train.std(0), 1.0)
    a, b = (x_train - mean) / scale, (x_test - mean) / scale

    def sq_dist(u, v):
        return np.maximum(
            np.sum(u * u, 1)[:, None] + np.sum(v * v, 1)[None, :] - 2.0 * u @ v.T, 0.0
        )

    d_train = sq_dist(a, a)
    bandwidth_sq = max(float(np.median(d_train[np.triu_indices(len(a), 1)])), 1e-12)
    gram = np.exp(-0.5 * d_train / bandwidth_sq)
    y_mean = y_train.mean(0)
    coef = np.linalg.solve(gram + alpha * len(a) * np.eye(len(a)), y_train - y_mean)
    pred = np.exp(-0.5 * sq_dist(b, a) / bandwidth_sq) @ coef + y_mean
    return r2_score(y_test, pred)


def probe_table(
    codes: Mapping[str, tuple[np.ndarray, np.ndarray]],
    factors: Mapping[str, tuple[np.ndarray, np.ndarray]],
    alpha: float = 1e-2,
    kernel: bool = False,
) -> dict[str, dict[str, float]]:
    """``{code: {factor: held-out R²}}`` for every pair.

    Args:
      codes: ``{name: (train [N, D], test [M, D])}``.
      factors: ``{name: (train [N, F], test [M, F])}`` true factors of the same samples.
      alpha: ridge penalty.
      kernel: use :func:`kernel_probe_r2` instead of the linear :func:`probe_r2`.
    """
    fn = kernel_probe_r2 if kernel else probe_r2
    return {
        c: {f: fn(ctr, ftr, cte, fte, alpha) for f, (ftr, fte) in factors.items()}
        for c, (ctr, cte) in codes.items()
    }


def diagonal_summary(
    table: Mapping[str, Mapping[str, float]],
    own: Mapping[str, str],
    targets: Sequence[str] | None = None,
    own_min: float = 0.9,
    other_max: float = 0.1,
) -> dict:
    """Own-factor R² and the largest R² on another target factor, per code.

    Args:
      table: from :func:`probe_table`.
      own: ``{code: its own factor}``.
      targets: the factors that count as "other" (default: the own factors of all codes; nuisance
        columns such as head pose are reported in the table but not judged).
      own_min, other_max: the goal (own R² >= 0.9, others <= 0.1).

    Returns:
      ``{"codes": {code: {"own", "max_other", "max_other_factor"}}, "goal_met": bool}``.
    """
    targets = list(dict.fromkeys(own.values())) if targets is None else list(targets)
    out, met = {}, True
    for code, factor in own.items():
        row = table[code]
        others = {f: row[f] for f in targets if f != factor and f in row}
        worst = max(others, key=lambda f: row[f]) if others else None
        out[code] = {
            "own": row[factor],
            "max_other": row[worst] if worst else None,
            "max_other_factor": worst,
        }
        met &= bool(row[factor] >= own_min and (worst is None or row[worst] <= other_max))
    return {"codes": out, "goal_met": met, "own_min": own_min, "other_max": other_max}


def markdown_table(table: Mapping[str, Mapping[str, float]], own: Mapping[str, str]) -> str:
    """The R² table as markdown; own-factor cells in bold."""
    factors = list(next(iter(table.values())))
    lines = [
        "| code | " + " | ".join(factors) + " |",
        "|---|" + "---:|" * len(factors),
    ]
    for code, row in table.items():
        cells = []
        for f in factors:
            text = f"{row[f]:.3f}"
            cells.append(f"**{text}**" if own.get(code) == f else text)
        lines.append(f"| {code} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_heatmap(table: Mapping[str, Mapping[str, float]], path: str | pathlib.Path, title=""):
    """Writes the R² table as an annotated heatmap PNG (R² clipped to [0, 1] for colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = list(table)
    factors = list(next(iter(table.values())))
    values = np.array([[table[c][f] for f in factors] for c in codes])
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(factors), 1.0 + 0.6 * len(codes)))
    ax.imshow(np.clip(values, 0.0, 1.0), cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(factors)), factors, rotation=30, ha="right")
    ax.set_yticks(range(len(codes)), codes)
    for i in range(len(codes)):
        for j in range(len(factors)):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center",
                    color="black" if values[i, j] > 0.5 else "white", fontsize=9)  # fmt: skip
    ax.set_xlabel("true factor")
    ax.set_ylabel("learned code")
    ax.set_title(title or "held-out linear-probe R²")
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(workdir: str | pathlib.Path, name: str, table, own, title: str = "") -> None:
    """``WORKDIR/<name>.md`` (markdown table) and ``WORKDIR/<name>.png`` (heatmap)."""
    workdir = pathlib.Path(workdir)
    summary = diagonal_summary(table, own)
    text = f"# {title or name}\n\nHeld-out linear-probe R² (ridge; rows: codes, columns: true "
    text += "factors; own factor in bold).\n\n" + markdown_table(table, own)
    text += f"\nGoal (own >= {summary['own_min']}, others <= {summary['other_max']}): "
    text += ("met" if summary["goal_met"] else "not met") + "\n\n```json\n"
    text += json.dumps(summary["codes"], indent=1) + "\n```\n"
    (workdir / f"{name}.md").write_text(text)
    save_heatmap(table, workdir / f"{name}.png", title)
