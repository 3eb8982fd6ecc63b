"""How sure a comparison is: each model's change against the reference model on the same images,
with a 95 % interval from random halves of the faces (landmarks) or of the people (identity; of the
photos for a pairs file), so that a comparison on a dozen real photos says when it is noise."""
from __future__ import annotations

import numpy as np

from siamface.edge_runtime import metrics

Z95 = 1.96  # a normal 95 % interval: delta +- Z95 standard errors


def _interval(delta: float, se: float) -> dict[str, float | None]:
    """The change and its interval; None for both bounds where the units are too few to tell (JSON has no inf)."""
    if not np.isfinite(se):
        return {"delta": delta, "se": None, "low": None, "high": None}
    return {"delta": delta, "se": se, "low": delta - Z95 * se, "high": delta + Z95 * se}


def nme_difference(model: np.ndarray, reference: np.ndarray) -> dict:
    """Mean per-face NME change in percent (model minus reference, same faces in the same order),
    its interval, and on how many faces the model is better and worse."""
    d = 100.0 * (np.asarray(model, np.float64) - np.asarray(reference, np.float64))
    se = metrics.half_sample_se(lambda kept: float(d[kept].mean()), d.size)
    return {**_interval(float(d.mean()), se), "better": int((d < 0).sum()), "worse": int((d > 0).sum()),
            "faces": int(d.size)}


def eer_difference(model: np.ndarray, reference: np.ndarray, same: np.ndarray, units: tuple[np.ndarray, np.ndarray]
                   ) -> dict:
    """EER change in percent (model minus reference, scores of the same pairs) and its interval;
    ``units`` gives each pair's two independent units (the people of its photos, or the photos
    themselves for a pairs file, which names no people): a half keeps the pairs whose both units it holds."""
    a, b = units
    same = np.asarray(same, bool)

    def change(kept: np.ndarray) -> float:
        both = kept[a] & kept[b]
        if same[both].all() or not same[both].any():
            return float("nan")
        return 100.0 * (metrics.eer(model[both], same[both]) - metrics.eer(reference[both], same[both]))

    n_units = int(max(a.max(), b.max())) + 1
    se = metrics.half_sample_se(change, n_units)
    return {**_interval(change(np.ones(n_units, bool)), se), "pairs": int(same.size), "units": n_units}


def differences(curves: dict[str, dict], reference: str) -> dict[str, dict]:
    """For every model but the reference: its NME and embedding-EER changes where both were scored on
    the same faces / pairs (curves from evaluate.evaluate)."""
    ref, out = curves[reference], {}
    for name, c in curves.items():
        if name == reference:
            continue
        found = {}
        if "nme" in c and "nme" in ref and len(c["nme"]) == len(ref["nme"]):
            found["nme"] = nme_difference(c["nme"], ref["nme"])
        if "scores" in c and "scores" in ref and len(c["scores"]) == len(ref["scores"]):
            found["eer_embedding"] = eer_difference(c["scores"], ref["scores"], c["same"], c["units"])
        if found:
            out[name] = {"reference": reference, **found}
    return out


def _range(d: dict, digits: int) -> str:
    if d["se"] is None:
        return f"{d['delta']:+.{digits}f} (too few to tell)"
    return f"{d['delta']:+.{digits}f} ({d['low']:+.{digits}f} to {d['high']:+.{digits}f})"


def difference_table(found: dict[str, dict]) -> str:
    """Markdown: per model, ΔNME and ΔEER with their 95 % intervals and the faces better / worse."""
    lines = ["| model | ΔNME (95 % interval) | faces better / worse | ΔEER emb (95 % interval) |",
             "|---|---|---|---|"]
    for name, d in found.items():
        nme, eer = d.get("nme"), d.get("eer_embedding")
        counts = f"{nme['better']} / {nme['worse']} of {nme['faces']}" if nme else "-"
        lines.append(f"| {name} | {_range(nme, 2) if nme else '-'} | {counts} | {_range(eer, 1) if eer else '-'} |")
    return "\n".join(lines) + "\n"
