"""Which OpenCV static saliency ``--importance saliency`` uses: spectral residual or fine-grained,
and how much blur. For each of scikit-image's astronaut, chelsea and coffee, the share of the map's
top 20 % that falls inside a hand-drawn box around the subject (the person, the cat's face, the
cup and saucer); the box's own area share is what a random map would score. Seconds on a CPU.

    python benchmarks/saliency_choice.py
"""

from __future__ import annotations

import cv2
import numpy as np
import skimage.data

from imagegs.importance import REGION_SHARE

# (x0, y0, x1, y1) pixel boxes around each image's subject, drawn by eye
SUBJECTS = {"astronaut": (60, 20, 330, 512), "chelsea": (100, 40, 370, 290), "coffee": (40, 20, 430, 390)}
BLURS = (0.0, 0.02, 0.05)  # Gaussian std as a share of the long side


def main() -> None:
    scores: dict[tuple[str, float], list[float]] = {}
    for name, (x0, y0, x1, y1) in SUBJECTS.items():
        rgb = getattr(skimage.data, name)()
        h, w = rgb.shape[:2]
        box = np.zeros((h, w), bool)
        box[y0:y1, x0:x1] = True
        line = [f"{name:9s} box {box.mean():.2f}"]
        for method in ("SpectralResidual", "FineGrained"):
            ok, sal = getattr(cv2.saliency, f"StaticSaliency{method}_create")().computeSaliency(rgb[..., ::-1].copy())
            for blur in BLURS:
                m = cv2.GaussianBlur(sal, (0, 0), blur * max(h, w)) if blur else sal
                top = m >= np.quantile(m, 1 - REGION_SHARE)
                share = float((top & box).sum() / top.sum())
                scores.setdefault((method, blur), []).append(share)
                line.append(f"{method[:4]} blur {blur:g}: {share:.2f}")
        print(" | ".join(line))
    for (method, blur), v in scores.items():
        print(f"mean {method} blur {blur:g}: {np.mean(v):.3f}")


if __name__ == "__main__":
    main()
