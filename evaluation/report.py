"""Tables (Markdown) and plots (PNG) of evaluation results, written atomically."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from siamface.edge_runtime import metrics
from siamface.edge_runtime.atomic import atomic_write, atomic_write_bytes

COLUMNS = ("images", "size MB", "invoke ms", "NME 0-30", "NME 30-60", "NME 60-90", "NME mean", "ΔNME", "pose MAE",
           "shape mm", "EER emb", "ΔEER", "TAR@1e-2", "TAR@1e-3", "EER shape", "EER 4-photo templates")


def row(result: dict, ref: dict | None) -> dict:
    """One table row (numbers) from an evaluation result; deltas against ``ref``. Figures a result
    lacks (no NME or pose for photos with identities only) are NaN."""
    nme, ver = result.get("nme", {}), result.get("verification_embedding", {})
    nan = float("nan")
    size, invoke = result.get("size_bytes"), result.get("invoke_ms")  # None for checkpoints / no timing
    r = {"images": result.get("n_images", nan), "size MB": nan if size is None else size / 1e6,
         "invoke ms": nan if invoke is None else invoke,
         "NME 0-30": nme.get("0-30", nan), "NME 30-60": nme.get("30-60", nan), "NME 60-90": nme.get("60-90", nan),
         "NME mean": nme.get("mean", nan), "pose MAE": result.get("pose_mae", {}).get("mean", nan),
         "shape mm": result.get("shape_error_mm", nan),
         "EER emb": 100 * ver.get("eer", nan), "TAR@1e-2": 100 * ver.get("tar_at_far_1e-2", nan),
         "TAR@1e-3": 100 * ver.get("tar_at_far_1e-3", nan),
         "EER shape": 100 * result.get("verification_shape", {}).get("eer", nan),
         "EER 4-photo templates": 100 * result.get("identification_templates", {}).get("eer", nan)}
    r["ΔNME"] = r["NME mean"] - row(ref, None)["NME mean"] if ref else 0.0
    r["ΔEER"] = r["EER emb"] - row(ref, None)["EER emb"] if ref else 0.0
    return r


def _cell(column: str, value: float | tuple[float, ...]) -> str:
    if isinstance(value, tuple):                  # a pair of figures, e.g. FAR near / far shapes
        return " / ".join(f"{v:.1f}" for v in value)
    return f"{value:+.2f}" if column.startswith("Δ") else f"{value:.0f}" if column == "images" else f"{value:.2f}"


def _table(first: str, columns: tuple[str, ...], rows: dict[str, dict]) -> str:
    """Markdown table of named rows of numbers; deltas (columns starting with Δ) signed."""
    lines = [f"| {first} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(c, r[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(results: dict[str, dict], reference: str | None) -> str:
    """Variants as rows; NME and EER in percent, deltas against the reference variant. Columns no
    result has (pose and identity for .pts photos, landmarks for photos of people) are left out."""
    ref = results.get(reference) if reference else None
    rows = {name: row(result, ref) for name, result in results.items()}
    has = {c for c in COLUMNS if any(np.isfinite(r[c]) for r in rows.values())}
    shown = tuple(c for c in COLUMNS if c in has and {"ΔNME": "NME mean", "ΔEER": "EER emb"}.get(c, c) in has)
    return _table("variant", shown, rows)


IDENTITY_COLUMNS = ("NME mean", "shape mm", "EER shape", "TAR@1e-3 shape", "EER emb", "TAR@1e-3 emb",
                    "spread shape", "spread 0-30", "spread 30-60", "spread 60-90",
                    "FAR near / far shapes, shape", "FAR near / far shapes, emb")


def identity_row(result: dict) -> dict:
    """Identity and pose invariance of one result: EER/TAR of the shape code and the embedding,
    the shape code's intra/inter-identity spread ratio and its intra spread per yaw bin."""
    nan, main = float("nan"), row(result, None)
    inv = result.get("pose_invariance_shape", {})
    reliance = {f"FAR near / far shapes, {code}": result.get(f"far_by_true_shape_{key}", {})
                for code, key in (("shape", "shape"), ("emb", "embedding"))}
    return {**main, "TAR@1e-3 shape": 100 * result.get("verification_shape", {}).get("tar_at_far_1e-3", nan),
            "TAR@1e-3 emb": main["TAR@1e-3"], "spread shape": inv.get("ratio", nan),
            **{f"spread {b}": inv.get(f"intra_{b}", nan) for b in metrics.YAW_BINS},
            **{c: (100 * r["nearest_quarter"], 100 * r["farthest_quarter"]) if r else (nan, nan)
               for c, r in reliance.items()}}


def identity_table(results: dict[str, dict]) -> str:
    """Models as rows: how discriminative and pose-invariant their codes are (the ablation table)."""
    return _table("model", IDENTITY_COLUMNS, {name: identity_row(result) for name, result in results.items()})


def group_table(results: dict[str, dict]) -> str:
    """Models as rows: NME per iBUG landmark group and the group's mean signed offset (dx, dy), in
    percent of the ground-truth box size (prediction minus truth, +y down): an offset close to the
    NME is a convention mismatch, not noise. Empty when no result has landmark ground truth."""
    rows = {name: r for name, r in results.items() if "landmark_groups" in r}
    if not rows:
        return ""
    groups = tuple(metrics.LANDMARK_GROUPS)
    lines = ["| model | images | " + " | ".join(f"NME {g}" for g in groups) + " | "
             + " | ".join(f"dx, dy {g}" for g in groups) + " |", "|---" * (2 + 2 * len(groups)) + "|"]
    for name, r in rows.items():
        g = r["landmark_groups"]
        lines.append(f"| {name} | {r['n_images']} | " + " | ".join(f"{g[k]['nme']:.2f}" for k in groups) + " | "
                     + " | ".join(f"{g[k]['dx']:+.2f}, {g[k]['dy']:+.2f}" for k in groups) + " |")
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_all(curves: dict[str, dict], results: dict[str, dict], out: Path) -> list[Path]:
    """ROC curves overlaid (when there are pairs), NME per yaw bin (when there is pose truth) and
    CED curves (when there are landmarks); ``curves`` holds per-variant arrays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if any("scores" in c for c in curves.values()):
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, c in curves.items():
            if "scores" in c:
                far, tar, _ = metrics.roc_curve(c["scores"], c["same"])
                ax.plot(np.maximum(far, 1e-4), tar, label=name)
        ax.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate",
               title="Verification ROC (embedding)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        _save(fig, out / "roc.png")
        paths.append(out / "roc.png")
    plt.close("all")
    if not all("nme" in c for c in curves.values()):
        return paths
    if all(b in r["nme"] for r in results.values() for b in metrics.YAW_BINS):
        fig, ax = plt.subplots(figsize=(5, 4))
        width = 0.8 / max(1, len(results))
        for k, (name, r) in enumerate(results.items()):
            ax.bar(np.arange(3) + k * width, [r["nme"][b] for b in metrics.YAW_BINS], width, label=name)
        ax.set(xticks=np.arange(3) + 0.4 - width / 2, xticklabels=[f"|yaw| {b}" for b in metrics.YAW_BINS],
               ylabel="NME (%)", title="Landmark NME per yaw bin")
        ax.legend(fontsize=8)
        _save(fig, out / "nme_yaw.png")
        paths.append(out / "nme_yaw.png")
        plt.close("all")
    return paths + _ced(curves, out)


def _ced(curves: dict[str, dict], out: Path) -> list[Path]:
    """The cumulative error distribution of every model's per-image NME."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    thresholds = np.linspace(0, 0.2, 201)
    for name, c in curves.items():
        ax.plot(100 * thresholds, metrics.ced(c["nme"], thresholds), label=name)
    ax.set(xlabel="NME (%)", ylabel="fraction of images", title="Cumulative error distribution")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out / "ced.png")
    plt.close("all")
    return [out / "ced.png"]
