"""The MediaPipe face-mesh topology: 468 vertices, their triangles and named landmark sets.

MediaPipe ships the mesh only as an edge list (``FACEMESH_TESSELATION``). Triangles are
recovered as the 3-cliques of that edge graph; two cliques on the nose wings are not faces
(each of their edges already borders two real triangles) and are dropped, leaving the 852
faces of MediaPipe's canonical face model. The mesh is a disc with three holes: the two
eyes and the mouth, whose boundary loops are the eyelid and inner-lip contours.

Naming: "left"/"right" always mean the *person's* left/right (ARKit convention), which is
image right/left for a camera looking at the face. MediaPipe's ``FACEMESH_LEFT_EYE`` uses
the same convention.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

N_VERTICES = 468

# Key landmark indices (MediaPipe face mesh), person-relative left/right.
NOSE_TIP = 1
FOREHEAD_TOP = 10
CHIN = 152
MOUTH_CORNER_RIGHT, MOUTH_CORNER_LEFT = 61, 291
INNER_MOUTH_CORNER_RIGHT, INNER_MOUTH_CORNER_LEFT = 78, 308
UPPER_LIP_OUTER, UPPER_LIP_INNER = 0, 13
LOWER_LIP_INNER, LOWER_LIP_OUTER = 14, 17
EYE_OUTER_RIGHT, EYE_INNER_RIGHT = 33, 133
EYE_OUTER_LEFT, EYE_INNER_LEFT = 263, 362
UPPER_LID_RIGHT, LOWER_LID_RIGHT = 159, 145
UPPER_LID_LEFT, LOWER_LID_LEFT = 386, 374
CHEEK_SIDE_RIGHT, CHEEK_SIDE_LEFT = 234, 454


def _edges() -> set[tuple[int, int]]:
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return {(min(a, b), max(a, b)) for a, b in fmc.FACEMESH_TESSELATION}


def _vertices_of(name: str) -> NDArray[np.int64]:
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return np.array(sorted({v for e in getattr(fmc, name) for v in e}), dtype=np.int64)


@lru_cache(maxsize=1)
def edges() -> NDArray[np.int64]:
    """Undirected mesh edges, shape (E, 2), sorted, each as (low, high)."""
    return np.array(sorted(_edges()), dtype=np.int64)


@lru_cache(maxsize=1)
def triangles() -> NDArray[np.int64]:
    """The 852 faces (F, 3), consistently oriented (orientation is fixed later against geometry)."""
    und = _edges()
    adj: dict[int, set[int]] = defaultdict(set)
    for a, b in und:
        adj[a].add(b)
        adj[b].add(a)
    cliques = sorted({tuple(sorted((a, b, c))) for a, b in und for c in adj[a] & adj[b]})
    count: Counter[tuple[int, int]] = Counter()
    for t in cliques:
        for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])):
            count[e] += 1
    # A clique all of whose edges are over-used (3 faces) is a hole-less "separating" triangle.
    faces = [t for t in cliques if not all(count[e] > 2 for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))]
    return _orient_consistently(np.array(faces, dtype=np.int64))


def _orient_consistently(faces: NDArray[np.int64]) -> NDArray[np.int64]:
    """Flip faces so every interior edge is traversed in opposite directions by its two faces."""
    by_edge: dict[tuple[int, int], list[int]] = defaultdict(list)
    for f, t in enumerate(faces):
        for k in range(3):
            a, b = int(t[k]), int(t[(k + 1) % 3])
            by_edge[(min(a, b), max(a, b))].append(f)
    out = faces.copy()
    done = np.zeros(len(faces), dtype=bool)
    for seed in range(len(faces)):
        if done[seed]:
            continue
        done[seed] = True
        stack = [seed]
        while stack:
            f = stack.pop()
            t = out[f]
            for k in range(3):
                a, b = int(t[k]), int(t[(k + 1) % 3])
                for g in by_edge[(min(a, b), max(a, b))]:
                    if done[g]:
                        continue
                    u = out[g]
                    directed = {(int(u[i]), int(u[(i + 1) % 3])) for i in range(3)}
                    if (a, b) in directed:  # same direction as f: g is flipped relative to f
                        out[g] = u[::-1]
                    done[g] = True
                    stack.append(g)
    return out


@lru_cache(maxsize=1)
def boundary_loops() -> dict[str, NDArray[np.int64]]:
    """Ordered boundary loops: 'oval' (outer silhouette), 'mouth' (inner lips), 'eye_left', 'eye_right'."""
    faces = triangles()
    count: Counter[tuple[int, int]] = Counter()
    for t in faces:
        for k in range(3):
            a, b = int(t[k]), int(t[(k + 1) % 3])
            count[(min(a, b), max(a, b))] += 1
    badj: dict[int, list[int]] = defaultdict(list)
    for (a, b), c in count.items():
        if c == 1:
            badj[a].append(b)
            badj[b].append(a)
    loops: list[list[int]] = []
    seen: set[int] = set()
    for start in sorted(badj):
        if start in seen:
            continue
        loop, prev, cur = [start], -1, start
        seen.add(start)
        while True:
            nxt = [n for n in sorted(badj[cur]) if n != prev and n not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            seen.add(cur)
            loop.append(cur)
        loops.append(loop)
    named: dict[str, NDArray[np.int64]] = {}
    for loop in loops:
        s = set(loop)
        if CHIN in s:
            named["oval"] = np.array(loop, dtype=np.int64)
        elif UPPER_LIP_INNER in s:
            named["mouth"] = np.array(loop, dtype=np.int64)
        elif EYE_OUTER_LEFT in s:
            named["eye_left"] = np.array(loop, dtype=np.int64)
        elif EYE_OUTER_RIGHT in s:
            named["eye_right"] = np.array(loop, dtype=np.int64)
    if len(named) != 4:
        raise RuntimeError(f"unexpected face-mesh boundary structure: {sorted(named)}")
    return named


def _split_loop(loop: list[int], a: int, b: int, marker: int) -> tuple[list[int], list[int]]:
    """Split a closed loop at vertices ``a`` and ``b`` (both excluded); the chain holding ``marker`` first."""
    i, j = loop.index(a), loop.index(b)
    if i > j:
        i, j = j, i
    one, two = loop[i + 1 : j], loop[j + 1 :] + loop[:i]
    return (one, two) if marker in one else (two, one)


def _loop_from_edges(edge_set: set[tuple[int, int]], start: int) -> list[int]:
    adj: dict[int, list[int]] = defaultdict(list)
    for a, b in edge_set:
        adj[a].append(b)
        adj[b].append(a)
    loop, prev, cur = [start], -1, start
    while True:
        nxt = [n for n in sorted(adj[cur]) if n != prev and n not in loop]
        if not nxt:
            return loop
        prev, cur = cur, nxt[0]
        loop.append(cur)


@lru_cache(maxsize=1)
def lip_and_lid_chains() -> dict[str, NDArray[np.int64]]:
    """Open contour chains between the corners (corners excluded), split by topology, not geometry.

    'upper_inner'/'lower_inner' (inner lips), 'upper_outer'/'lower_outer' (outer lip line),
    'upper_lid_left'/'lower_lid_left', 'upper_lid_right'/'lower_lid_right'.
    """
    from mediapipe.python.solutions import face_mesh_connections as fmc

    loops = boundary_loops()
    out: dict[str, list[int]] = {}
    out["upper_inner"], out["lower_inner"] = _split_loop(
        list(loops["mouth"]), INNER_MOUTH_CORNER_RIGHT, INNER_MOUTH_CORNER_LEFT, UPPER_LIP_INNER
    )
    inner = set(loops["mouth"].tolist())
    outer_edges = {(a, b) for a, b in fmc.FACEMESH_LIPS if a not in inner and b not in inner}
    outer_loop = _loop_from_edges(outer_edges, MOUTH_CORNER_RIGHT)
    out["upper_outer"], out["lower_outer"] = _split_loop(
        outer_loop, MOUTH_CORNER_RIGHT, MOUTH_CORNER_LEFT, UPPER_LIP_OUTER
    )
    out["upper_lid_left"], out["lower_lid_left"] = _split_loop(
        list(loops["eye_left"]), EYE_OUTER_LEFT, EYE_INNER_LEFT, UPPER_LID_LEFT
    )
    out["upper_lid_right"], out["lower_lid_right"] = _split_loop(
        list(loops["eye_right"]), EYE_OUTER_RIGHT, EYE_INNER_RIGHT, UPPER_LID_RIGHT
    )
    return {k: np.array(v, dtype=np.int64) for k, v in out.items()}


@lru_cache(maxsize=1)
def landmark_sets() -> dict[str, NDArray[np.int64]]:
    """Named landmark index sets taken from MediaPipe's own contour definitions."""
    lips = _vertices_of("FACEMESH_LIPS")
    inner = np.array(sorted(boundary_loops()["mouth"]), dtype=np.int64)
    return {
        "lips": lips,
        "lips_inner": inner,
        "lips_outer": np.setdiff1d(lips, inner),
        "eye_left": _vertices_of("FACEMESH_LEFT_EYE"),
        "eye_right": _vertices_of("FACEMESH_RIGHT_EYE"),
        "brow_left": _vertices_of("FACEMESH_LEFT_EYEBROW"),
        "brow_right": _vertices_of("FACEMESH_RIGHT_EYEBROW"),
        "oval": _vertices_of("FACEMESH_FACE_OVAL"),
        "nose": _vertices_of("FACEMESH_NOSE"),
    }


@lru_cache(maxsize=1)
def adjacency_lists() -> tuple[tuple[int, ...], ...]:
    """Neighbour vertex indices of every vertex."""
    adj: list[set[int]] = [set() for _ in range(N_VERTICES)]
    for a, b in edges():
        adj[int(a)].add(int(b))
        adj[int(b)].add(int(a))
    return tuple(tuple(sorted(s)) for s in adj)
