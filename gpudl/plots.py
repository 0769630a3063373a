"""Training curves (matplotlib, the optional ``plots`` extra)."""
from __future__ import annotations


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install gpudl[plots]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, tight=True):
    """Write ``fig`` to ``path`` (PNG, 100 dpi), laid out tightly unless ``tight=False``
    (figures with their own grid), and free it; returns ``path``."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def plot_history(history, path, title=None):
    """Loss and accuracy per epoch (training and validation) into one PNG."""
    h = history.history if hasattr(history, "history") else dict(history)
    if not h.get("loss"):
        raise ValueError("plot_history expected a History with at least one epoch of 'loss'")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(h["loss"]) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        for k, style in ((key, "-o"), (f"val_{key}", "--s")):
            if k in h:
                ax.plot(epochs, h[k], style, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
