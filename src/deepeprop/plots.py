"""Figures of a training run (matplotlib's object API on an Agg canvas: no display needed, and no
back-end is switched for the importing program, since ``matplotlib.pyplot`` is never imported).

* :func:`learning_curves` -- train/test loss and the test metric against iterations, with chance level.
* :func:`raster` -- spikes of every hidden layer for one example (spiking models).
* :func:`readout_over_time` -- the readout (softmax for classification) of one example over time, with
  the steps where the label counts shaded.
"""
from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(figsize: tuple[float, float]) -> Figure:
    """A figure on its own Agg canvas (never registered with pyplot, so nothing to close)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str) -> str:
    """Write ``fig`` to ``path`` atomically (a temporary file, then ``os.replace``); returns ``path``."""
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def learning_curves(rows: list[dict], path: str, *, metric_name: str, chance: float | None = None,
                    title: str = "") -> str:
    """``rows``: the lines of ``metrics.jsonl`` (``iteration``, ``train_loss``, ``test_loss``, ``test_metric``)."""
    it = np.array([r["iteration"] for r in rows], dtype=float)
    fig = _figure((9, 3.4))
    ax_loss, ax_metric = fig.subplots(1, 2)
    for key, label in (("train_loss", "train loss"), ("test_loss", "test loss")):
        values = np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)
        ax_loss.plot(it, values, marker=".", label=label)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss (sum over time)")
    ax_loss.legend()
    ax_metric.plot(it, [r["test_metric"] for r in rows], marker=".", color="C2", label=f"test {metric_name}")
    if chance is not None:
        ax_metric.axhline(chance, color="gray", linestyle="--", label="chance")
    ax_metric.set_xlabel("iteration")
    ax_metric.set_ylabel(metric_name)
    ax_metric.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def raster(zs: list, path: str, *, title: str = "") -> str:
    """``zs``: per hidden layer, the spikes ``(T, n_l)`` of one example."""
    fig = _figure((8, 1.2 + 1.3 * len(zs)))
    axes = fig.subplots(len(zs), 1, sharex=True, squeeze=False)
    for index, (ax, z) in enumerate(zip(axes[:, 0], zs)):
        t, n = np.nonzero(np.asarray(z) > 0)
        ax.scatter(t, n, s=max(2.0, 600.0 / np.asarray(z).shape[0]), marker="|", color="k")
        ax.set_ylabel(f"layer {index + 1}")
        ax.set_ylim(-0.5, np.asarray(z).shape[1] - 0.5)
    axes[-1, 0].set_xlabel("time step")
    axes[0, 0].set_xlim(-0.5, np.asarray(zs[0]).shape[0] - 0.5)
    if title:
        axes[0, 0].set_title(title)
    return _save(fig, path)


def readout_over_time(y, path: str, *, mask=None, label: int | None = None, classification: bool = True,
                      title: str = "") -> str:
    """``y`` (T, n_out) readout of one example; ``mask`` (T,) the steps where the loss counts."""
    y = np.asarray(y, dtype=float)
    if classification:
        y = np.exp(y - y.max(axis=-1, keepdims=True))
        y = y / y.sum(axis=-1, keepdims=True)
    fig = _figure((8, 3))
    ax = fig.subplots()
    for k in range(y.shape[1]):
        ax.plot(y[:, k], label=f"{k}" + (" (label)" if label == k else ""),
                linewidth=2.5 if label == k else 1.0)
    if mask is not None:
        on = np.nonzero(np.asarray(mask) > 0)[0]
        if on.size:
            ax.axvspan(on[0] - 0.5, on[-1] + 0.5, color="gray", alpha=0.2, label="loss window")
    ax.set_xlabel("time step")
    ax.set_ylabel("softmax of readout" if classification else "readout")
    ax.legend(fontsize=7, ncol=min(y.shape[1] + 1, 6))
    if title:
        ax.set_title(title)
    return _save(fig, path)
