"""Figures for the analysis commands (matplotlib, imported only when plotting).

Install with `pip install keras_resnets[analysis]`.
"""

from __future__ import annotations

from keras_resnets._optional import require
from keras_resnets.utils import atomic_write


def _figure(rows: int, cols: int, figsize, **kwargs):
    """A matplotlib Figure with its axes, without pyplot (no display, no global state)."""
    figure = require("matplotlib.figure", "The analysis plots")
    fig = figure.Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=False, **kwargs)[0]


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, path: str) -> str:
    with atomic_write(path) as tmp:  # never a half-written figure under the final name
        fig.savefig(tmp, dpi=80, bbox_inches="tight", format="png")
    return path


def plot_gradient_norms(norms: dict[str, list[dict]], path: str, title: str = "") -> str:
    """Per-layer gradient norms of several models on one log-scale figure.

    Args:
        norms: `{label: gradient_norms(...) result}`.
        path: the PNG to write.
        title: figure title.

    Returns:
        `path`.
    """
    fig, (ax,) = _figure(1, 1, (7, 4))
    for label, rows in norms.items():
        style = "--" if "plain" in label.lower() else "-"
        ax.plot(
            [r["index"] + 1 for r in rows],
            [r["norm"] for r in rows],
            style,
            marker=".",
            label=label,
        )
    ax.set_yscale("log")
    ax.set_xlabel("layer (input to output)")
    ax.set_ylabel("||d loss / d kernel||")
    ax.set_title(title or "Gradient norm per layer")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_degradation(histories: dict[str, dict], path: str, title: str = "") -> str:
    """Training and test error per epoch, side by side (He et al. 2015, Figure 6).

    Args:
        histories: `{model name: history}` with per-epoch `accuracy` and
            `val_accuracy` lists. Plain networks are drawn dashed.
        path: the PNG to write.
        title: figure title.

    Returns:
        `path`.
    """
    fig, axes = _figure(1, 2, (11, 4), sharey=True)
    colors = {}
    for name, history in histories.items():
        depth = "".join(ch for ch in name if ch.isdigit())
        color = colors.setdefault(depth, f"C{len(colors)}")
        style = "--" if name.lower().startswith("plain") else "-"
        for ax, key in zip(axes, ("accuracy", "val_accuracy"), strict=True):
            values = history.get(key) or []
            epochs = range(1, len(values) + 1)
            ax.plot(epochs, [100 * (1 - v) for v in values], style, color=color, label=name)
    axes[0].set_title("training error")
    axes[1].set_title("held-out (validation) error")
    for ax in axes:
        _integer_ticks(ax)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("error (%)")
    axes[1].legend()
    if title:
        fig.suptitle(title, y=1.03)
    return _save(fig, path)


def plot_lesion(results: list[dict], path: str, title: str = "") -> str:
    """Lesion-study figure: error per deleted block, error against k deletions.

    The blocks are labelled `{stage}.{k}` and grey lines separate the
    stages, both from the stages the model recorded (`lesion_study`'s
    `stage` per block).

    Args:
        results: `lesion_study` results (one per model).
        path: the PNG to write.
        title: figure title.

    Returns:
        `path`.
    """
    has_swaps = any(r["swaps"] for r in results)
    panels = 3 if has_swaps else 2
    fig, axes = _figure(1, panels, (5.5 * panels, 4))
    width = 0.8 / max(len(results), 1)
    for i, result in enumerate(results):
        color = f"C{i}"
        single = result["single"]
        xs = [j + i * width for j in range(len(single))]
        errors = [100 * s["error"] if s["error"] is not None else 0.0 for s in single]
        axes[0].bar(xs, errors, width=width, color=color, label=result["model"])
        for x, s in zip(xs, single, strict=True):
            if s["error"] is None:
                axes[0].text(x, 2, "x", ha="center", va="bottom", color=color, fontsize=12)
        axes[0].axhline(100 * result["baseline_error"], color=color, linestyle=":")
        if result["deletions"]:
            ks = [0] + [d["k"] for d in result["deletions"]]
            means = [100 * result["baseline_error"]] + [
                100 * d["mean"] for d in result["deletions"]
            ]
            stds = [0.0] + [100 * d["std"] for d in result["deletions"]]
            axes[1].errorbar(ks, means, yerr=stds, marker="o", color=color, label=result["model"])
        if has_swaps and result["swaps"]:
            ss = [0] + [d["swaps"] for d in result["swaps"]]
            means = [100 * result["baseline_error"]] + [100 * d["mean"] for d in result["swaps"]]
            stds = [0.0] + [100 * d["std"] for d in result["swaps"]]
            axes[2].errorbar(ss, means, yerr=stds, marker="o", color=color, label=result["model"])
    names = _block_labels(results[0]["single"])
    for j in _stage_starts(results[0]["single"])[1:]:
        axes[0].axvline(j - 0.5 + width * (len(results) - 1) / 2, color="0.6", linewidth=0.8)
    axes[0].set_xticks(
        [j + width * (len(results) - 1) / 2 for j in range(len(names))], names, rotation=90
    )
    axes[0].set_ylabel("test error (%)")
    axes[0].set_title("delete one block (dotted: nothing deleted; x: not removable)")
    axes[1].set_xlabel("blocks deleted at random (k)")
    axes[1].set_ylabel("test error (%)")
    axes[1].set_title("delete k blocks")
    _integer_ticks(axes[1])
    if has_swaps:
        _integer_ticks(axes[2])
        axes[2].set_xlabel("random swaps of two blocks")
        axes[2].set_title("reorder blocks")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, y=1.03)
    return _save(fig, path)


def _stage_starts(single: list[dict]) -> list[int]:
    """Positions of the first block of each recorded stage."""
    return [j for j, s in enumerate(single) if j == 0 or s["stage"] != single[j - 1]["stage"]]


def _block_labels(single: list[dict]) -> list[str]:
    """`{stage}.{k}`: the block's recorded stage and its position in it (from 1)."""
    labels, counts = [], {}
    for s in single:
        counts[s["stage"]] = counts.get(s["stage"], 0) + 1
        labels.append(f"{s['stage']}.{counts[s['stage']]}")
    return labels


def plot_paths(result: dict, path: str, title: str = "") -> str:
    """Veit et al.'s Figure 6: path lengths, gradient per path, total by length.

    Args:
        result: a `gradient_by_path_length` result.
        path: the PNG to write.
        title: figure title.

    Returns:
        `path`.
    """
    fig, axes = _figure(1, 3, (15, 4))
    lengths = result["length"]
    axes[0].bar(lengths, result["fraction"], color="C0")
    axes[0].set_title(f"path lengths ({result['num_blocks']} blocks)")
    axes[0].set_ylabel("fraction of paths")
    measured = [(k, g) for k, g in zip(lengths, result["gradient_norm"], strict=True) if g > 0]
    if measured:
        axes[1].plot(*zip(*measured, strict=True), marker="o", color="C1")
    axes[1].set_yscale("log")
    axes[1].set_title("gradient magnitude per path")
    axes[1].set_ylabel("||d loss / d input||")
    axes[2].bar(lengths, result["contribution_fraction"], color="C2")
    low, high = result["effective_range"]
    axes[2].axvspan(low - 0.5, high + 0.5, color="C2", alpha=0.15)
    axes[2].set_title(
        f"total gradient (shaded: {low}-{high}, "
        f"{100 * result['effective_path_fraction']:.2g}% of paths)"
    )
    axes[2].set_ylabel("share of total gradient")
    for ax in axes:
        ax.set_xlabel("path length (residual branches on the path)")
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, y=1.03)
    return _save(fig, path)


def plot_schedule(schedules: dict[str, list[float]], path: str, title: str = "") -> str:
    """Survival probability per block for one or more stochastic-depth settings.

    Args:
        schedules: `{label: [p_1, ..., p_L]}`.
        path: the PNG to write.
        title: figure title.

    Returns:
        `path`.
    """
    fig, (ax,) = _figure(1, 1, (7, 4))
    for label, probabilities in schedules.items():
        ax.plot(range(1, len(probabilities) + 1), probabilities, marker=".", label=label)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("residual block l")
    ax.set_ylabel("survival probability p_l")
    ax.set_title(title or "Stochastic depth: linear decay of survival probability")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)
