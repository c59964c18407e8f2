"""Contact sheet of both avatars for a handful of channels at weight 1 -> docs/face_model_contact_sheet.png.

    python benchmarks/make_contact_sheet.py [--out PATH] [--tile 180]

The sheet is stored as a 256-colour palette PNG (median-cut quantisation with
Floyd-Steinberg dithering), which keeps it well under 600 KB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from face_expr_ros.expression import from_dict
from face_expr_ros.rig.render import MeshRenderer, PhotoRenderer

OUT = Path(__file__).resolve().parents[1] / "docs" / "face_model_contact_sheet.png"
PANELS: tuple[tuple[str, dict[str, float]], ...] = (
    ("neutral", {}),
    ("jawOpen", {"jawOpen": 1.0}),
    ("mouthSmile L+R", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),
    ("mouthFrown L+R", {"mouthFrownLeft": 1.0, "mouthFrownRight": 1.0}),
    ("eyeBlink L+R 0.5", {"eyeBlinkLeft": 0.5, "eyeBlinkRight": 0.5}),
    ("eyeBlink L+R", {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
    ("browInnerUp", {"browInnerUp": 1.0}),
    ("browDown L+R", {"browDownLeft": 1.0, "browDownRight": 1.0}),
    ("mouthPucker", {"mouthPucker": 1.0}),
    ("mouthFunnel", {"mouthFunnel": 1.0}),
    ("eyeWide L+R", {"eyeWideLeft": 1.0, "eyeWideRight": 1.0}),
    ("mouthSmileLeft only", {"mouthSmileLeft": 1.0}),
    ("headYaw +25 deg", {"headYaw": float(np.deg2rad(25.0))}),
    ("headPitch +20 deg", {"headPitch": float(np.deg2rad(20.0))}),
    ("headRoll +20 deg", {"headRoll": float(np.deg2rad(20.0))}),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--tile", type=int, default=180, help="panel size in pixels")
    args = ap.parse_args()
    mesh, photo = MeshRenderer(), PhotoRenderer()
    tiles = []
    for label, values in PANELS:
        f = from_dict(values)
        pair = []
        for r in (mesh, photo):
            img = cv2.resize(r.render(f), (args.tile, args.tile), interpolation=cv2.INTER_AREA)[:, :, ::-1].copy()
            pair.append(img)
        tile = np.hstack(pair)
        cv2.rectangle(tile, (0, 0), (tile.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(tile, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    cols = 2
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    sheet = np.vstack(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    img = Image.fromarray(sheet[:, :, ::-1].copy()).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    img.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
