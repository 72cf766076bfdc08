"""Image arithmetic shared by the panels and the exporters (Qt-free).

Colour look-up tables come from matplotlib so the screen and the exported video match.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LUT_NAMES",
    "TINT_RGB",
    "auto_levels",
    "blend",
    "confidence_tint",
    "format_length",
    "lookup_table",
    "nice_length_nm",
    "to_rgb",
]

#: Colour maps offered by the contrast controls (matplotlib names).
LUT_NAMES = ("gray", "inferno", "magma", "viridis", "hot", "cividis")

_LUT_CACHE: dict[str, np.ndarray] = {}


def lookup_table(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB table of the matplotlib colour map ``name``."""
    lut = _LUT_CACHE.get(name)
    if lut is None:
        import matplotlib

        try:
            cmap = matplotlib.colormaps[name]
        except KeyError:
            raise ValueError(f"unknown colour map {name!r}; use one of {LUT_NAMES}") from None
        lut = (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)
        _LUT_CACHE[name] = lut
    return lut


def auto_levels(
    image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.8, max_samples: int = 20000
) -> tuple[float, float]:
    """Display levels (low, high) from percentiles of ``image`` (any 2-D array).

    Sparse images (localization counts) whose high percentile is 0 fall back to their
    maximum, and ``high > low`` always holds.
    """
    flat = np.asarray(image).reshape(-1)
    if flat.size == 0:
        return 0.0, 1.0
    step = max(1, flat.size // max_samples)
    sample = flat[::step].astype(np.float64, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(sample, [low_pct, high_pct]))
    if high <= low:
        high = float(np.nanmax(flat))
    if high <= low:
        high = low + 1.0
    return low, high


def to_rgb(image: np.ndarray, levels: tuple[float, float], lut: str | np.ndarray) -> np.ndarray:
    """Map a (Y, X) image through ``levels`` and a colour table to (Y, X, 3) uint8 RGB."""
    table = lookup_table(lut) if isinstance(lut, str) else np.asarray(lut, np.uint8)
    low, high = levels
    scaled = (np.asarray(image, np.float32) - low) * (255.0 / max(high - low, 1e-12))
    idx = np.clip(scaled, 0, 255).astype(np.uint8)
    return table[idx]


#: RGB of the tint painted over low-confidence pixels (cyan stands out on gray and inferno).
TINT_RGB = (0, 255, 255)


def confidence_tint(
    confidence: np.ndarray, threshold: float = 0.5, max_alpha: float = 0.75
) -> np.ndarray:
    """(Y, X, 4) uint8 RGBA overlay tinting pixels whose confidence is below ``threshold``.

    Parameters
    ----------
    confidence
        (Y, X) probability that the reconstruction is right at each pixel, in [0, 1].
    threshold
        Pixels below it are tinted; opacity grows linearly to ``max_alpha`` at confidence 0.
    """
    conf = np.asarray(confidence, np.float32)
    out = np.zeros((*conf.shape, 4), np.uint8)
    out[..., :3] = TINT_RGB
    if threshold > 0:
        weight = np.clip((threshold - conf) / threshold, 0.0, 1.0)
        out[..., 3] = (weight * (255 * max_alpha)).astype(np.uint8)
    return out


def blend(rgb: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """``rgba`` composited over ``rgb`` (both uint8, same Y, X)."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgb.astype(np.float32) * (1 - alpha) + rgba[..., :3].astype(np.float32) * alpha
    return (out + 0.5).astype(np.uint8)


def nice_length_nm(view_width_nm: float, fraction: float = 0.2) -> float:
    """A 1-2-5 x 10^n length in nm close to ``fraction`` of the visible width (for a scale bar)."""
    target = max(float(view_width_nm) * fraction, 1e-3)
    exp = np.floor(np.log10(target))
    base = 10.0**exp
    for mult in (5.0, 2.0, 1.0):
        if mult * base <= target:
            return float(mult * base)
    return float(base)


def format_length(nm: float) -> str:
    """``"2 µm"``, ``"500 nm"``: a scale-bar label."""
    if nm >= 1000:
        return f"{nm / 1000:g} µm"
    return f"{nm:g} nm"
