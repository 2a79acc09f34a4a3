"""Shading model shared by the head and the body: key, fill and sky light, wrap-around subsurface, Blinn-Phong.

All colours are linear RGB; ``to_srgb8`` applies a soft highlight roll-off and a gamma-2 encode.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Wrap factors per channel for subsurface scattering: red light diffuses furthest under skin, so the
# shadow side of a face is warmer than its lit side.
_SKIN_WRAP = np.array([0.45, 0.28, 0.22], np.float32)


@dataclasses.dataclass(frozen=True)
class Lighting:
    """Directions (unit, screen frame: x right, y down, z towards the camera) and linear RGB intensities."""

    key_direction: np.ndarray
    key_colour: np.ndarray
    fill_direction: np.ndarray
    fill_colour: np.ndarray
    sky_colour: np.ndarray
    half_vector: np.ndarray  # Blinn-Phong half vector between the key light and the camera

    @staticmethod
    def from_key(direction: tuple[float, float, float], colour: tuple[float, float, float]) -> Lighting:
        """A three-point-like setup around a key light; the fill comes from the opposite side, lower."""
        key = np.asarray(direction, np.float32)
        key = key / np.linalg.norm(key)
        fill = np.array([-0.8 * key[0], 0.1, 0.9], np.float32)
        fill /= np.linalg.norm(fill)
        half = key + np.array([0.0, 0.0, 1.0], np.float32)
        half /= np.linalg.norm(half)
        key_colour = np.asarray(colour, np.float32) * 1.1
        return Lighting(
            key_direction=key,
            key_colour=key_colour,
            fill_direction=fill,
            fill_colour=np.array([0.14, 0.15, 0.17], np.float32),
            sky_colour=np.array([0.13, 0.14, 0.16], np.float32),
            half_vector=half.astype(np.float32),
        )


def shade(
    albedo: np.ndarray,
    normal: np.ndarray,
    specular: np.ndarray,
    subsurface: np.ndarray,
    occlusion: np.ndarray,
    key_visibility: np.ndarray,
    light: Lighting,
) -> np.ndarray:
    """Outgoing radiance of a surface seen from the camera.

    Args:
        albedo: float32 [..., 3] linear reflectance.
        normal: float32 [..., 3] unit normals in the screen frame.
        specular: float32 [...] specular strength.
        subsurface: float32 [...] 1 for skin, 0 for non-translucent material.
        occlusion: float32 [...] ambient occlusion, 1 = open.
        key_visibility: float32 [...] cast-shadow visibility of the key light, 1 = lit.
        light: the light rig.

    Returns:
        float32 [..., 3] linear RGB radiance (may exceed 1 in highlights).
    """
    n_dot_key = normal @ light.key_direction
    wrap = subsurface[..., None] * _SKIN_WRAP
    key = np.clip((n_dot_key[..., None] + wrap) / (1.0 + wrap), 0.0, None) * key_visibility[..., None]
    n_dot_fill = np.clip(normal @ light.fill_direction, 0.0, None)
    # Sky light from above: surfaces facing up (negative y) see more of it.
    sky = (0.65 - 0.35 * normal[..., 1]) * occlusion
    irradiance = key * light.key_colour + n_dot_fill[..., None] * light.fill_colour + sky[..., None] * light.sky_colour
    irradiance *= (0.55 + 0.45 * occlusion)[..., None]
    n_dot_half = np.clip(normal @ light.half_vector, 0.0, 1.0)
    gloss = specular * n_dot_half**24 * key_visibility
    return albedo * irradiance + gloss[..., None] * light.key_colour


def to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear RGB to uint8 sRGB-like values, with highlights rolled off instead of clipped.

    Args:
        linear: float32 [..., 3].

    Returns:
        uint8 [..., 3].
    """
    knee = 0.8
    over = np.clip(linear - knee, 0.0, None)
    compressed = np.minimum(linear, knee) + (1.0 - knee) * np.tanh(over / (1.0 - knee))
    return (np.sqrt(np.clip(compressed, 0.0, 1.0)) * 255.0 + 0.5).astype(np.uint8)
