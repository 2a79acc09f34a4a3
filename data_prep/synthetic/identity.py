"""Per-seed identity of a synthetic person: face shape, colouring, hair, clothing, scene and light.

Face geometry lives in "face units": 1 unit is half the cheekbone width of an average face (about 7 cm).
The canonical frame has u to the viewer's right, v downwards with v = 0 on the line through the pupils,
and z towards the camera.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# sRGB skin tones from very light to deep; a seed picks a point on this curve.
_SKIN_TONES = np.array(
    [
        [0.96, 0.83, 0.74],
        [0.92, 0.74, 0.62],
        [0.85, 0.64, 0.50],
        [0.75, 0.54, 0.40],
        [0.60, 0.41, 0.29],
        [0.44, 0.29, 0.20],
        [0.33, 0.22, 0.16],
    ]
)
_HAIR_COLOURS = np.array(
    [
        [0.06, 0.05, 0.05],  # black
        [0.16, 0.10, 0.07],  # dark brown
        [0.30, 0.19, 0.11],  # brown
        [0.45, 0.23, 0.12],  # auburn
        [0.62, 0.48, 0.30],  # dark blond
        [0.80, 0.68, 0.46],  # blond
        [0.55, 0.53, 0.52],  # grey
    ]
)
_IRIS_COLOURS = np.array(
    [
        [0.28, 0.16, 0.08],  # brown
        [0.15, 0.09, 0.05],  # dark brown
        [0.40, 0.32, 0.15],  # hazel
        [0.30, 0.40, 0.25],  # green
        [0.32, 0.45, 0.62],  # blue
        [0.42, 0.47, 0.50],  # grey
    ]
)
_IRIS_WEIGHTS = np.array([3.0, 3.0, 1.2, 0.7, 1.2, 0.5])

HAIR_SHORT, HAIR_BOB, HAIR_LONG = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class FaceIdentity:
    """Everything about a synthetic person and scene that stays fixed over a clip.

    Colours are sRGB triples in [0, 1]; lengths are face units unless stated otherwise.
    """

    skin: tuple[float, float, float]
    lip: tuple[float, float, float]
    masculine: bool
    age: float  # 0 (about 20 years) .. 1 (about 70 years): wrinkles, under-eye bags, grey hair
    blush: float  # strength of the red of cheeks, nose and ears (0..1)
    beard_shadow: float  # strength of a shaved-beard tint on jaw and upper lip (0..1)
    freckles: float  # amount of small dark spots (0..1)
    face_width: float  # half-width at the cheekbones (about 1)
    v_top: float  # top of the skull (negative)
    v_chin: float  # bottom of the chin
    jaw_taper: float  # how much the jaw narrows towards the chin (0 round .. 0.4 pointed)
    depth: float  # forward depth of the face relative to its half-width
    eye_x: float  # horizontal distance of each pupil from the midline
    eye_half_width: float
    eye_open_height: float  # upper-lid height above the pupil line when open
    brow_v: float  # vertical position of the brows
    brow_thickness: float
    brow_arch: float
    nose_v: float  # v of the nose tip
    nose_width: float  # half-width of the nostril wings
    mouth_v: float  # v of the line between the lips
    mouth_half_width: float
    upper_lip: float  # thickness of the upper lip
    lower_lip: float  # thickness of the lower lip
    iris: tuple[float, float, float]
    hair_style: int  # HAIR_SHORT, HAIR_BOB or HAIR_LONG
    hair: tuple[float, float, float]
    hair_volume: float  # thickness of the hair over the skull
    hairline_v: float  # v of the hairline at the midline
    hair_part: float  # u of the parting
    hair_wave: float  # 0 straight .. 1 wavy
    hair_grey: float  # share of grey strands (0..1)
    clothing: tuple[float, float, float]
    v_neck: bool  # neckline: V (True) or crew (False)
    background: tuple[tuple[float, float, float], tuple[float, float, float]]  # top and bottom colours
    background_accents: tuple[tuple[float, float, float], ...]  # colours of blurred shapes behind
    key_light: tuple[float, float, float]  # direction towards the key light (screen x right, y down, z out)
    key_colour: tuple[float, float, float]
    key_softness: float  # angular size of the key light (n.l wrap): 0.1 small lamp .. 0.45 large window
    rim_light: float  # strength of a light from behind (0 for most seeds)
    exposure: float  # camera exposure multiplier
    scale: float  # face units per frame height, as a fraction (about 0.19)
    offset: tuple[float, float]  # position of the pupil-line centre, fractions of width and height


def _palette(rng: np.random.Generator, table: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    index = rng.choice(len(table), p=None if weights is None else weights / weights.sum())
    jitter = rng.uniform(-0.03, 0.03, size=3)
    return np.clip(table[index] + jitter, 0.0, 1.0)


def sample_identity(seed: int) -> FaceIdentity:
    """Draw a person and scene from a seed.

    Args:
        seed: any non-negative integer; the same seed gives the same identity.

    Returns:
        The identity.
    """
    rng = np.random.default_rng([seed, 0x1D])
    tone = rng.uniform(0.0, len(_SKIN_TONES) - 1)
    low = int(np.floor(tone))
    high = min(low + 1, len(_SKIN_TONES) - 1)
    skin = (1 - (tone - low)) * _SKIN_TONES[low] + (tone - low) * _SKIN_TONES[high]
    # Undertone: some skins lean pink, others yellow/olive, at the same lightness.
    undertone = rng.uniform(-1.0, 1.0)
    skin = skin + undertone * np.array([0.012, -0.004, -0.025]) * (1.0 - 0.5 * tone / 6.0)
    skin = np.clip(skin * rng.uniform(0.96, 1.04) + rng.uniform(-0.012, 0.012, size=3), 0.0, 1.0)
    masculine = bool(rng.uniform() < 0.5)
    age = float(rng.beta(1.3, 2.2))
    # Lips are redder and darker than the skin around them; on dark skin they are closer to brown.
    lip_red = rng.uniform(0.5, 1.5)
    lip = np.clip(skin * np.array([0.86, 0.66, 0.68]) + np.array([0.04, -0.01, 0.0]) * lip_red, 0, 1)
    lip = lip * (1.0 - 0.12 * age * np.array([0.3, 1.0, 1.0]))

    hair_weights = np.array([3.0, 1.5, 0.8]) if masculine else np.array([0.8, 1.6, 2.5])
    hair_style = int(rng.choice(3, p=hair_weights / hair_weights.sum()))
    # Light hair is common only with light skin.
    light_skin = float(np.clip(1.0 - tone / 3.0, 0.0, 1.0))
    hair_colour_weights = np.array([3.0, 3.0, 2.5, 1.0 * light_skin, 1.2 * light_skin, 1.0 * light_skin, 0.0])
    hair = _palette(rng, _HAIR_COLOURS, hair_colour_weights + np.array([2.0, 1.0, 0, 0, 0, 0, 0]) * (1 - light_skin))
    hair_grey = float(np.clip((age - 0.45) * 1.8 + rng.uniform(-0.2, 0.2), 0.0, 0.9))
    iris_weights = _IRIS_WEIGHTS * np.array(
        [1.0, 1.0 + 3.0 * (1 - light_skin), 1.0, light_skin, light_skin, light_skin]
    )

    wall_hue = rng.uniform(0.0, 1.0)
    wall = _wall_colour(wall_hue, rng)
    wall_bottom = np.clip(wall * rng.uniform(0.6, 0.85) + rng.uniform(-0.03, 0.03, size=3), 0, 1)
    accents = tuple(
        tuple(float(c) for c in np.clip(_wall_colour(rng.uniform(), rng) * rng.uniform(0.6, 1.4), 0, 1))
        for _ in range(int(rng.integers(3, 7)))
    )
    clothing_hue = rng.uniform()
    clothing = _wall_colour(clothing_hue, rng) * rng.uniform(0.3, 1.0)

    # Key light up and to one side (loop to Rembrandt lighting), so the face is modelled by light and shade.
    key = np.array([rng.uniform(-0.8, -0.45), rng.uniform(-0.55, -0.2), rng.uniform(0.5, 0.75)])
    if rng.uniform() < 0.35:
        key[0] = -key[0]  # key light from the right for about a third of the seeds
    key /= np.linalg.norm(key)
    warmth = rng.uniform(-0.06, 0.08)
    key_colour = np.array([1.0 + warmth, 1.0, 1.0 - warmth])

    v_chin = rng.uniform(1.52, 1.68) + (0.04 if masculine else 0.0)
    return FaceIdentity(
        skin=_triple(skin),
        lip=_triple(lip),
        masculine=masculine,
        age=age,
        blush=float(rng.uniform(0.15, 0.5)),
        beard_shadow=float(rng.uniform(0.2, 0.6)) if masculine and rng.uniform() < 0.5 else 0.0,
        freckles=float(rng.uniform(0.1, 0.6)) if tone < 2.0 and rng.uniform() < 0.3 else 0.0,
        face_width=float(rng.uniform(0.94, 1.04) + (0.02 if masculine else 0.0)),
        v_top=float(rng.uniform(-1.78, -1.66)),
        v_chin=float(v_chin),
        jaw_taper=float(rng.uniform(0.05, 0.2) if masculine else rng.uniform(0.15, 0.32)),
        depth=float(rng.uniform(0.78, 0.9)),
        eye_x=float(rng.uniform(0.42, 0.47)),
        eye_half_width=float(rng.uniform(0.2, 0.225)),
        # The relaxed upper lid covers the top of the iris; more open than this reads as a startled stare.
        eye_open_height=float(rng.uniform(0.078, 0.092) * (1.0 - 0.1 * age)),
        # Women's brows sit higher, are thinner and more arched (plucked) than men's.
        brow_v=float(rng.uniform(-0.34, -0.29) if masculine else rng.uniform(-0.38, -0.32)),
        brow_thickness=float(rng.uniform(0.13, 0.18) if masculine else rng.uniform(0.09, 0.13)),
        brow_arch=float(rng.uniform(0.015, 0.045) if masculine else rng.uniform(0.035, 0.07)),
        nose_v=float(rng.uniform(0.55, 0.62)),
        nose_width=float(rng.uniform(0.17, 0.22) + 0.03 * tone / 6.0),
        mouth_v=float(rng.uniform(0.93, 1.0)),
        mouth_half_width=float(rng.uniform(0.32, 0.38)),
        upper_lip=float(rng.uniform(0.065, 0.1) * (1.0 - 0.25 * age)),
        lower_lip=float((rng.uniform(0.08, 0.12) if masculine else rng.uniform(0.1, 0.14)) * (1.0 - 0.2 * age)),
        iris=_triple(_palette(rng, _IRIS_COLOURS, iris_weights)),
        hair_style=hair_style,
        hair=_triple(hair),
        hair_volume=float(rng.uniform(0.12, 0.26) if hair_style == HAIR_SHORT else rng.uniform(0.2, 0.38)),
        hairline_v=float(rng.uniform(-1.08, -0.92) - (0.12 * age if masculine else 0.0)),
        hair_part=float(rng.choice([-0.35, 0.0, 0.35]) + rng.uniform(-0.05, 0.05)),
        hair_wave=float(rng.uniform(0.0, 1.0) ** 2),
        hair_grey=hair_grey,
        clothing=_triple(clothing),
        v_neck=bool(rng.uniform() < 0.4),
        background=(_triple(wall), _triple(wall_bottom)),
        background_accents=accents,
        key_light=_triple(key),
        key_colour=_triple(key_colour),
        key_softness=float(rng.uniform(0.1, 0.35)),
        rim_light=float(rng.uniform(0.3, 0.8)) if rng.uniform() < 0.3 else 0.0,
        # Cameras expose for the face (webcams meter on it), so deep skin is not left in the toe of the curve.
        exposure=float(rng.uniform(0.62, 0.8) * np.clip((0.8 / np.mean(skin)) ** 0.3, 1.0, 1.45)),
        scale=float(rng.uniform(0.18, 0.2)),
        offset=(float(rng.uniform(0.47, 0.53)), float(rng.uniform(0.4, 0.44))),
    )


def _wall_colour(hue: float, rng: np.random.Generator) -> np.ndarray:
    """A muted interior colour: low saturation, mid to high lightness."""
    angle = 2.0 * np.pi * hue
    chroma = rng.uniform(0.03, 0.14)
    lightness = rng.uniform(0.45, 0.85)
    rgb = lightness + chroma * np.array([np.cos(angle), np.cos(angle - 2.09), np.cos(angle + 2.09)])
    return np.clip(rgb, 0.0, 1.0)


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))
