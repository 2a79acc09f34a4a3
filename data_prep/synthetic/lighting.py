"""Light rig and shading model shared by the head and the body.

The rig is a soft key light (a window or a softbox: an area light, so shadows have soft edges), a weaker
fill from the other side, light from the room (brighter from above, tinted by the floor and clothes below)
and, for some seeds, a rim light from behind. Skin is shaded with a screen-space approximation of
subsurface scattering: light diffuses under the skin, red furthest, so shading is blurred per colour
channel while the skin's texture stays sharp. Specular reflection has a broad and a tight lobe and
Fresnel's rise at grazing angles. All colours are linear RGB.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_prep.synthetic import head_geometry as geo

# How far light reaches around the terminator because of scattering under the skin, per channel: red
# wraps furthest, which is why the shadow side of a face is warm.
_SKIN_WRAP = np.array([0.22, 0.09, 0.06], np.float32)
# Share of each channel's irradiance that is blurred by subsurface scattering (red scatters most).
_SCATTER_MIX = np.array([0.7, 0.45, 0.35], np.float32)
# Reflectance of skin at normal incidence is about 2.8 %; at grazing angles it rises towards 1.
_F0 = 0.028


@dataclasses.dataclass(frozen=True)
class Lighting:
    """Directions (unit, screen frame: x right, y down, z towards the camera) and linear RGB intensities.

    Attributes:
        key_direction: float32 [3] towards the key light.
        key_colour: float32 [3].
        key_softness: how far (in n.l) the key's light wraps past the terminator: the area light's size.
        fill_direction: float32 [3] towards the fill light.
        fill_colour: float32 [3].
        sky_colour: float32 [3] room light arriving from above.
        ground_colour: float32 [3] room light bounced up from below (clothes, desk, floor).
        rim_direction: float32 [3] towards a light behind the person (z < 0).
        rim_colour: float32 [3]; zero for seeds without a rim light.
        half_vector: float32 [3] Blinn-Phong half vector between the key light and the camera.
    """

    key_direction: np.ndarray
    key_colour: np.ndarray
    key_softness: float
    fill_direction: np.ndarray
    fill_colour: np.ndarray
    sky_colour: np.ndarray
    ground_colour: np.ndarray
    rim_direction: np.ndarray
    rim_colour: np.ndarray
    half_vector: np.ndarray

    @staticmethod
    def from_key(
        direction: tuple[float, float, float],
        colour: tuple[float, float, float],
        softness: float = 0.25,
        room: tuple[float, float, float] = (0.5, 0.5, 0.5),
        ground: tuple[float, float, float] = (0.4, 0.35, 0.3),
        rim: float = 0.0,
    ) -> Lighting:
        """A portrait rig around a key light.

        Args:
            direction: towards the key light (screen frame).
            colour: the key's colour (white balance offset), about 1 per channel.
            softness: area-light size as an n.l wrap, 0 (a point) .. 0.5 (a large window).
            room: linear RGB average colour of the room, which tints the ambient light.
            ground: linear RGB colour of what lies below the face (clothes), which tints the bounce light.
            rim: strength of a rim light from behind, on the side opposite the key (0 = none).

        Returns:
            The rig.
        """
        key = np.asarray(direction, np.float32)
        key = key / np.linalg.norm(key)
        fill = np.array([-0.8 * key[0], 0.1, 0.9], np.float32)
        fill /= np.linalg.norm(fill)
        half = key + np.array([0.0, 0.0, 1.0], np.float32)
        half /= np.linalg.norm(half)
        rim_dir = np.array([-np.sign(key[0]) * 0.75, -0.35, -0.55], np.float32)
        rim_dir /= np.linalg.norm(rim_dir)
        room_tint = np.asarray(room, np.float32) / (np.mean(room) + 1e-3)
        ground_tint = np.asarray(ground, np.float32) / (np.mean(ground) + 1e-3)
        key_colour = np.asarray(colour, np.float32)
        return Lighting(
            key_direction=key,
            key_colour=key_colour * 1.15,
            key_softness=float(softness),
            fill_direction=fill,
            fill_colour=(0.07 * (0.5 + 0.5 * room_tint)).astype(np.float32),
            sky_colour=(0.14 * (0.6 + 0.4 * room_tint)).astype(np.float32),
            ground_colour=(0.05 * (0.5 + 0.5 * ground_tint)).astype(np.float32),
            rim_direction=rim_dir,
            rim_colour=(rim * key_colour).astype(np.float32),
            half_vector=half.astype(np.float32),
        )


def shade_layers(layers: np.ndarray, normal: np.ndarray, light: Lighting, scatter_px: float) -> np.ndarray:
    """Outgoing radiance towards the camera of a layer stack (channels of ``head_geometry``).

    Args:
        layers: float32 [H, W, NUM_CHANNELS] material layers (albedo, specular, gloss, subsurface,
            occlusion, key shadow, sheen are read; the stored normal is not).
        normal: float32 [H, W, 3] unit normals in the screen frame.
        light: the light rig.
        scatter_px: subsurface scattering radius of red light, in pixels (about 3 mm on the face).

    Returns:
        float32 [H, W, 3] linear RGB radiance (may exceed 1 in highlights).
    """
    nx, ny, nz = normal[..., 0], normal[..., 1], normal[..., 2]
    albedo = layers[..., geo.ALBEDO]
    subsurface = layers[..., geo.SUBSURFACE]
    occlusion = layers[..., geo.OCCLUSION]
    visible = layers[..., geo.KEY_SHADOW]

    lk = light.key_direction
    n_dot_key = nx * lk[0] + ny * lk[1] + nz * lk[2]
    # A spherical area light of angular radius asin(s) lights a surface as n.l where it sees all of it and
    # as (n.l + s)^2 / 4s across the terminator; scattering under the skin widens s per channel.
    s = light.key_softness + subsurface[..., None] * _SKIN_WRAP
    ndl = n_dot_key[..., None]
    key = np.where(ndl >= s, ndl, np.square(np.maximum(ndl + s, 0.0)) / (4.0 * s))
    key *= visible[..., None] * light.key_colour
    lf = light.fill_direction
    fill = np.maximum((nx * lf[0] + ny * lf[1] + nz * lf[2] + 0.3) / 1.3, 0.0)
    up = 0.5 - 0.5 * ny  # 1 facing straight up, 0 facing down
    ambient = (up[..., None] * light.sky_colour + (1.0 - up[..., None]) * light.ground_colour) * occlusion[..., None]
    irradiance = key + fill[..., None] * light.fill_colour + ambient
    # Creases and the eye sockets are also partly shielded from the fill and the key's large source.
    irradiance *= (0.6 + 0.4 * occlusion)[..., None]
    if np.any(light.rim_colour > 0):
        lr = light.rim_direction
        rim = np.maximum(nx * lr[0] + ny * lr[1] + nz * lr[2], 0.0) * (1.0 - nz) * occlusion
        irradiance += rim[..., None] * light.rim_colour

    if scatter_px >= 0.5:
        irradiance = _subsurface_scatter(irradiance, subsurface, scatter_px)

    # Specular: Blinn-Phong lobes (a broad sheen and a tight highlight, mixed by gloss), Fresnel-weighted.
    lh = light.half_vector
    n_dot_half = np.clip(nx * lh[0] + ny * lh[1] + nz * lh[2], 0.0, 1.0)
    p2 = n_dot_half * n_dot_half
    p8 = np.square(np.square(p2))
    p64 = np.square(np.square(np.square(p8)))
    gloss = layers[..., geo.GLOSS]
    lobes = 0.28 * p8 * (1.0 - gloss) + 2.2 * p64 * gloss
    grazing = 1.0 - np.clip(nz, 0.0, 1.0)
    g2 = grazing * grazing
    fresnel = 1.0 + (1.0 / _F0 - 1.0) * g2 * g2 * grazing
    fresnel = np.minimum(fresnel, 6.0)  # 2.5-D normals at the silhouette are not trustworthy beyond this
    specular = layers[..., geo.SPECULAR]
    highlight = specular * lobes * visible * fresnel + layers[..., geo.SHEEN]
    # The room itself reflects in the skin at grazing angles (a soft sheen towards the outline).
    room_sheen = specular * 0.1 * (fresnel - 1.0) * occlusion
    return albedo * irradiance + highlight[..., None] * light.key_colour + room_sheen[..., None] * light.sky_colour


def _subsurface_scatter(irradiance: np.ndarray, subsurface: np.ndarray, scatter_px: float) -> np.ndarray:
    """Blur the irradiance of skin pixels, per channel, without bleeding light in from hair or background.

    Args:
        irradiance: float32 [H, W, 3].
        subsurface: float32 [H, W], 1 on skin, 0 elsewhere.
        scatter_px: blur radius (sigma) in pixels for red; green and blue mix in less of it.

    Returns:
        float32 [H, W, 3].
    """
    weighted = irradiance * subsurface[..., None]
    blurred = cv2.GaussianBlur(weighted, (0, 0), scatter_px)
    weight = cv2.GaussianBlur(subsurface, (0, 0), scatter_px)
    blurred /= np.maximum(weight, 1e-3)[..., None]
    mix = subsurface[..., None] * _SCATTER_MIX
    return irradiance + mix * (blurred - irradiance)
