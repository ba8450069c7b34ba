"""The compression trade-off as a picture: one point per variant, perplexity against size on disk,
its area the decode speed, an arrow from each variant's parent (base -> pruned -> quantized)."""

from __future__ import annotations

from pathlib import Path


def step_label(report: dict) -> str:
    """A step's report as summaries show it: its kind and what it reached or ran."""
    if "sparsity" in report:
        return f"{report['step']} {report['sparsity']:.0%}"
    if "steps" in report:
        best = report.get("exported_step")
        return (f"{report['step']} {report['steps']} steps" + (f" (KD {report['kd_alpha']:g})" if "kd_alpha" in report else "")
                + (f", best at step {best}" if best and best != report["steps"] else ""))
    return report["step"]


def tradeoff_plot(metrics: dict[str, dict], parents: dict[str, str], output: Path) -> Path:
    """metrics: variant -> evaluation metrics (perplexity, size_bytes, decode_tokens_per_s_b1), base
    included; parents: variant -> the variant it was built from. Writes a PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    speed = {name: m["decode_tokens_per_s_b1"] for name, m in metrics.items()}
    fastest = max(speed.values())
    for name, m in metrics.items():
        x, y = m["size_bytes"] / 2**20, m["perplexity"]
        axes.scatter(x, y, s=60 + 400 * speed[name] / fastest, alpha=0.6)
        axes.annotate(f"{name}\n{speed[name]:.1f} tok/s", (x, y), textcoords="offset points", xytext=(8, 4), fontsize=8)
        parent = parents.get(name)
        if parent in metrics:
            axes.annotate("", (x, y), (metrics[parent]["size_bytes"] / 2**20, metrics[parent]["perplexity"]),
                          arrowprops={"arrowstyle": "->", "color": "grey", "alpha": 0.6})
    axes.set_xlabel("size on disk (MiB)")
    axes.set_ylabel("validation perplexity")
    axes.set_title("Compression trade-off (point area: decode tokens/s)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(output)  # never a half-written picture under the final name
    return output
