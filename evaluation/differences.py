"""How sure a figure is: each model's mean NME and EER, and its change against the reference model on
the same images, with a 95 % interval from random halves of the faces (landmarks) or of the people
(identity; of the photos for a pairs file), so that a figure or a comparison on a dozen real photos
says how wide it is."""
from __future__ import annotations

from typing import Callable

import numpy as np

from siamface.edge_runtime import metrics


def _interval(value: float, se: float, key: str = "delta", bounds: tuple[float, float] = (-np.inf, np.inf)
              ) -> dict[str, float | None]:
    """A figure (``key``: "value") or a change ("delta") and its interval (metrics.normal_interval); None
    for the standard error and both bounds where the units are too few to tell (JSON has no inf)."""
    interval = metrics.normal_interval(value, se, bounds)
    if interval is None:
        return {key: value, "se": None, "low": None, "high": None}
    return {key: value, "se": se, "low": interval[0], "high": interval[1]}


def _eer_percent(scores: np.ndarray, same: np.ndarray, units: tuple[np.ndarray, np.ndarray],
                 reference: np.ndarray | None = None) -> tuple[Callable[[np.ndarray], float], int]:
    """metrics.eer_on_units in percent."""
    statistic, n_units = metrics.eer_on_units(scores, same, units, reference)
    return (lambda kept: 100.0 * statistic(kept)), n_units


def _percent(value: float, se: float) -> dict[str, float | None]:
    """A percentage and its interval, clipped to [0, 100] (a normal interval of a small set can cross them)."""
    return _interval(value, se, "value", (0.0, 100.0))


def nme_mean(nme: np.ndarray, yaw: np.ndarray | None, kept: np.ndarray | None = None) -> float:
    """The NME the reports headline, in percent, over the ``kept`` faces: pose-balanced over the yaw bins
    where the set has yaw (metrics.nme_by_yaw), else the plain mean."""
    kept = np.ones(len(nme), bool) if kept is None else kept
    if yaw is None:
        return 100.0 * float(np.mean(nme[kept]))
    return metrics.nme_by_yaw(nme[kept], yaw[kept])["mean"]


def intervals(c: dict) -> dict:
    """One model's mean NME and embedding EER (percent) with their 95 % intervals, where scored."""
    found = {}
    if "nme" in c:
        nme, yaw = np.asarray(c["nme"], np.float64), c.get("yaw")
        se = metrics.half_sample_se(lambda kept: nme_mean(nme, yaw, kept), nme.size)
        found["nme"] = _percent(nme_mean(nme, yaw), se)
    if "scores" in c:
        statistic, n_units = _eer_percent(c["scores"], c["same"], c["units"])
        found["eer_embedding"] = _percent(statistic(np.ones(n_units, bool)), metrics.half_sample_se(statistic, n_units))
    return found


def nme_difference(model: np.ndarray, reference: np.ndarray, yaw: np.ndarray | None = None) -> dict:
    """Change of the headline NME in percent (model minus reference, same faces in the same order;
    pose-balanced with ``yaw``), its interval, and on how many faces the model is better and worse."""
    model, reference = np.asarray(model, np.float64), np.asarray(reference, np.float64)

    def change(kept: np.ndarray | None = None) -> float:
        return nme_mean(model, yaw, kept) - nme_mean(reference, yaw, kept)

    d = model - reference
    return {**_interval(change(), metrics.half_sample_se(change, d.size)), "better": int((d < 0).sum()),
            "worse": int((d > 0).sum()), "faces": int(d.size)}


def eer_difference(model: np.ndarray, reference: np.ndarray, same: np.ndarray, units: tuple[np.ndarray, np.ndarray]
                   ) -> dict:
    """EER change in percent (model minus reference, scores of the same pairs) and its interval;
    ``units`` gives each pair's two independent units (the people of its photos, or the photos
    themselves for a pairs file, which names no people): a half keeps the pairs whose both units it holds."""
    change, n_units = _eer_percent(model, same, units, reference)
    se = metrics.half_sample_se(change, n_units)
    return {**_interval(change(np.ones(n_units, bool)), se), "pairs": int(len(same)), "units": n_units}


def differences(curves: dict[str, dict], reference: str) -> dict[str, dict]:
    """For every model but the reference: its NME and embedding-EER changes where both were scored on
    the same faces / pairs (curves from evaluate.evaluate)."""
    ref, out = curves[reference], {}
    for name, c in curves.items():
        if name == reference:
            continue
        found = {}
        if "nme" in c and "nme" in ref and len(c["nme"]) == len(ref["nme"]):
            found["nme"] = nme_difference(c["nme"], ref["nme"], c.get("yaw"))
        if "scores" in c and "scores" in ref and len(c["scores"]) == len(ref["scores"]):
            found["eer_embedding"] = eer_difference(c["scores"], ref["scores"], c["same"], c["units"])
        if found:
            out[name] = {"reference": reference, **found}
    return out


def _range(d: dict, digits: int, sign: str = "+") -> str:
    """``figure (low to high)``, signed for changes; "(too few to tell)" without an interval."""
    value = f"{d.get('delta', d.get('value')):{sign}.{digits}f}"
    if d["se"] is None:
        return f"{value} (too few to tell)"
    return f"{value} ({d['low']:{sign}.{digits}f} to {d['high']:{sign}.{digits}f})"


def interval_table(found: dict[str, dict]) -> str:
    """Markdown: per model, its mean NME and embedding EER with their 95 % intervals."""
    lines = ["| model | NME (95 % interval) | EER emb (95 % interval) |", "|---|---|---|"]
    for name, d in found.items():
        nme, eer = d.get("nme"), d.get("eer_embedding")
        lines.append(f"| {name} | {_range(nme, 2, '') if nme else '-'} | {_range(eer, 1, '') if eer else '-'} |")
    return "\n".join(lines) + "\n"


def difference_table(found: dict[str, dict]) -> str:
    """Markdown: per model, ΔNME and ΔEER with their 95 % intervals and the faces better / worse."""
    lines = ["| model | ΔNME (95 % interval) | faces better / worse | ΔEER emb (95 % interval) |",
             "|---|---|---|---|"]
    for name, d in found.items():
        nme, eer = d.get("nme"), d.get("eer_embedding")
        counts = f"{nme['better']} / {nme['worse']} of {nme['faces']}" if nme else "-"
        lines.append(f"| {name} | {_range(nme, 2) if nme else '-'} | {counts} | {_range(eer, 1) if eer else '-'} |")
    return "\n".join(lines) + "\n"
