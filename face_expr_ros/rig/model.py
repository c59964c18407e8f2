"""The face model: a linear 3D morphable model of expression on the MediaPipe face mesh.

    shape(w) = neutral + sum_k w_k * basis[k]          (468 x 3, millimetres)

in the canonical face frame of :mod:`face_expr_ros.rig.pose`, with the 52 ARKit weights
``w`` of :mod:`face_expr_ros.expression` and the 852 triangles of
:mod:`face_expr_ros.rig.topology`. Head rotation is applied on top by the renderers.

The neutral comes from landmarks: MediaPipe's wheel does not ship its canonical face model,
so the neutral is derived from the face in ``skimage.data.astronaut()``
(:func:`derive_neutral`): landmarks are scaled to an outer-eye-corner distance of 90 mm,
frontalised, made exactly left/right symmetric (averaging each vertex with its mirror
twin, after the symmetry plane is fitted), and her smile and parted lips are removed
(mouth corners brought level with the lip seam, lips brought together) using the basis's
own smile and jaw fields. The basis is then authored on that neutral by
:func:`face_expr_ros.rig.basis.build_basis`.

The result is cached in ``rig/data/face_model.npz``. The neutral there is the source data
(MediaPipe's numbers may differ in the last bits between CPUs); everything else is
regenerated bit-for-bit from it by :func:`build_model`. Regenerate with
``python -m face_expr_ros.rig.model`` (add ``--from-photo`` to re-derive the neutral too).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from face_expr_ros.expression import ARKIT_BLENDSHAPES, N_BLENDSHAPES, index
from face_expr_ros.rig import topology as topo
from face_expr_ros.rig.basis import MIRROR, build_basis
from face_expr_ros.rig.pose import image_to_canonical, umeyama

DATA_PATH = Path(__file__).resolve().parent / "data" / "face_model.npz"
EYE_CORNER_DISTANCE_MM = 90.0
# A vertex is "stable" (used for rigid alignment) when no expression field moves it by more.
STABLE_MAX_MM = 0.75


@dataclass(frozen=True)
class FaceModel:
    """Neutral (V, 3), basis (52, V, 3), triangles (F, 3), mirror permutation (V,) and stable set."""

    neutral: NDArray[np.float64]
    basis: NDArray[np.float64]
    triangles: NDArray[np.int64]
    mirror: NDArray[np.int64]
    stable_vertices: NDArray[np.int64]
    stable_weights: NDArray[np.float64]

    @property
    def n_vertices(self) -> int:
        return int(self.neutral.shape[0])

    def shape(self, weights: ArrayLike, neutral: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        """Vertices (V, 3) for 52 blendshape weights (or a 55-d frame; the head part is ignored)."""
        w = np.asarray(weights, dtype=np.float64)[:N_BLENDSHAPES]
        base = self.neutral if neutral is None else neutral
        return base + np.tensordot(w, self.basis, axes=1)

    def observed_channels(self) -> list[str]:
        """Names of the channels with a non-zero field."""
        mags = np.abs(self.basis).reshape(N_BLENDSHAPES, -1).max(axis=1)
        return [n for n, m in zip(ARKIT_BLENDSHAPES, mags) if m > 0]


def _orient_outwards(tris: NDArray[np.int64], neutral: NDArray[np.float64]) -> NDArray[np.int64]:
    """Flip the (consistently oriented) triangles as a whole so their normals point out of the face (+z)."""
    a, b, c = neutral[tris[:, 0]], neutral[tris[:, 1]], neutral[tris[:, 2]]
    nz = np.cross(b - a, c - a)[:, 2]
    return tris if nz.sum() > 0 else tris[:, ::-1].copy()


def build_model(neutral: NDArray[np.float64], mirror: NDArray[np.int64]) -> FaceModel:
    """Deterministically author the whole model from a neutral and its mirror permutation."""
    neutral = np.asarray(neutral, dtype=np.float64)
    mirror = np.asarray(mirror, dtype=np.int64)
    basis = build_basis(neutral, mirror)
    motion = np.linalg.norm(basis, axis=2).max(axis=0)
    stable = np.flatnonzero(motion < STABLE_MAX_MM)
    # Lips, lids and brows are excluded even where a field happens to be weak there.
    sets = topo.landmark_sets()
    moving = np.concatenate([sets["lips"], sets["eye_left"], sets["eye_right"], sets["brow_left"], sets["brow_right"]])
    stable = np.setdiff1d(stable, moving)
    weights = np.ones(len(stable))
    return FaceModel(neutral, basis, _orient_outwards(topo.triangles(), neutral), mirror, stable, weights)


def mirror_permutation(points: NDArray[np.float64]) -> NDArray[np.int64]:
    """Vertex permutation pairing each vertex with its left/right twin (midline vertices map to themselves).

    Found as the optimal assignment (Hungarian method) between the shape and its reflection
    ``x -> -x``, then made an involution.
    """
    from scipy.optimize import linear_sum_assignment

    refl = points * MIRROR
    cost = np.linalg.norm(points[:, None, :] - refl[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(points), dtype=np.int64)
    perm[rows] = cols
    bad = np.flatnonzero(perm[perm] != np.arange(len(points)))
    if len(bad):
        raise RuntimeError(f"mirror pairing is not an involution at {len(bad)} vertices")
    return perm


def _frontalise(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Scale to millimetres and rotate into the canonical frame (x: eye to eye, y: chin to forehead)."""
    p = points * (EYE_CORNER_DISTANCE_MM / np.linalg.norm(points[topo.EYE_OUTER_LEFT] - points[topo.EYE_OUTER_RIGHT]))
    x = p[topo.EYE_OUTER_LEFT] - p[topo.EYE_OUTER_RIGHT]
    x /= np.linalg.norm(x)
    y = p[topo.FOREHEAD_TOP] - p[topo.CHIN]
    y -= (y @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    return (p - p.mean(axis=0)) @ np.stack([x, y, z]).T


def _symmetrise(p: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Fit the symmetry plane to x = 0 and average each vertex with its mirror twin."""
    perm = mirror_permutation(p)
    for _ in range(5):
        sym = 0.5 * (p + (p * MIRROR)[perm])
        t = umeyama(p, sym)
        p = (p @ t.rotation.T) + (t.translation / t.scale)  # rigid part only: keep the scale
        perm = mirror_permutation(p)
    return 0.5 * (p + (p * MIRROR)[perm]), perm


def _recentre(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """Origin at the head's rotation centre: mid-ear level, ~15 mm behind the face's side landmarks."""
    sides = 0.5 * (p[topo.CHEEK_SIDE_LEFT] + p[topo.CHEEK_SIDE_RIGHT])
    eye_y = 0.5 * (p[topo.EYE_OUTER_LEFT, 1] + p[topo.EYE_OUTER_RIGHT, 1])
    centre = np.array([0.0, eye_y - 10.0, sides[2] - 15.0])
    out = p - centre
    out[:, 0] -= out[:, 0].mean() * 0.0  # already symmetric: x = 0 is the midline
    return out


def derive_neutral(landmarks_px: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Neutral shape (468, 3) in mm and its mirror permutation from one face's pixel landmarks."""
    p = _frontalise(image_to_canonical(np.asarray(landmarks_px, dtype=np.float64)[: topo.N_VERTICES]))
    p, perm = _symmetrise(p)
    p = _recentre(p)
    # Remove the photo's own expression. Lips: each inner-lip vertex pair (upper, lower) is
    # brought to a common seam, the rest of the lips following harmonically. Smile: the
    # mouth corners are brought level with the seam using the basis's own smile field.
    p = p + _lip_closure_field(p)
    for _ in range(3):
        basis = build_basis(p, perm)
        smile = basis[index("mouthSmileLeft")] + basis[index("mouthSmileRight")]
        seam = 0.5 * (p[topo.UPPER_LIP_INNER, 1] + p[topo.LOWER_LIP_INNER, 1])
        rise = p[topo.MOUTH_CORNER_LEFT, 1] - seam
        p = p - (rise / smile[topo.MOUTH_CORNER_LEFT, 1]) * smile
        p = p + _lip_closure_field(p)
    return p, perm


# Inner-lip vertex pairs facing each other across the mouth slit (upper, lower), person's
# right then left; the inner corners 78 and 308 are shared by both lips.
INNER_LIP_PAIRS: tuple[tuple[int, int], ...] = (
    (13, 14), (82, 87), (81, 178), (80, 88), (191, 95), (312, 317), (311, 402), (310, 318), (415, 324),
)


def _lip_closure_field(p: NDArray[np.float64], gap_mm: float = 0.0) -> NDArray[np.float64]:
    """Displacement that closes the lips: each facing inner-lip pair meets at its mean, ``gap_mm`` apart."""
    from face_expr_ros.rig.basis import _Author

    author = _Author(p)
    handles = []
    for up, lo in INNER_LIP_PAIRS:
        mid = 0.5 * (p[up] + p[lo])
        handles.append((np.array([up]), (mid + np.array([0.0, 0.5 * gap_mm, 0.0]) - p[up])[None, :]))
        handles.append((np.array([lo]), (mid - np.array([0.0, 0.5 * gap_mm, 0.0]) - p[lo])[None, :]))
    corners = np.array([topo.INNER_MOUTH_CORNER_LEFT, topo.INNER_MOUTH_CORNER_RIGHT])
    return author.harmonic(handles, radius=12.0, pinned=corners)


def astronaut_landmarks() -> NDArray[np.float64]:
    """MediaPipe landmarks (pixels) of ``skimage.data.astronaut()``."""
    from skimage import data

    from face_expr_ros.perception.face_tracker import detect_landmarks

    lm = detect_landmarks(data.astronaut())
    if lm is None:
        raise RuntimeError("MediaPipe found no face in skimage.data.astronaut()")
    return lm


def save_model(model: FaceModel, path: Path = DATA_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        neutral=model.neutral,
        mirror=model.mirror,
        basis=model.basis,
        triangles=model.triangles,
        stable_vertices=model.stable_vertices,
        stable_weights=model.stable_weights,
        channel_names=np.array(ARKIT_BLENDSHAPES),
    )


def read_stored(path: Path = DATA_PATH) -> FaceModel:
    """The model exactly as stored in the data file."""
    with np.load(path, allow_pickle=False) as z:
        names = tuple(str(n) for n in z["channel_names"])
        if names != ARKIT_BLENDSHAPES:
            raise ValueError(f"{path} was built for a different channel list; regenerate it")
        return FaceModel(
            z["neutral"], z["basis"], z["triangles"], z["mirror"], z["stable_vertices"], z["stable_weights"]
        )


@lru_cache(maxsize=4)
def load_model(path: str | None = None) -> FaceModel:
    """The face model (cached per process); builds and stores it on first use if the file is missing."""
    p = Path(path) if path else DATA_PATH
    if p.exists():
        return read_stored(p)
    neutral, mirror = derive_neutral(astronaut_landmarks())
    model = build_model(neutral, mirror)
    save_model(model, p)
    return model


def regenerate(from_photo: bool = False, path: Path = DATA_PATH) -> FaceModel:
    """Rebuild the data file: from the stored neutral (bit-for-bit), or from the photo."""
    if from_photo or not path.exists():
        neutral, mirror = derive_neutral(astronaut_landmarks())
    else:
        stored = read_stored(path)
        neutral, mirror = stored.neutral, stored.mirror
    model = build_model(neutral, mirror)
    save_model(model, path)
    load_model.cache_clear()
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the face model data file " + str(DATA_PATH))
    parser.add_argument("--from-photo", action="store_true", help="re-derive the neutral from the astronaut photo")
    args = parser.parse_args(argv)
    model = regenerate(from_photo=args.from_photo)
    print(f"wrote {DATA_PATH}: {model.n_vertices} vertices, {len(model.triangles)} triangles, "
          f"{len(model.observed_channels())} observed channels, {len(model.stable_vertices)} stable vertices")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
