"""Authoring of the expression displacement fields (the 3DMM's expression basis).

Every ARKit channel the face-mesh landmarks can show gets one displacement field
``(468, 3)`` in millimetres in the canonical face frame (see :mod:`face_expr_ros.rig.pose`):
the offset of each vertex at weight 1. A field is specified by a few *handles* — landmark
sets taken from MediaPipe's own contours (lids, lips, brows, nose) and moved in an
anatomically plausible direction (the muscle's pull, after the FACS action unit the ARKit
channel corresponds to, Ekman & Friesen 1978) — and is spread smoothly over the skin
around them by harmonic interpolation on the mesh graph (Botsch & Sorkine 2008, "On linear
variational surface deformation methods"): the free vertices solve the discrete Laplace
equation ``L d = 0`` with the handles as Dirichlet conditions and everything farther than
a radius pinned at zero. The mesh's eye and mouth holes are not bridged by edges, so a
field on the upper lid or lip cannot leak into the lower one except through the corners.

Only the person's left side is authored; right fields are exact mirror images
(``d_R[i] = diag(-1, 1, 1) d_L[mirror[i]]``), which keeps the basis symmetric.

The construction is pure numpy/scipy on the neutral, so it is bit-for-bit reproducible:
:func:`build_basis` applied to the stored neutral regenerates the stored basis.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from face_expr_ros.expression import ARKIT_BLENDSHAPES, N_BLENDSHAPES
from face_expr_ros.rig import topology as topo

Field = NDArray[np.float64]
MIRROR = np.array([-1.0, 1.0, 1.0])

# Channels whose field stays zero, and why (also tabulated in docs/face_model.md).
UNOBSERVED: dict[str, str] = {
    "eyeLookDownLeft": "gaze: the 468-point mesh has no iris/eyeball; eyelids alone do not fix it",
    "eyeLookInLeft": "gaze: the 468-point mesh has no iris/eyeball",
    "eyeLookOutLeft": "gaze: the 468-point mesh has no iris/eyeball",
    "eyeLookUpLeft": "gaze: the 468-point mesh has no iris/eyeball",
    "eyeLookDownRight": "gaze: the 468-point mesh has no iris/eyeball; eyelids alone do not fix it",
    "eyeLookInRight": "gaze: the 468-point mesh has no iris/eyeball",
    "eyeLookOutRight": "gaze: the 468-point mesh has no iris/eyeball",
    "eyeLookUpRight": "gaze: the 468-point mesh has no iris/eyeball",
    "tongueOut": "the tongue is not part of the face-mesh surface; landmarks cannot see it",
}


class _Geometry:
    """Neutral-shape measurements the handles are placed with."""

    def __init__(self, neutral: Field) -> None:
        self.v = neutral
        loops = topo.boundary_loops()
        sets = topo.landmark_sets()
        self.sets = sets
        self.eye_loop = loops["eye_left"]
        self.mouth_loop = loops["mouth"]
        self.oval = loops["oval"]
        self.lips_inner = sets["lips_inner"]
        self.lips_outer = sets["lips_outer"]
        self.mouth_center = 0.5 * (neutral[topo.UPPER_LIP_INNER] + neutral[topo.LOWER_LIP_INNER])
        ch = topo.lip_and_lid_chains()
        self.upper_outer, self.lower_outer = ch["upper_outer"], ch["lower_outer"]
        self.upper_inner, self.lower_inner = ch["upper_inner"], ch["lower_inner"]
        self.upper_lip = np.concatenate([self.upper_outer, self.upper_inner])
        self.lower_lip = np.concatenate([self.lower_outer, self.lower_inner])
        self.mouth_width = float(neutral[topo.MOUTH_CORNER_LEFT, 0] - neutral[topo.MOUTH_CORNER_RIGHT, 0])
        # Left eye: upper and lower lid margins, split at the line through the eye corners.
        self.upper_lid, self.lower_lid = ch["upper_lid_left"], ch["lower_lid_left"]
        self.eye_corners = np.array([topo.EYE_OUTER_LEFT, topo.EYE_INNER_LEFT])
        self.brow = sets["brow_left"]
        # Inner-to-outer coordinate along the brow: 0 at the inner end, 1 at the outer end.
        bx = neutral[self.brow, 0]
        self.brow_t = (bx - bx.min()) / (bx.max() - bx.min())
        self.brows_both = np.concatenate([sets["brow_left"], sets["brow_right"]])
        self.scale = float(np.linalg.norm(neutral[topo.EYE_OUTER_LEFT] - neutral[topo.EYE_OUTER_RIGHT]))

    def lid_gap(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Vertical opening of the left eye (upper minus lower lid) at horizontal positions ``x``."""
        up = self.upper_lid[np.argsort(self.v[self.upper_lid, 0])]
        lo = self.lower_lid[np.argsort(self.v[self.lower_lid, 0])]
        c = [topo.EYE_INNER_LEFT, topo.EYE_OUTER_LEFT]
        upx = np.concatenate([[self.v[c[0], 0]], self.v[up, 0], [self.v[c[1], 0]]])
        upy = np.concatenate([[self.v[c[0], 1]], self.v[up, 1], [self.v[c[1], 1]]])
        lox = np.concatenate([[self.v[c[0], 0]], self.v[lo, 0], [self.v[c[1], 0]]])
        loy = np.concatenate([[self.v[c[0], 1]], self.v[lo, 1], [self.v[c[1], 1]]])
        return np.interp(x, upx, upy) - np.interp(x, lox, loy)

    def near(self, point: NDArray[np.float64], radius: float) -> NDArray[np.int64]:
        """Vertices within ``radius`` mm of ``point``."""
        return np.flatnonzero(np.linalg.norm(self.v - point, axis=1) <= radius)

    def side_left(self, idx: NDArray[np.int64], width: float = 5.0) -> NDArray[np.float64]:
        """Smooth 0..1 weight of the person's left half (0.5 on the midline), so L + R = 1."""
        return 0.5 * (1.0 + np.tanh(self.v[idx, 0] / width))


def _laplacian(neutral: Field) -> sp.csr_matrix:
    """Graph Laplacian with inverse-edge-length weights (smoother than uniform on uneven meshes)."""
    e = topo.edges()
    w = 1.0 / np.maximum(np.linalg.norm(neutral[e[:, 0]] - neutral[e[:, 1]], axis=1), 1e-6)
    n = len(neutral)
    a = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([e[:, 0], e[:, 1]]),
                                                np.concatenate([e[:, 1], e[:, 0]]))), shape=(n, n)).tocsr()
    return (sp.diags(np.asarray(a.sum(axis=1)).ravel()) - a).tocsr()


class _Author:
    """Harmonic spreading of handle displacements over the neutral mesh."""

    def __init__(self, neutral: Field) -> None:
        self.g = _Geometry(neutral)
        self.lap = _laplacian(neutral)

    def harmonic(
        self,
        handles: list[tuple[NDArray[np.int64], NDArray[np.float64]]],
        radius: float,
        pinned: NDArray[np.int64] | None = None,
    ) -> Field:
        """Field with ``handles`` (index array, (n,3) or (3,) displacement) spread over ``radius`` mm.

        Later handles override earlier ones on shared vertices; ``pinned`` vertices stay still.
        """
        v = self.g.v
        n = len(v)
        fixed = np.zeros(n, dtype=bool)
        value = np.zeros((n, 3))
        for idx, disp in handles:
            idx = np.asarray(idx, dtype=np.int64)
            value[idx] = np.broadcast_to(np.asarray(disp, dtype=np.float64), (len(idx), 3))
            fixed[idx] = True
        src = np.flatnonzero(fixed & (np.abs(value).sum(axis=1) > 0))
        if pinned is not None:
            pin = np.setdiff1d(np.asarray(pinned, dtype=np.int64), np.flatnonzero(fixed))
            value[pin] = 0.0
            fixed[pin] = True
        if len(src):
            dist = np.min(np.linalg.norm(v[:, None, :] - v[src][None, :, :], axis=2), axis=1)
        else:
            dist = np.full(n, np.inf)
        free = ~fixed & (dist < radius)
        out = np.where(fixed[:, None], value, 0.0)
        fi = np.flatnonzero(free)
        if len(fi):
            bnd = np.flatnonzero(~free)
            lff = self.lap[fi][:, fi].tocsc()
            rhs = -(self.lap[fi][:, bnd] @ out[bnd])
            solve = spla.factorized(lff)
            out[fi] = np.column_stack([solve(np.ascontiguousarray(rhs[:, k])) for k in range(3)])
        return out

    def scalar_harmonic(self, ones: NDArray[np.int64], zeros: NDArray[np.int64]) -> NDArray[np.float64]:
        """Harmonic 0..1 weight over the whole mesh with ``ones`` at 1 and ``zeros`` at 0."""
        n = len(self.g.v)
        fixed = np.zeros(n, dtype=bool)
        val = np.zeros(n)
        fixed[zeros] = True
        fixed[ones] = True
        val[ones] = 1.0
        fi = np.flatnonzero(~fixed)
        bi = np.flatnonzero(fixed)
        lff = self.lap[fi][:, fi].tocsc()
        val[fi] = spla.spsolve(lff, -(self.lap[fi][:, bi] @ val[bi]))
        return np.clip(val, 0.0, 1.0)


def _lid_handles(g: _Geometry, up_frac: float, low_frac: float, up_z: float = 0.0) -> list:
    """Upper lid moves down by ``up_frac`` of the opening, lower lid up by ``low_frac``."""
    up = g.upper_lid
    lo = g.lower_lid
    gu = g.lid_gap(g.v[up, 0])
    gl = g.lid_gap(g.v[lo, 0])
    du = np.column_stack([np.zeros(len(up)), -up_frac * gu, np.full(len(up), up_z)])
    dl = np.column_stack([np.zeros(len(lo)), low_frac * gl, np.zeros(len(lo))])
    return [(g.eye_corners, np.zeros(3)), (up, du), (lo, dl)]


def _jaw_weight(a: _Author) -> NDArray[np.float64]:
    """How rigidly each vertex follows the mandible: 1 on the lower lip and chin, 0 above the mouth."""
    g = a.g
    v = g.v
    corner_y = float(v[topo.MOUTH_CORNER_LEFT, 1])
    nose_base_y = float(v[2, 1])  # landmark 2: subnasale
    oval = g.oval
    jaw_line = oval[v[oval, 1] < corner_y - 0.25 * (nose_base_y - corner_y) - 8.0]
    ones = np.concatenate([g.lower_lip, jaw_line, g.near(v[topo.CHIN], 12.0)])
    above = np.flatnonzero(v[:, 1] > nose_base_y - 2.0)
    zeros = np.concatenate([g.upper_lip, above, oval[v[oval, 1] > corner_y + 5.0]])
    zeros = np.setdiff1d(zeros, ones)
    w = a.scalar_harmonic(ones, zeros)
    # Sharpen: cheeks stretch, they do not travel with the jaw.
    return w**1.5


def _left_fields(a: _Author) -> dict[str, Field]:
    g = a.g
    v = g.v
    f: dict[str, Field] = {}
    pin_brow = g.brow
    pin_lids = np.concatenate([g.upper_lid, g.lower_lid, g.eye_corners])

    # Eyes (AU45 blink, AU5 lid raiser, AU7 lid tightener).
    f["eyeBlinkLeft"] = a.harmonic(_lid_handles(g, 0.80, 0.20, up_z=0.8), radius=14.0, pinned=pin_brow)
    f["eyeWideLeft"] = a.harmonic(_lid_handles(g, -0.40, -0.08), radius=12.0, pinned=pin_brow)
    squint = _lid_handles(g, 0.10, 0.35)
    cheek_under_eye = v[topo.LOWER_LID_LEFT] + np.array([2.0, -14.0, 0.0])
    squint.append((g.near(cheek_under_eye, 6.0), np.array([0.0, 1.5, 0.5])))
    f["eyeSquintLeft"] = a.harmonic(squint, radius=14.0, pinned=pin_brow)

    # Brows (AU4 lowerer with corrugator's medial pull, AU1 inner, AU2 outer raiser).
    t = g.brow_t
    down = np.column_stack([-2.5 * (1 - t), -5.0 - 1.5 * (1 - t), np.full(len(t), 0.5)])
    f["browDownLeft"] = a.harmonic([(g.brow, down)], radius=22.0, pinned=pin_lids)
    outer = np.clip((t - 0.35) / 0.65, 0.0, 1.0)
    f["browOuterUpLeft"] = a.harmonic(
        [(g.brow, np.column_stack([0.5 * outer, 7.0 * outer, np.zeros(len(t))]))], radius=28.0, pinned=pin_lids
    )

    # Mouth corners (AU12 smile, AU15 frown, AU14 dimple, AU20 stretch).
    corner = np.array([topo.MOUTH_CORNER_LEFT, topo.INNER_MOUTH_CORNER_LEFT])
    center_pin = np.array([topo.UPPER_LIP_OUTER, topo.UPPER_LIP_INNER, topo.LOWER_LIP_INNER, topo.LOWER_LIP_OUTER])
    cheek = v[topo.MOUTH_CORNER_LEFT] + np.array([12.0, 22.0, -4.0])
    f["mouthSmileLeft"] = a.harmonic(
        [(corner, np.array([6.0, 7.5, -3.0])), (g.near(cheek, 9.0), np.array([1.5, 4.0, 2.0]))],
        radius=24.0,
        pinned=np.concatenate([center_pin, pin_lids]),
    )
    below = v[topo.MOUTH_CORNER_LEFT] + np.array([1.0, -14.0, 0.0])
    f["mouthFrownLeft"] = a.harmonic(
        [(corner, np.array([0.5, -5.5, -0.5])), (g.near(below, 6.0), np.array([0.3, -3.0, 0.0]))],
        radius=22.0,
        pinned=center_pin,
    )
    f["mouthDimpleLeft"] = a.harmonic([(corner, np.array([3.0, 0.5, -4.0]))], radius=18.0, pinned=center_pin)
    lat_lower = g.lower_outer[v[g.lower_outer, 0] > 0.25 * g.mouth_width]
    f["mouthStretchLeft"] = a.harmonic(
        [(corner, np.array([5.5, -2.5, -0.5])), (lat_lower, np.array([1.5, -2.0, 0.0]))],
        radius=20.0,
        pinned=center_pin,
    )

    # Lip press (AU24), per side: the red of the lips thins, the seam stays.
    left_up = g.upper_outer[v[g.upper_outer, 0] > -2.0]
    left_lo = g.lower_outer[v[g.lower_outer, 0] > -2.0]
    f["mouthPressLeft"] = a.harmonic(
        [
            (left_up, np.column_stack([np.zeros(len(left_up)), -1.8 * g.side_left(left_up), np.zeros(len(left_up))])),
            (left_lo, np.column_stack([np.zeros(len(left_lo)), 1.8 * g.side_left(left_lo), np.zeros(len(left_lo))])),
        ],
        radius=8.0,
        pinned=np.concatenate([g.lips_inner, [topo.MOUTH_CORNER_LEFT, topo.MOUTH_CORNER_RIGHT]]),
    )
    lower = g.lower_lip
    sl = g.side_left(lower, 8.0)
    f["mouthLowerDownLeft"] = a.harmonic(
        [(lower, np.column_stack([0.3 * sl, -4.5 * sl, 0.5 * sl]))], radius=10.0, pinned=g.upper_lip
    )
    upper = g.upper_lip
    su = g.side_left(upper, 8.0)
    f["mouthUpperUpLeft"] = a.harmonic(
        [(upper, np.column_stack([0.3 * su, 4.5 * su, 0.5 * su]))],
        radius=12.0,
        pinned=np.concatenate([g.lower_lip, [topo.NOSE_TIP]]),
    )

    # Cheek raiser (AU6) and nose wrinkler (AU9).
    f["cheekSquintLeft"] = a.harmonic(
        [(g.near(cheek_under_eye, 8.0), np.array([0.0, 3.5, 1.0])),
         (g.lower_lid, np.column_stack([np.zeros(len(g.lower_lid)), 0.12 * g.lid_gap(v[g.lower_lid, 0]),
                                        np.zeros(len(g.lower_lid))]))],
        radius=16.0,
        pinned=np.concatenate([g.upper_lid, g.eye_corners]),
    )
    ala = np.array([294, 278, 279, 358, 327])
    inner_brow = g.brow[g.brow_t < 0.2]
    f["noseSneerLeft"] = a.harmonic(
        [
            (ala, np.array([0.5, 3.5, 0.5])),
            (g.near(v[ala].mean(axis=0) + np.array([4.0, 10.0, -2.0]), 5.0), np.array([0.0, 3.0, 0.5])),
            (inner_brow, np.array([-0.5, -1.5, 0.0])),
        ],
        radius=14.0,
        pinned=np.concatenate([g.lips_inner, [topo.NOSE_TIP]]),
    )

    # Directional mouth moves: authored towards the person's left, mirrored for the right.
    mouth_region = np.concatenate([g.sets["lips"]])
    f["mouthLeft"] = a.harmonic([(mouth_region, np.array([7.0, 0.0, -0.5]))], radius=18.0)
    jaw = _jaw_weight(a)
    f["jawLeft"] = jaw[:, None] * np.array([7.0, 0.0, 0.0])
    return f


def _bilateral_fields(a: _Author) -> dict[str, Field]:
    g = a.g
    v = g.v
    f: dict[str, Field] = {}
    jaw = _jaw_weight(a)
    # Mandible rotation about the temporomandibular hinge (AU26/27): R_x(+theta) moves points in
    # front of and below the hinge down and back.
    hinge = np.array([0.0, float(v[2, 1]) + 8.0, float(v[topo.CHEEK_SIDE_LEFT, 2]) - 15.0])
    theta = np.deg2rad(13.0)
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    rel = v - hinge
    f["jawOpen"] = jaw[:, None] * (rel @ rot.T - rel)
    f["jawForward"] = jaw[:, None] * np.array([0.0, 0.0, 6.0])
    lip_drop = float(-f["jawOpen"][topo.LOWER_LIP_INNER, 1])

    # Lips closing against an open jaw (ARKit mouthClose is used together with jawOpen).
    f["mouthClose"] = a.harmonic(
        [(g.upper_lip, np.array([0.0, -0.35 * lip_drop, 0.0])), (g.lower_lip, np.array([0.0, 0.65 * lip_drop, 0.0]))],
        radius=10.0,
    )
    center = g.mouth_center

    def towards_center(idx: NDArray[np.int64], kx: float, ky: float) -> NDArray[np.float64]:
        rel = v[idx] - center
        return np.column_stack([-kx * rel[:, 0], -ky * rel[:, 1], np.zeros(len(idx))])

    lips = g.sets["lips"]
    pucker = towards_center(lips, 0.35, 0.1) + np.array([0.0, 0.0, 8.0])
    f["mouthPucker"] = a.harmonic([(lips, pucker)], radius=18.0)
    funnel_out = towards_center(g.lips_outer, 0.22, -0.25) + np.array([0.0, 0.0, 5.0])
    funnel_in = towards_center(g.lips_inner, 0.22, 0.0)
    funnel_in[:, 1] += np.where(v[g.lips_inner, 1] > center[1], 3.0, -3.0)
    funnel_in[:, 2] += 4.0
    f["mouthFunnel"] = a.harmonic([(g.lips_outer, funnel_out), (g.lips_inner, funnel_in)], radius=16.0)

    def roll(outer: NDArray[np.int64], inner: NDArray[np.int64]) -> NDArray[np.float64]:
        order = np.argsort(v[inner, 0])
        target_y = np.interp(v[outer, 0], v[inner, 0][order], v[inner, 1][order])
        return np.column_stack([np.zeros(len(outer)), 0.6 * (target_y - v[outer, 1]), np.full(len(outer), -3.0)])

    f["mouthRollUpper"] = a.harmonic(
        [(g.upper_outer, roll(g.upper_outer, g.upper_inner)), (g.upper_inner, np.array([0.0, -0.5, -2.0]))],
        radius=8.0,
        pinned=g.lower_lip,
    )
    f["mouthRollLower"] = a.harmonic(
        [(g.lower_outer, roll(g.lower_outer, g.lower_inner)), (g.lower_inner, np.array([0.0, 0.5, -2.0]))],
        radius=8.0,
        pinned=g.upper_lip,
    )
    f["mouthShrugUpper"] = a.harmonic([(g.upper_lip, np.array([0.0, 2.5, 2.5]))], radius=10.0, pinned=g.lower_lip)
    chin_boss = v[topo.CHIN] + np.array([0.0, 12.0, 0.0])
    f["mouthShrugLower"] = a.harmonic(
        [(g.lower_lip, np.array([0.0, 3.0, 2.0])), (g.near(chin_boss, 10.0), np.array([0.0, 2.5, 1.5]))],
        radius=12.0,
        pinned=g.upper_lip,
    )

    # Inner brow raiser: both inner brow halves rise, the forehead above follows partly.
    brows = g.brows_both
    bx = np.abs(v[brows, 0])
    t = (bx - bx.min()) / (bx.max() - bx.min())
    inner = np.clip(1.0 - t / 0.6, 0.0, 1.0)
    lids = np.concatenate([g.upper_lid, g.lower_lid, g.eye_corners])
    lids = np.concatenate([lids, _mirror_indices(lids, v)])
    f["browInnerUp"] = a.harmonic(
        [(brows, np.column_stack([-0.8 * np.sign(v[brows, 0]) * inner, 7.0 * inner, np.zeros(len(t))]))],
        radius=30.0,
        pinned=lids,
    )

    # Cheek puff: air pushes both cheeks out and forward.
    puff: list = []
    for side in (1.0, -1.0):
        p = v[topo.MOUTH_CORNER_LEFT] * np.array([side, 1.0, 1.0]) + np.array([side * 16.0, 6.0, -8.0])
        puff.append((g.near(p, 12.0), np.array([side * 5.0, 0.0, 4.0])))
    corners = np.array([topo.MOUTH_CORNER_LEFT, topo.MOUTH_CORNER_RIGHT])
    f["cheekPuff"] = a.harmonic(puff, radius=14.0, pinned=np.concatenate([g.lips_inner, corners]))
    return f


def _mirror_indices(idx: NDArray[np.int64], v: Field) -> NDArray[np.int64]:
    mv = v[idx] * MIRROR
    return np.argmin(np.linalg.norm(v[None, :, :] - mv[:, None, :], axis=2), axis=1)


def mirror_field(field: Field, mirror: NDArray[np.int64]) -> Field:
    """Left/right mirror image of a displacement field under the vertex permutation ``mirror``."""
    return field[mirror] * MIRROR


def build_basis(neutral: Field, mirror: NDArray[np.int64]) -> NDArray[np.float64]:
    """All 52 fields, shape (52, 468, 3), in ARKit order; unobserved channels are zero."""
    neutral = np.asarray(neutral, dtype=np.float64)
    author = _Author(neutral)
    fields = _bilateral_fields(author)
    for name, field in _left_fields(author).items():
        fields[name] = field
        # Every left field (including the directional mouthLeft/jawLeft) has a mirrored twin.
        fields[name[:-4] + "Right"] = mirror_field(field, mirror)
    basis = np.zeros((N_BLENDSHAPES, len(neutral), 3))
    for k, name in enumerate(ARKIT_BLENDSHAPES):
        if name in fields:
            basis[k] = fields[name]
        elif name not in UNOBSERVED:
            raise AssertionError(f"channel {name} has no field and no reason to stay zero")
    return basis

