"""Avatar renderers: one 55-d frame in, one square RGB uint8 image out.

Both renderers pose the model the same way: ``shape(w)`` (:class:`FaceModel`), rotated by
the head pose (:func:`face_expr_ros.rig.pose.rotation_from_pose`) about the head centre,
then projected orthographically (the face is small against its distance to the camera, so
weak perspective is accurate to a few percent and keeps the warp affine per triangle).

* :class:`MeshRenderer` draws the mesh itself: per-triangle Lambert shading
  ``I = k_a + k_d max(0, n . l)`` of a skin albedo, back-face culling and painter's order
  (far triangles first), with eye and mouth openings painted underneath.
* :class:`PhotoRenderer` animates one real photo. Its landmarks are detected once; the
  photo's own expression is fitted (stateless :class:`ExpressionFitter`) and subtracted, so
  weight 0 shows her neutral face. Each frame moves the vertices by the basis, rotates and
  projects them, and warps the photo piecewise-affinely: a triangle-index raster (painter's
  order, so the near side of a turned head occludes the far side) selects, per output
  pixel, the affine map target -> source of its triangle, and one ``cv2.remap`` samples the
  photo. A ring of extra vertices around the face (an inner ring that turns with the head,
  carrying hair and ears, and an outer ring plus the image border that stay put, carrying
  the background) is triangulated with the face outline, so the face moves without tearing
  the image. The mouth opening is filled with a dark mouth-interior colour, since the photo
  has no texture for a wider-open mouth than its own.

Images are RGB (convert with ``[..., ::-1]`` for OpenCV's BGR writers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from face_expr_ros.expression import DIM, N_BLENDSHAPES, clamp, index
from face_expr_ros.rig import topology as topo
from face_expr_ros.rig.model import FaceModel, load_model
from face_expr_ros.rig.pose import rotation_from_pose

DEFAULT_SIZE = 512
_SHIFT = 4  # sub-pixel bits for OpenCV polygon drawing
_ONE = float(1 << _SHIFT)
MOUTH_INTERIOR_RGB = (58, 18, 22)


def _pose_of(frame: NDArray[np.float32]) -> NDArray[np.float64]:
    return rotation_from_pose(frame[index("headPitch")], frame[index("headYaw")], frame[index("headRoll")])


def _as_frame(frame: ArrayLike) -> NDArray[np.float32]:
    arr = np.asarray(frame, dtype=np.float32)
    if arr.shape != (DIM,):
        raise ValueError(f"expected one {DIM}-d expression frame, got shape {arr.shape}")
    return clamp(arr)


class _Framing:
    """Orthographic camera shared by both avatars: model millimetres -> output pixels."""

    def __init__(self, model: FaceModel, size: int, face_fraction: float = 0.62) -> None:
        n = model.neutral
        lo, hi = n[:, :2].min(axis=0), n[:, :2].max(axis=0)
        self.size = size
        self.scale = face_fraction * size / float(hi[1] - lo[1])
        self.centre_mm = 0.5 * (lo + hi)
        self.centre_px = np.array([0.5 * size, 0.5 * size])

    def project(self, pts: NDArray[np.float64]) -> NDArray[np.float64]:
        """(N, 3) model-frame points -> (N, 2) pixel coordinates (x right, y down)."""
        xy = (pts[:, :2] - self.centre_mm) * self.scale
        return np.column_stack([self.centre_px[0] + xy[:, 0], self.centre_px[1] - xy[:, 1]])


class MeshRenderer:
    """Lambert-shaded mesh avatar (RGB uint8, ``size`` x ``size``)."""

    def __init__(
        self,
        model: FaceModel | None = None,
        size: int = DEFAULT_SIZE,
        *,
        albedo: tuple[int, int, int] = (226, 178, 150),
        background: tuple[int, int, int] = (38, 44, 56),
        light: tuple[float, float, float] = (-0.35, 0.45, 1.0),
    ) -> None:
        self.model = model if model is not None else load_model()
        self.size = size
        self.framing = _Framing(self.model, size)
        self.albedo = np.asarray(albedo, dtype=np.float64)
        self.background = background
        lv = np.asarray(light, dtype=np.float64)
        self.light = lv / np.linalg.norm(lv)
        loops = topo.boundary_loops()
        self.eye_loops = (loops["eye_left"], loops["eye_right"])
        self.mouth_loop = loops["mouth"]
        self.tris = self.model.triangles
        lips = topo.landmark_sets()["lips"]
        self.lip_tri = np.isin(self.tris, lips).all(axis=1)

    def vertices(self, frame: ArrayLike) -> NDArray[np.float64]:
        """Posed model-frame vertices (468, 3) of one 55-d frame."""
        f = _as_frame(frame)
        return self.model.shape(f[:N_BLENDSHAPES]) @ _pose_of(f).T

    def render(self, frame: ArrayLike) -> NDArray[np.uint8]:
        import cv2

        v = self.vertices(frame)
        p = self.framing.project(v)
        img = np.empty((self.size, self.size, 3), dtype=np.uint8)
        img[:] = self.background
        pi = np.round(p * _ONE).astype(np.int32)
        # Openings first: everything of the face drawn later covers them where it is nearer.
        cv2.fillPoly(img, [pi[self.mouth_loop]], MOUTH_INTERIOR_RGB, cv2.LINE_AA, _SHIFT)
        for loop in self.eye_loops:
            self._draw_eye(img, v, p, pi, loop)
        a, b, c = v[self.tris[:, 0]], v[self.tris[:, 1]], v[self.tris[:, 2]]
        n = np.cross(b - a, c - a)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        visible = n[:, 2] > 0.0
        shade = 0.28 + 0.72 * np.clip(n @ self.light, 0.0, 1.0)
        colours = shade[:, None] * self.albedo
        colours[self.lip_tri] *= np.array([0.92, 0.62, 0.62])
        colours = np.clip(colours, 0, 255).astype(np.int32)
        depth = (a[:, 2] + b[:, 2] + c[:, 2]) / 3.0
        order = np.flatnonzero(visible)
        order = order[np.argsort(depth[order], kind="stable")]
        tri_px = pi[self.tris]
        for t in order:
            cv2.fillConvexPoly(img, tri_px[t], colours[t].tolist(), cv2.LINE_8, _SHIFT)
        return img

    def _draw_eye(
        self, img: NDArray[np.uint8], v: NDArray[np.float64], p: NDArray[np.float64], pi: NDArray[np.int32],
        loop: NDArray[np.int64],
    ) -> None:
        import cv2

        cv2.fillPoly(img, [pi[loop]], (235, 232, 228), cv2.LINE_8, _SHIFT)
        lo = np.floor(p[loop].min(axis=0)).astype(int) - 1
        hi = np.ceil(p[loop].max(axis=0)).astype(int) + 2
        lo = np.clip(lo, 0, self.size - 1)
        hi = np.clip(hi, 0, self.size)
        if np.any(hi - lo < 2):
            return
        roi = img[lo[1]:hi[1], lo[0]:hi[0]]
        mask = np.zeros(roi.shape[:2], dtype=np.uint8)
        off = np.round(lo * _ONE).astype(np.int32)
        cv2.fillPoly(mask, [pi[loop] - off], 255, cv2.LINE_8, _SHIFT)
        iris = np.zeros_like(roi)
        centre = p[loop].mean(axis=0) - lo
        width = float(np.linalg.norm(p[loop[0]] - p[loop[len(loop) // 2]]))
        radius = max(1, int(np.rint(0.23 * max(width, float(np.ptp(p[loop][:, 0]))))))
        c = (int(np.rint(centre[0])), int(np.rint(centre[1])))
        cv2.circle(iris, c, radius, (70, 52, 40), -1, cv2.LINE_AA)
        cv2.circle(iris, c, max(1, radius // 2), (12, 10, 10), -1, cv2.LINE_AA)
        inside = (mask > 0) & (iris.any(axis=2))
        roi[inside] = iris[inside]


class PhotoRenderer:
    """Photo avatar: one face photo warped by the model (RGB uint8, ``size`` x ``size``)."""

    def __init__(
        self,
        photo: NDArray[np.uint8] | str | Path | None = None,
        model: FaceModel | None = None,
        size: int = DEFAULT_SIZE,
        *,
        landmarks: NDArray[np.float64] | None = None,
    ) -> None:
        from face_expr_ros.perception.face_tracker import ExpressionFitter, detect_landmarks, validate_image

        self.model = model if model is not None else load_model()
        self.size = size
        self.framing = _Framing(self.model, size)
        self.photo = _load_photo(photo)
        if landmarks is None:
            landmarks = detect_landmarks(validate_image(self.photo))
            if landmarks is None:
                raise ValueError("no face found in the photo")
        lm = np.asarray(landmarks, dtype=np.float64)[: self.model.n_vertices]
        fitter = ExpressionFitter(self.model, adapt_neutral=False, basis="model")
        fit = fitter.fit(lm)
        self.photo_weights = fit.weights
        # The photo's own expression is removed: weight 0 renders her neutral face.
        self.neutral = self.model.shape(-fit.weights, neutral=fit.aligned)
        self._build_layout(lm, fit.similarity)

    # -- construction -------------------------------------------------------------------
    def _build_layout(self, lm: NDArray[np.float64], photo_sim: object) -> None:
        from scipy.spatial import Delaunay

        from face_expr_ros.rig.pose import canonical_to_image

        n = self.neutral
        nv = self.model.n_vertices
        loops = topo.boundary_loops()
        oval = loops["oval"]
        centre = n[oval].mean(axis=0)
        # Inner ring (turns with the head: hair, ears) and outer ring (background), in mm.
        inner = centre + (n[oval] - centre) * np.array([1.30, 1.22, 1.0]) + np.array([0.0, 0.0, -12.0])
        outer_xy = centre[:2] + (n[oval, :2] - centre[:2]) * 2.1
        outer = np.column_stack([outer_xy, np.full(len(oval), centre[2] - 40.0)])
        extra = np.vstack([n[loops["eye_left"]].mean(axis=0), n[loops["eye_right"]].mean(axis=0),
                           n[loops["mouth"]].mean(axis=0)])
        self._eye_centres = (nv, nv + 1)
        self._mouth_centre = nv + 2
        self._inner = np.arange(nv + 3, nv + 3 + len(oval))
        self._outer = np.arange(self._inner[-1] + 1, self._inner[-1] + 1 + len(oval))
        s = self.size
        k = 9
        edge = np.linspace(0.0, s - 1.0, k)
        border = np.unique(np.vstack([
            np.column_stack([edge, np.zeros(k)]), np.column_stack([edge, np.full(k, s - 1.0)]),
            np.column_stack([np.zeros(k), edge]), np.column_stack([np.full(k, s - 1.0), edge]),
        ]), axis=0)
        self._border_px = border
        self.points3d = np.vstack([n, extra, inner, outer])  # model frame, neutral pose
        n_pts = len(self.points3d) + len(border)
        self._n_pts = n_pts
        # Source pixels: landmarks where detected; the extra points through the photo's pose.
        src = np.zeros((n_pts, 2))
        src[:nv] = lm[:, :2]
        pose_px = canonical_to_image(photo_sim.apply(self.points3d))[:, :2]  # type: ignore[attr-defined]
        src[nv:len(self.points3d)] = pose_px[nv:]
        for c, loop in zip((nv, nv + 1, nv + 2), (loops["eye_left"], loops["eye_right"], loops["mouth"])):
            src[c] = lm[loop, :2].mean(axis=0)
        # Fixed background points (outer ring, border): a 2D similarity from output to photo.
        tgt0 = self.framing.project(self.points3d)
        a2 = _similarity_2d(tgt0[:nv], lm[:, :2])
        src[self._outer] = _apply_2d(a2, tgt0[self._outer])
        src[len(self.points3d):] = _apply_2d(a2, border)
        self.src = src.astype(np.float64)
        self._lid_idx, self._lid_shift, self._lid_channel = _lid_unfolding(self.neutral, self.src)
        self._outer_tgt = tgt0[self._outer]
        # Triangles: face mesh, eye fans, mouth fan, and a Delaunay fill of the ring region.
        face = self.model.triangles
        fans = []
        for c, loop in zip((nv, nv + 1), (loops["eye_left"], loops["eye_right"])):
            fans += [(c, loop[i], loop[(i + 1) % len(loop)]) for i in range(len(loop))]
        mouth = [(nv + 2, loops["mouth"][i], loops["mouth"][(i + 1) % len(loops["mouth"])])
                 for i in range(len(loops["mouth"]))]
        ring_ids = np.concatenate([oval, self._inner, self._outer, np.arange(len(self.points3d), n_pts)])
        tgt_all = np.vstack([tgt0, border])
        dl = Delaunay(tgt_all[ring_ids])
        ring_tris = ring_ids[dl.simplices]
        import cv2

        oval_poly = tgt_all[oval].astype(np.float32)
        keep = [cv2.pointPolygonTest(oval_poly, tuple(map(float, tgt_all[t].mean(axis=0))), False) < 0
                for t in ring_tris]
        ring_tris = ring_tris[np.array(keep)]
        # Background triangles (all corners fixed) are static: remember which those are.
        fixed = np.zeros(n_pts, dtype=bool)
        fixed[self._outer] = True
        fixed[len(self.points3d):] = True
        self.ring_tris = ring_tris
        self.ring_static = fixed[ring_tris].all(axis=1)
        self.face_tris = face
        self.fan_tris = np.array(fans, dtype=np.int64)
        self.mouth_tris = np.array(mouth, dtype=np.int64)
        self.all_tris = np.vstack([self.ring_tris, self.face_tris, self.fan_tris, self.mouth_tris])
        n_ring, n_face, n_fan = len(self.ring_tris), len(self.face_tris), len(self.fan_tris)
        self._face_slice = slice(n_ring, n_ring + n_face)
        self._fan_slice = slice(n_ring + n_face, n_ring + n_face + n_fan)
        self._mouth_first = n_ring + n_face + n_fan
        # Source-side matrices [x y 1] per triangle are constant.
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        self._xx, self._yy = xx, yy
        self._photo_f = self.photo

    # -- per frame ------------------------------------------------------------------------
    def target_points(self, frame: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Output pixel positions (N, 2) and depths (N,) of every warp vertex for one frame."""
        f = _as_frame(frame)
        rot = _pose_of(f)
        nv = self.model.n_vertices
        pts = self.points3d.copy()
        pts[:nv] = self.model.shape(f[:N_BLENDSHAPES], neutral=self.neutral)
        loops = topo.boundary_loops()
        pts[nv] = pts[loops["eye_left"]].mean(axis=0)
        pts[nv + 1] = pts[loops["eye_right"]].mean(axis=0)
        pts[nv + 2] = pts[loops["mouth"]].mean(axis=0)
        moving = pts[: self._outer[0]] @ rot.T
        tgt = np.empty((self._n_pts, 2))
        tgt[: self._outer[0]] = self.framing.project(moving)
        tgt[self._outer] = self._outer_tgt
        tgt[len(self.points3d):] = self._border_px
        depth = np.full(self._n_pts, -1e9)
        depth[: self._outer[0]] = moving[:, 2]
        return tgt, depth

    def source_points(self, frame: ArrayLike) -> NDArray[np.float64]:
        """Photo pixel positions (N, 2) the warp vertices sample for one frame (lid unfolding applied)."""
        f = _as_frame(frame)
        src = self.src.copy()
        src[self._lid_idx] += f[self._lid_channel][:, None] * self._lid_shift
        return src

    def render(self, frame: ArrayLike) -> NDArray[np.uint8]:
        import cv2

        tgt, depth = self.target_points(frame)
        src = self.source_points(frame)
        tris = self.all_tris
        # Affine map per triangle, output -> photo: [u v] = [x y 1] @ M, M = T^-1 S.
        t_h = np.concatenate([tgt[tris], np.ones((len(tris), 3, 1))], axis=2)
        det = np.linalg.det(t_h)
        ok = np.abs(det) > 1e-6
        t_h[~ok] = np.eye(3)
        maps = np.linalg.solve(t_h, src[tris]).astype(np.float32)  # (T, 3, 2)
        # Draw order: ring (background) first, then the eyeballs and mouth interior (they lie
        # behind the lids and lips, so any overlap with them must lose), then the face mesh far
        # to near, with triangles turned away from the camera culled.
        fx = tris[self._face_slice]
        a, b, c = tgt[fx[:, 0]], tgt[fx[:, 1]], tgt[fx[:, 2]]
        cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        # Outward normals face the camera when the projected triangle winds clockwise on screen.
        face = np.arange(self._face_slice.start, self._face_slice.stop)[(cross < 0) & ok[self._face_slice]]
        face = face[np.argsort(depth[tris[face]].mean(axis=1), kind="stable")]
        order = np.concatenate([np.flatnonzero(ok[: self._face_slice.start]),
                                np.arange(self._fan_slice.start, len(tris)), face])
        idx = np.zeros((self.size, self.size), dtype=np.int32)
        pts = np.round(tgt[tris] * _ONE).astype(np.int32)
        for t in order:
            cv2.fillConvexPoly(idx, pts[t], int(t), cv2.LINE_8, _SHIFT)
        m = maps[idx]  # (H, W, 3, 2)
        mapx = m[..., 0, 0] * self._xx + m[..., 1, 0] * self._yy + m[..., 2, 0]
        mapy = m[..., 0, 1] * self._xx + m[..., 1, 1] * self._yy + m[..., 2, 1]
        out = cv2.remap(self._photo_f, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mouth = idx >= self._mouth_first
        if mouth.any():
            out[mouth] = MOUTH_INTERIOR_RGB
        return out


LID_UNFOLD = 0.85


def _lid_unfolding(
    neutral: NDArray[np.float64], src: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """Source-coordinate shifts that unfold the upper lid as the eye closes.

    In an open eye most of the upper lid's skin is folded under the lid crease, so the photo
    shows only a dark band of lashes and crease shadow above the lid margin. Stretching that
    band over a closed eye paints a dark slit that looks half open to people and to
    landmark detectors. As ``eyeBlink`` goes to 1 the upper-lid triangles therefore sample
    from higher up the photo: each lid-margin vertex slides ``LID_UNFOLD`` of the way to the
    mean source position of its neighbours on the next ring up, and each of those to their
    neighbours above on the ring after, so a closed lid shows lid skin with only a thin lash
    line at the seam. Returns vertex indices, per-vertex shift at weight 1 (pixels) and the
    blink channel (frame index) driving each vertex.
    """
    from face_expr_ros.expression import index as channel

    adj = topo.adjacency_lists()
    chains, loops = topo.lip_and_lid_chains(), topo.boundary_loops()
    idx: list[int] = []
    shift: list[NDArray[np.float64]] = []
    chan: list[int] = []
    for side, name in (("left", "eyeBlinkLeft"), ("right", "eyeBlinkRight")):
        loop = set(loops["eye_" + side].tolist())
        ring0 = [int(v) for v in chains["upper_lid_" + side]]
        ring1 = sorted({n for v in ring0 for n in adj[v]} - loop)
        taken = loop | set(ring1)
        # Each vertex slides towards its neighbours one ring up: ring0 -> ring1, ring1 -> above.
        pairs = [(v, [n for n in adj[v] if n in ring1]) for v in ring0]
        pairs += [(v, [n for n in adj[v] if n not in taken and neutral[n, 1] > neutral[v, 1]]) for v in ring1]
        for v, above in pairs:
            if above:
                idx.append(v)
                shift.append(LID_UNFOLD * (src[above].mean(axis=0) - src[v]))
                chan.append(channel(name))
    return np.array(idx, dtype=np.int64), np.array(shift), np.array(chan, dtype=np.int64)


def _similarity_2d(src: NDArray[np.float64], dst: NDArray[np.float64]) -> NDArray[np.float64]:
    """Least-squares 2D similarity (2x3) mapping ``src`` onto ``dst``."""
    import cv2

    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS)
    return np.asarray(m, dtype=np.float64)


def _apply_2d(m: NDArray[np.float64], pts: NDArray[np.float64]) -> NDArray[np.float64]:
    return pts @ m[:, :2].T + m[:, 2]


def _load_photo(photo: NDArray[np.uint8] | str | Path | None) -> NDArray[np.uint8]:
    """RGB uint8 photo: the default astronaut, an array (RGB), or an image file path."""
    if photo is None:
        from skimage import data

        return np.ascontiguousarray(data.astronaut())
    if isinstance(photo, (str, Path)):
        import cv2

        img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read photo {photo}")
        return np.ascontiguousarray(img[:, :, ::-1])
    from face_expr_ros.perception.face_tracker import validate_image

    return validate_image(photo)


def make_renderer(kind: str, photo: str | Path | None = None, size: int = DEFAULT_SIZE) -> MeshRenderer | PhotoRenderer:
    """``'mesh'`` or ``'photo'`` avatar renderer."""
    if kind == "mesh":
        return MeshRenderer(size=size)
    if kind == "photo":
        return PhotoRenderer(photo, size=size)
    raise ValueError(f"unknown avatar {kind!r}; choose 'mesh' or 'photo'")
