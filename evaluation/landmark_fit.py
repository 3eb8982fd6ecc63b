"""Which landmark convention the face model's 68 vertices follow (`siamface evaluate-fit`).

The network learns the model's 68 landmark vertices from synthetic faces and is scored on
annotations drawn by people (or by dlib) under the iBUG 2D convention. Where a vertex sits
elsewhere than annotators put the point (brows on another edge, a jaw point further along the
contour), even a perfect reconstruction scores an error. To see it, the model (pose, identity,
expression; weak perspective; training.data.fitting's solver) is fitted to each face's annotated
landmarks and the residual is reported per group, with its mean signed offset: a group offset
close to the group's error is a convention mismatch, noise averages out.

``search_vertices`` proposes other vertices: for each searched landmark, the nearby face-surface
vertex whose projection (under each face's fit) lands closest to the annotations, mirrored pairs
chosen together so the definition stays symmetric. ``leave_one_out`` measures a proposal honestly:
each face is scored with vertices chosen on the other faces only, so a dozen faces cannot be
overfitted unnoticed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from siamface.edge_runtime import metrics
from siamface.edge_runtime.camera import decompose_camera
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.mirror_params import mirror_partners
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.training.data.fitting import FitConfig, fit_landmarks

# iBUG 68: the index of each landmark's mirror image (left-right flip of the face).
MIRROR = np.array([*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
                   45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
                   54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])


@dataclass(frozen=True)
class LandmarkFitConfig:
    """The fit, and the vertex search: which groups, how far from the current vertex (cm on the
    mean face), how many fit-and-choose rounds, and the faces it may use (|yaw| of the fit)."""

    fit: FitConfig = field(default_factory=FitConfig)
    search_groups: tuple[str, ...] = ("jaw", "brows")
    radius_cm: float = 1.5
    rounds: int = 1
    max_yaw_deg: float = 30.0
    jawline: bool = False   # start from the asset's alternative jaw vertices (jawline_right/left) instead


@dataclass(frozen=True)
class FaceFit:
    """One annotated face fitted: parameters, fitted and annotated landmarks (image pixels), pose."""

    name: str
    params: np.ndarray
    fitted: np.ndarray   # (68, 2)
    target: np.ndarray   # (68, 2)
    pose_deg: tuple[float, float, float]


def with_landmarks(model: MorphableModel, landmarks68: np.ndarray) -> MorphableModel:
    """The same face model with another 68-vertex landmark definition (nothing else changes)."""
    return dataclasses.replace(model, landmarks68=np.asarray(landmarks68, np.int32))


def jawline_definition(model: MorphableModel) -> np.ndarray:
    """landmarks68 with the asset's alternative jaw: ``jawline_right`` for 0-7, ``jawline_left`` for 9-16."""
    if "jawline_right" not in model.extras or "jawline_left" not in model.extras:
        raise SiamfaceError(f"face model {model.name} has no jawline_right/jawline_left vertices: drop jawline=true")
    definition = model.landmarks68.copy()
    definition[:8], definition[9:17] = model.extras["jawline_right"], model.extras["jawline_left"]
    return definition


def fit_faces(model: MorphableModel, faces: dict[str, np.ndarray], config: FitConfig) -> list[FaceFit]:
    """Fit each face's (68, 2) annotation on its own (no identity shared between faces)."""
    layout = model.layout(config.n_id)
    out = []
    for name, target in faces.items():
        result = fit_landmarks(model, target, config)
        out.append(FaceFit(name, result.params, model.image_landmarks(result.params, layout)[:, :2].astype(np.float64),
                           np.asarray(target, np.float64), decompose_camera(layout.split(result.params)[0]).degrees))
    return out


def residuals(fits: list[FaceFit]) -> dict[str, dict[str, float]]:
    """Per group: NME and mean signed offset of the fitted landmarks, % of the annotation's box."""
    return metrics.landmark_groups(np.stack([f.fitted for f in fits]), np.stack([f.target for f in fits]))


def per_landmark_offsets(fits: list[FaceFit]) -> np.ndarray:
    """(68, 2) mean signed offset (fitted minus annotated) of each landmark, % of the box size."""
    diffs = [100.0 * (f.fitted - f.target) / np.sqrt(np.prod(np.ptp(f.target, axis=0))) for f in fits]
    return np.mean(diffs, axis=0)


def mirror_vertices(model: MorphableModel) -> np.ndarray:
    """(V,) index of each vertex's mirror image (x -> -x) on the mean face; -1 where none lies
    within 0.1 mm (the ICT mesh is symmetric to 0.05 mm); the device's search (mirror_params)."""
    index, distance = mirror_partners(model.mean, np.arange(model.n_vertices))
    return np.where(distance < 0.01, index, -1)


def candidates(model: MorphableModel, vertex: int, radius_cm: float) -> np.ndarray:
    """Face-region vertices within ``radius_cm`` of ``vertex`` on the mean face (the vertex itself included)."""
    face = np.flatnonzero(model.vertex_region == model.region_names.index("face"))
    near = np.linalg.norm(model.mean[face] - model.mean[vertex], axis=1) <= radius_cm
    return np.union1d(face[near], [vertex])


def search_vertices(model: MorphableModel, fits: list[FaceFit], config: LandmarkFitConfig) -> np.ndarray:
    """A new 68-vertex definition: each landmark of ``config.search_groups`` moved to the candidate
    vertex with the least mean squared distance (in box units) between its projection under each
    face's fit and that face's annotation; mirrored landmarks take mirrored vertices (their costs
    summed), midline landmarks stay on the midline. Faces beyond ``max_yaw_deg`` are not used."""
    layout = model.layout(config.fit.n_id)
    use = [f for f in fits if abs(f.pose_deg[0]) <= config.max_yaw_deg]
    projected = [model.image_vertices(f.params, layout)[:, :2].astype(np.float64) for f in use]
    norms = [np.sqrt(np.prod(np.ptp(f.target, axis=0))) for f in use]
    mirror = mirror_vertices(model)

    def cost(landmark: int, vertices: np.ndarray) -> np.ndarray:
        return np.mean([np.sum((p[vertices] - f.target[landmark]) ** 2, axis=1) / n ** 2
                        for p, f, n in zip(projected, use, norms)], axis=0)

    chosen = model.landmarks68.copy()
    searched = sorted({i for g in config.search_groups for i in range(68)[metrics.LANDMARK_GROUPS[g]]})
    for i in searched:
        j = int(MIRROR[i])
        if j < i and j in searched:
            continue  # chosen with its mirror
        pool = candidates(model, int(model.landmarks68[i]), config.radius_cm)
        pool = pool[mirror[pool] >= 0]
        if j == i:
            pool = pool[mirror[pool] == pool]
            total = cost(i, pool)
        else:
            total = cost(i, pool) + (cost(j, mirror[pool]) if j in searched else 0.0)
        best = pool[int(np.argmin(total))]
        chosen[i] = best
        if j != i and j in searched:
            chosen[j] = mirror[best]
    return chosen


def propose(model: MorphableModel, faces: dict[str, np.ndarray], config: LandmarkFitConfig) -> np.ndarray:
    """``rounds`` of: fit every face with the current definition, then ``search_vertices``."""
    definition = model.landmarks68
    for _ in range(config.rounds):
        definition = search_vertices(model, fit_faces(with_landmarks(model, definition), faces, config.fit), config)
    return definition


def leave_one_out(model: MorphableModel, faces: dict[str, np.ndarray], config: LandmarkFitConfig
                  ) -> tuple[list[FaceFit], list[np.ndarray]]:
    """Each face fitted with the definition ``propose`` makes from the other faces: the honest
    residual of a proposal. Returns those fits and the definition used for each face."""
    fits, definitions = [], []
    for name, target in faces.items():
        definition = propose(model, {k: v for k, v in faces.items() if k != name}, config)
        fits += fit_faces(with_landmarks(model, definition), {name: target}, config.fit)
        definitions.append(definition)
    return fits, definitions


def annotated_faces(folder: str | Path) -> tuple[dict[str, np.ndarray], list[tuple[Path, str]]]:
    """({name: (68, 2) 0-based annotation}, skipped (path, reason)) of a folder of images with iBUG
    .pts files; only the .pts files are read (the fit needs no pixels)."""
    from siamface.training.data.real_formats import PtsFolderLoader, SampleError, read_pts

    loader = PtsFolderLoader(folder)
    faces, skipped = {}, list(loader.skipped)
    for entry in loader.entries:
        try:
            faces[entry.identity] = read_pts(entry.landmark_path)
        except SampleError as exc:
            skipped.append((exc.path, exc.reason))
    if not faces:
        raise SiamfaceError(f"{folder}: no readable .pts annotation ({len(skipped)} skipped): "
                            f"pass a folder of images with NAME.pts beside each")
    return faces, skipped


def _group_row(label: str, n: int, groups: dict[str, dict[str, float]]) -> str:
    return (f"| {label} | {n} | " + " | ".join(f"{g['nme']:.2f}" for g in groups.values()) + " | "
            + " | ".join(f"{g['dx']:+.2f}, {g['dy']:+.2f}" for g in groups.values()) + " |")


def _group_header(first: str) -> str:
    names = tuple(metrics.LANDMARK_GROUPS)
    return (f"| {first} | faces | " + " | ".join(f"NME {g}" for g in names) + " | "
            + " | ".join(f"dx, dy {g}" for g in names) + " |\n" + "|---" * (2 + 2 * len(names)) + "|")


def fit_report(model: MorphableModel, faces: dict[str, np.ndarray], config: LandmarkFitConfig,
               search: bool = True) -> dict:
    """Everything `evaluate-fit` reports, as plain data: per-group residuals of the model's own
    definition (all faces, and per face with its fitted pose), per-landmark offsets, and with
    ``search`` the proposal from all faces, its in-sample and leave-one-out residuals, and how often
    the leave-one-out folds chose the same vertex. ``config.jawline`` makes the asset's alternative
    jaw the definition that is fitted and searched from."""
    if config.jawline:
        model = with_landmarks(model, jawline_definition(model))
    current = fit_faces(model, faces, config.fit)
    out = {"faces": len(faces), "config": dataclasses.asdict(config),
           "current": {"landmarks68": model.landmarks68.tolist(), "groups": residuals(current),
                       "per_landmark_offset": np.round(per_landmark_offsets(current), 3).tolist(),
                       "per_face": [{"name": f.name, "yaw_pitch_roll": [round(a, 1) for a in f.pose_deg],
                                     "groups": residuals([f])} for f in current]}}
    if not search:
        return out
    proposal = propose(model, faces, config)
    in_sample = fit_faces(with_landmarks(model, proposal), faces, config.fit)
    loo, definitions = leave_one_out(model, faces, config)
    changed = np.flatnonzero(proposal != model.landmarks68)
    moved = np.linalg.norm(model.mean[proposal] - model.mean[model.landmarks68], axis=1)
    out["proposal"] = {
        "landmarks68": proposal.tolist(),
        "changed": {int(i): {"from": int(model.landmarks68[i]), "to": int(proposal[i]),
                             "moved_cm": round(float(moved[i]), 2),
                             "fold_agreement": round(float(np.mean([d[i] == proposal[i] for d in definitions])), 2)}
                    for i in changed},
        "groups_in_sample": residuals(in_sample), "groups_leave_one_out": residuals(loo),
        "per_landmark_offset_leave_one_out": np.round(per_landmark_offsets(loo), 3).tolist()}
    return out


def markdown(report: dict) -> str:
    """The fit report as Markdown: group residual tables, per face, and the proposal if any."""
    n = report["faces"]
    lines = [f"# Face model fitted to annotated landmarks ({n} faces)", "",
             f"Residual of the fit (fitted minus annotated) per iBUG group, % of the annotation's box size "
             f"sqrt(w*h), mean signed offset dx, dy (+y down); {report['config']['fit']['n_id']} identity modes. "
             f"Annotated faces are for measuring only: never train or tune on them.", "", _group_header("definition"),
             _group_row("jawline" if report["config"]["jawline"] else "landmarks68", n, report["current"]["groups"])]
    proposal = report.get("proposal")
    if proposal:
        lines += [_group_row("proposal, in sample", n, proposal["groups_in_sample"]),
                  _group_row("proposal, leave one out", n, proposal["groups_leave_one_out"])]
    lines += ["", "## Per face (current definition)", "", _group_header("face (yaw, pitch, roll)")]
    lines += [_group_row(f"{f['name']} ({', '.join(f'{a:+.0f}' for a in f['yaw_pitch_roll'])})", 1, f["groups"])
              for f in report["current"]["per_face"]]
    if proposal:
        lines += ["", "## Proposed vertices (search groups: " + ", ".join(report["config"]["search_groups"]) + ")", "",
                  "| landmark | vertex now | proposed | moved cm | leave-one-out folds choosing it |",
                  "|---|---|---|---|---|"]
        lines += [f"| {i} | {c['from']} | {c['to']} | {c['moved_cm']:.2f} | {c['fold_agreement']:.2f} |"
                  for i, c in proposal["changed"].items()]
    return "\n".join(lines) + "\n"


def write_fit_report(model: MorphableModel, faces: tuple[dict[str, np.ndarray], list[tuple[Path, str]]],
                     config: LandmarkFitConfig, out: Path, search: bool = True) -> str:
    """landmark_fit.json and landmark_fit.md into ``out``; returns the Markdown."""
    from siamface.edge_runtime.atomic import atomic_write_json
    from siamface.evaluation.report import write_text

    annotations, skipped = faces
    report = fit_report(model, annotations, config, search)
    report["skipped"] = [{"path": str(p), "reason": r} for p, r in skipped]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "landmark_fit.json", report)
    text = markdown(report)
    write_text(out / "landmark_fit.md", text)
    return text
