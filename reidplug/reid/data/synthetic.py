"""An offline synthetic Re-ID dataset: procedurally drawn pedestrians in the exact Market-1501 layout.

Identities are built from a small shared palette of clothing colours, so many of
them wear the same colours in a different arrangement (top red / bottom blue
against top blue / bottom red, the same colours striped or plain, with or
without a bag). A global colour histogram confuses them; spatial structure tells
them apart. Each camera adds its own colour cast, lighting, background and
noise, so that matching across cameras has to be learned.

Every image is drawn from a random generator seeded by (seed, what, pid, camera,
index) and never by the order of drawing, so a given seed always gives the same
bytes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from reidplug.core.errors import ConfigError, DataError
from reidplug.core.processes import die_with_parent

# Bump whenever a change alters the images; it is part of the cache key.
GENERATOR_VERSION = 1
META_FILE = "synthetic.json"
MAX_CAMS = 9  # Market-1501 names hold the camera in one digit
MAX_IDS = 9999  # and the identity in four

# Clothing colours, apart in hue and lightness so that a camera's cast shifts
# them without turning one into another.
PALETTE = np.array(
    [
        (196, 36, 36),  # red
        (36, 72, 190),  # blue
        (40, 142, 62),  # green
        (228, 198, 48),  # yellow
        (232, 232, 226),  # white
        (32, 32, 38),  # black
        (128, 128, 132),  # grey
        (40, 182, 196),  # cyan
    ],
    dtype=np.float32,
)
HAIR = np.array([(28, 22, 20), (84, 54, 32), (196, 160, 96), (150, 150, 150), (140, 60, 30)], dtype=np.float32)
SKIN = np.array([(236, 196, 168), (208, 160, 120), (160, 112, 78), (104, 70, 48)], dtype=np.float32)
SHOES = np.array([(25, 25, 25), (235, 235, 235), (100, 64, 40)], dtype=np.float32)

TOP_PATTERNS = ("plain", "stripes", "checks", "block", "logo", "jacket")
BOTTOMS = ("trousers", "trousers", "shorts", "skirt")
BAGS = ("none", "none", "shoulder", "backpack")
TEXTURES = ("tiles", "shopfront", "plain", "bricks")
VIEWS = ("front", "back", "left", "right")

SUPERSAMPLE = 2  # drawn at twice the size and averaged down, for smooth edges

# How strongly a camera marks its images. Too strong and nothing short of a
# CNN can match across cameras; too weak and colour histograms suffice.
CAST = 0.06  # per-channel gains in 1 +- CAST
BRIGHTNESS = (0.85, 1.1)
BG_SATURATION = 0.15  # 0: grey backgrounds
BG_CAMERA = 0.5  # share of a background's colour that is the camera's own (the rest varies per image)
CLUTTER = 2  # at most this many objects in the background, minus one


@dataclass(frozen=True)
class Identity:
    """What a person looks like in every camera."""

    top: int
    top2: int
    pattern: str
    long_sleeves: bool
    bottom: int
    bottom_kind: str
    hair: int
    long_hair: bool
    hat: int  # palette index, -1 for none
    bag: str
    bag_colour: int
    bag_side: int
    skin: int
    shoes: int
    aspect: float  # person width / height
    build: float  # shoulder width factor
    period: float  # stripe and check size, in body heights


@dataclass(frozen=True)
class Camera:
    """What one camera does to every image it takes."""

    wall: tuple
    floor: tuple
    horizon: float
    texture: str
    tex_period: float
    gains: tuple
    brightness: float
    noise: float
    light_slope: float
    views: tuple  # probabilities of front, back, left, right


def _rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for one purpose, named by `key`; negative keys wrap around (numpy wants them unsigned)."""
    return np.random.default_rng([k & 0xFFFFFFFF for k in (seed, *key)])


def make_identity(seed: int, pid: int) -> Identity:
    """The deterministic appearance of identity `pid`."""
    rng = _rng(seed, 1, pid)
    n = len(PALETTE)
    top, top2, bottom = rng.choice(n, size=3, replace=False)
    if rng.random() < 0.35:
        bottom = top2  # the same two colours, arranged differently
    pattern = TOP_PATTERNS[rng.integers(len(TOP_PATTERNS))]
    bag = BAGS[rng.integers(len(BAGS))]
    return Identity(
        top=int(top),
        top2=int(top2),
        pattern=pattern,
        long_sleeves=bool(rng.random() < 0.6),
        bottom=int(bottom),
        bottom_kind=BOTTOMS[rng.integers(len(BOTTOMS))],
        hair=int(rng.integers(len(HAIR))),
        long_hair=bool(rng.random() < 0.35),
        hat=int(rng.integers(n)) if rng.random() < 0.25 else -1,
        bag=bag,
        bag_colour=int(rng.integers(n)),
        bag_side=int(rng.choice([-1, 1])),
        skin=int(rng.integers(len(SKIN))),
        shoes=int(rng.integers(len(SHOES))),
        aspect=float(rng.uniform(0.38, 0.48)),
        build=float(rng.uniform(0.85, 1.15)),
        period=float(rng.uniform(0.09, 0.12)),
    )


def make_camera(seed: int, cam: int) -> Camera:
    """The deterministic look of camera `cam` (0-based)."""
    rng = _rng(seed, 2, cam)
    views = rng.dirichlet([1.0, 1.0, 0.3, 0.3])
    gains = rng.uniform(1 - CAST, 1 + CAST, size=3)
    gains = gains / gains.mean() * rng.uniform(0.95, 1.05)
    return Camera(
        wall=tuple(_muted(rng, 40, 220)),
        floor=tuple(_muted(rng, 40, 200)),
        horizon=float(rng.uniform(0.55, 0.8)),
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        tex_period=float(rng.uniform(0.08, 0.2)),
        gains=tuple(gains),
        brightness=float(rng.uniform(*BRIGHTNESS)),
        noise=float(rng.uniform(2.0, 8.0)),
        light_slope=float(rng.uniform(-0.25, 0.25)),
        views=tuple(views),
    )


def _muted(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A random colour, pulled towards grey by BG_SATURATION."""
    colour = rng.uniform(low, high, size=3)
    return (colour.mean() + (colour - colour.mean()) * BG_SATURATION).astype(np.float32)


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy + 0.5, xx + 0.5


def _background(cam: Camera, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = _grid(h, w)
    img = np.empty((h, w, 3), np.float32)
    horizon = (cam.horizon + rng.uniform(-0.05, 0.05)) * h
    mix = BG_CAMERA
    wall = (mix * np.asarray(cam.wall, np.float32) + (1 - mix) * _muted(rng, 40, 220)) * rng.uniform(0.9, 1.1)
    floor = (mix * np.asarray(cam.floor, np.float32) + (1 - mix) * _muted(rng, 40, 200)) * rng.uniform(0.9, 1.1)
    below = yy >= horizon
    img[:] = wall
    img[below] = floor
    period = cam.tex_period * h
    ox, oy = rng.uniform(0, period, size=2)
    if cam.texture == "tiles":
        lines = ((xx + ox) % period < 1) | ((yy + oy) % (period * 0.6) < 1)
        img[lines & below] *= 0.7
    elif cam.texture == "shopfront":
        panels = ((xx + ox) // period) % 2 == 0
        img[panels & ~below] = img[panels & ~below] * 0.6 + 255 * 0.25
    elif cam.texture == "bricks":
        row = (yy + oy) // (period * 0.4)
        mortar = ((yy + oy) % (period * 0.4) < 1) | ((xx + ox + (row % 2) * period / 2) % period < 1)
        img[mortar & ~below] *= 0.6
    # Clutter: parked things and passers-by in random colours, so that the
    # background's colours vary from image to image within a camera.
    for _ in range(rng.integers(0, CLUTTER)):
        cw, ch = rng.uniform(0.1, 0.45) * w, rng.uniform(0.05, 0.3) * h
        x0, y0 = rng.uniform(-cw / 2, w - cw / 2), rng.uniform(0, h - ch)
        box = (xx >= x0) & (xx < x0 + cw) & (yy >= y0) & (yy < y0 + ch)
        img[box] = rng.uniform(30, 230, size=3) if rng.random() < 0.5 else PALETTE[rng.integers(len(PALETTE))]
    return img


class _Layers:
    """Body parts as a label map over the person's rectangle, coloured once at the end."""

    def __init__(self, shape: tuple[int, int]):
        self.labels = np.zeros(shape, np.uint8)
        self.colours: list = [(0.0, 0.0, 0.0)]
        self.shaded: list[bool] = [False]

    def paint(self, mask: np.ndarray, colour, *, shaded: bool = True) -> None:
        self.colours.append(colour)
        self.shaded.append(shaded)
        np.putmask(self.labels, mask, len(self.colours) - 1)

    def compose(self, img: np.ndarray, shade: np.ndarray) -> None:
        lut = np.asarray(self.colours, np.float32)
        factor = np.where(np.asarray(self.shaded)[self.labels], shade, np.float32(1.0))
        colour = np.take(lut, self.labels, axis=0) * factor[..., None]
        np.copyto(img, colour, where=(self.labels > 0)[..., None])


def _person(canvas: np.ndarray, ident: Identity, rng: np.random.Generator, view: str, box: tuple) -> None:
    """Draw `ident` seen from `view` into `canvas`, within box (centre x, top, width, height) in pixels."""
    h, w = canvas.shape[:2]
    cx, top, pw, ph = box
    # only the rectangle around the person is computed (nothing is drawn beyond 0.55 widths from the centre)
    r0, r1 = max(int(top), 0), min(int(top + ph) + 1, h)
    c0, c1 = max(int(cx - 0.55 * pw), 0), min(int(cx + 0.55 * pw) + 1, w)
    if r0 >= r1 or c0 >= c1:
        return
    yy, xx = _grid(h, w)
    u = (xx[r0:r1, c0:c1] - cx) / pw  # -0.5 .. 0.5 across the person
    v = (yy[r0:r1, c0:c1] - top) / ph  # 0 at the top of the head, 1 under the feet
    layers = _Layers(u.shape)
    paint = layers.paint
    side = view in ("left", "right")
    facing = 1 if view == "right" else -1
    jitter = rng.normal(0, 6, size=3).astype(np.float32)  # the same clothes under slightly different light
    top_c = PALETTE[ident.top] + jitter
    top2_c = PALETTE[ident.top2] + jitter
    bottom_c = PALETTE[ident.bottom] + jitter
    bag_c = PALETTE[ident.bag_colour] + jitter
    skin = SKIN[ident.skin]
    hair = HAIR[ident.hair]
    uc = np.clip(u, -0.5, 0.5)
    shade = 1.0 - 0.5 * uc**2 - (0.15 * facing * uc if side else 0.0)

    shoulder = (0.2 if side else 0.3) * ident.build
    waist = (0.17 if side else 0.24) * ident.build
    t0, t1 = 0.17, 0.53  # torso rows
    # A backpack seen from the side sticks out behind the torso.
    if ident.bag == "backpack" and side:
        back = u * facing
        paint((back < -shoulder * 0.8) & (back > -shoulder * 0.8 - 0.22) & (v > 0.2) & (v < 0.47), bag_c)

    # legs: two quadrilaterals from the hips to the ankles, apart while walking
    swing = rng.uniform(0.0, 0.16) if side else rng.uniform(0.0, 0.05)
    leg_w = 0.085 * ident.build
    frac = np.clip((v - t1) / (0.95 - t1), 0, 1)
    cut = {"shorts": 0.7, "skirt": 0.74}.get(ident.bottom_kind, 2.0)
    for sign in (-1, 1):
        hip = sign * (0.04 if side else 0.1)
        ankle = hip + sign * swing
        leg = (np.abs(u - hip - (ankle - hip) * frac) < leg_w) & (v >= t1 - 0.02) & (v < 0.96)
        paint(leg & (v < cut), bottom_c)
        paint(leg & (v >= cut), skin)
        shoe = (np.abs(u - ankle - 0.02 * facing * side) < leg_w * 1.15) & (v >= 0.95) & (v < 1.0)
        paint(shoe, SHOES[ident.shoes], shaded=False)
    if ident.bottom_kind == "skirt":
        paint((np.abs(u) < waist + (v - t1) * 0.5) & (v >= t1 - 0.02) & (v < cut), bottom_c)

    # torso, with the identity's pattern
    half = shoulder + (waist - shoulder) * np.clip((v - t0) / (t1 - t0), 0, 1)
    torso = (np.abs(u) < half) & (v >= t0) & (v < t1)
    p = ident.period
    second = None
    if ident.pattern == "stripes":
        second = ((v - t0) // p) % 2 == 1
    elif ident.pattern == "checks":
        second = (((v - t0) // p) + ((u * pw / ph + 1) // p)) % 2 == 1
    elif ident.pattern == "block":
        second = v >= (t0 + t1) / 2
    elif ident.pattern == "logo" and not side:  # printed on the front and the back
        second = (np.abs(u) < 0.09) & (np.abs(v - 0.31) < 0.09 * pw / ph)
    elif ident.pattern == "jacket" and view == "front":
        second = np.abs(u) < 0.07
    paint(torso, top_c)
    if second is not None:
        paint(torso & second, top2_c)

    # arms: at the sides seen from front or back, one swinging arm from the side
    sleeve_end = 0.5 if ident.long_sleeves else 0.26
    if side:
        arm = (np.abs(u - rng.uniform(-0.06, 0.06)) < 0.055) & (v >= t0 + 0.02) & (v < 0.5)
        paint(arm & (v < sleeve_end), top_c * 0.8, shaded=False)
        paint(arm & (v >= sleeve_end), skin * 0.9, shaded=False)
    else:
        arm = (np.abs(u) >= half) & (np.abs(u) < half + 0.075) & (v >= t0 + 0.01) & (v < 0.5)
        paint(arm & (v < sleeve_end), top_c * 0.9)
        paint(arm & (v >= sleeve_end), skin)
        if ident.bag == "backpack" and view == "back":
            paint((np.abs(u) < shoulder * 0.6) & (v > 0.22) & (v < 0.42), bag_c)
        elif ident.bag == "backpack":
            paint((np.abs(np.abs(u) - shoulder * 0.55) < 0.035) & (v >= t0) & (v < 0.42), bag_c, shaded=False)
    if ident.bag == "shoulder":
        bside = ident.bag_side * (-1 if view == "back" else 1)
        bx = -0.05 * facing if side else bside * (shoulder + 0.06)
        if not side:  # the strap runs across the chest from the far shoulder
            start = -bside * shoulder * 0.7
            along = start + (v - t0) / (0.42 - t0) * (bx - start)
            paint((np.abs(u - along) < 0.03) & (v >= t0) & (v < 0.42), bag_c, shaded=False)
        paint((np.abs(u - bx) < 0.11) & (v > 0.38) & (v < 0.57), bag_c)

    # head, hair and hat
    hx = 0.03 * facing if side else 0.0
    uh = u - hx
    head = (uh / 0.13) ** 2 + ((v - 0.085) / 0.068) ** 2 < 1
    paint((np.abs(uh) < 0.05) & (v >= 0.14) & (v < t0 + 0.01), skin * 0.9, shaded=False)
    paint(head, skin, shaded=False)
    if view == "back":
        hair_mask = head
    elif side:
        hair_mask = head & ((v < 0.055) | (uh * facing < -0.02))
    else:
        hair_mask = head & (v < 0.055)
    if ident.long_hair:
        flow = (np.abs(uh) < 0.15) & (v >= 0.06) & (v < 0.27)
        hair_mask = hair_mask | (flow if view == "back" else flow & ~head & (np.abs(uh) > 0.09))
    paint(hair_mask, hair, shaded=False)
    if ident.hat >= 0:
        crown = ((uh / 0.15) ** 2 + ((v - 0.06) / 0.065) ** 2 < 1) & (v < 0.06)
        brim = (np.abs(uh - 0.05 * facing * side) < 0.18) & (np.abs(v - 0.057) < 0.012)
        paint(crown | brim, PALETTE[ident.hat] * 0.95, shaded=False)
    layers.compose(canvas[r0:r1, c0:c1], shade.astype(np.float32))


def _finish(img: np.ndarray, cam: Camera, rng: np.random.Generator, *, occlude: bool, blur: float) -> Image.Image:
    """Occlusion, camera cast, lighting, noise and blur; `img` is drawn at SUPERSAMPLE times the size."""
    h, w = img.shape[:2]
    yy, xx = _grid(h, w)
    if occlude:
        if rng.random() < 0.5:  # a pole or a post in front of the person
            pw = rng.uniform(0.06, 0.14) * w
            x0 = rng.uniform(0.1, 0.9) * w - pw / 2
            img[(xx >= x0) & (xx < x0 + pw)] = rng.uniform(40, 200, size=3)
        else:  # something in the foreground hides the legs
            top = rng.uniform(0.6, 0.8) * h
            img[yy >= top] = rng.uniform(40, 200, size=3)
    f = SUPERSAMPLE
    img = sum(img[i::f, j::f] for i in range(f) for j in range(f)) * (1.0 / (f * f))
    light = 1.0 + cam.light_slope * (xx[::f, ::f] / w - 0.5) * 2
    gain = np.asarray(cam.gains, np.float32) * cam.brightness * rng.uniform(0.9, 1.1)
    img = img * gain * light[..., None] + rng.normal(0, cam.noise, size=img.shape).astype(np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if blur > 0:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    return out


def render(
    ident: Identity | None,
    cam: Camera,
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    detection: str = "good",
) -> Image.Image:
    """One image of `ident` (background only when None) seen by `cam`.

    `detection` "fragment" is a box far too small for the person (a part of a
    body); "offset" is a box that mostly misses them (Market-1501's distractors
    and junk are such false detections).
    """
    f = SUPERSAMPLE
    h, w = height * f, width * f
    # the background has no fine edges worth supersampling
    bg = _background(cam, rng, height, width)
    img = np.broadcast_to(bg[:, None, :, None, :], (height, f, width, f, 3)).reshape(h, w, 3).copy()
    if ident is not None:
        view = VIEWS[rng.choice(4, p=np.asarray(cam.views))]
        ph = h * rng.uniform(0.84, 0.97) * (0.96 + 0.04 * ident.build)
        cx = w / 2 + rng.uniform(-0.08, 0.08) * w
        top = rng.uniform(-0.02 * h, max(h - ph, 0) + 0.03 * h)
        if detection == "fragment":
            ph *= rng.uniform(1.6, 2.6)
            top = rng.uniform(-ph * 0.6, 0)
        elif detection == "offset":
            cx += rng.choice([-1, 1]) * rng.uniform(0.45, 0.7) * w
            top += rng.uniform(-0.3, 0.3) * h
        pw = ph * ident.aspect * (0.75 if view in ("left", "right") else 1.0)
        _person(img, ident, rng, view, (cx, top, pw, ph))
    occlude = rng.random() < 0.1
    blur = float(rng.uniform(0.3, 0.8)) if rng.random() < 0.2 else 0.0
    return _finish(img, cam, rng, occlude=occlude, blur=blur)


def _encode(img: Image.Image) -> bytes:
    buf = BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@dataclass(frozen=True)
class _Shot:
    split: str  # bounding_box_train, query, bounding_box_test
    pid: int  # -1 junk, 0 distractor
    cam: int  # 0-based
    index: int
    name: str


def plan(*, ids: int, cams: int, seed: int) -> list[_Shot]:
    """Which images the dataset holds, with their Market-1501 file names."""
    check_params(ids=ids, cams=cams)
    rng = _rng(seed, 0)
    pids = rng.permutation(np.arange(1, ids + 1))
    n_train = (ids + 1) // 2
    train_pids = {int(p) for p in pids[:n_train]}
    frames = [[0] * 7 for _ in range(cams)]  # next frame number per camera and sequence
    shots: list[_Shot] = []

    def name(pid: int, cam: int, r: np.random.Generator) -> str:
        seq = int(r.integers(1, 7))
        frames[cam][seq] += int(r.integers(5, 60))
        tag = "-1" if pid < 0 else f"{pid:04d}"
        return f"{tag}_c{cam + 1}s{seq}_{frames[cam][seq]:06d}_{int(r.integers(1, 6)):02d}.jpg"

    for pid in range(1, ids + 1):
        r = _rng(seed, 3, pid)
        n_cams = int(r.integers(2, min(cams, 5) + 1))
        seen = sorted(int(c) for c in r.choice(cams, size=n_cams, replace=False))
        for cam in seen:
            count = int(r.integers(2, 7))
            for k in range(count):
                if pid in train_pids:
                    split = "bounding_box_train"
                else:
                    split = "query" if k == 0 else "bounding_box_test"
                shots.append(_Shot(split, pid, cam, k, name(pid, cam, r)))
    r = _rng(seed, 4)
    n_gallery = sum(s.split == "bounding_box_test" for s in shots)
    for k in range(max(1, n_gallery // 6)):  # distractors: false detections no query matches
        cam = int(r.integers(cams))
        shots.append(_Shot("bounding_box_test", 0, cam, k, name(0, cam, r)))
    for k in range(max(1, ids // 2)):  # junk: fragments and background, dropped by the loader
        split = "bounding_box_train" if k % 3 == 0 else "bounding_box_test"
        cam = int(r.integers(cams))
        shots.append(_Shot(split, -1, cam, k, name(-1, cam, r)))
    return shots


def draw(shot: _Shot, *, seed: int, height: int, width: int, cameras: list[Camera]) -> bytes:
    """The JPEG bytes of one planned image."""
    rng = _rng(seed, 5, shot.pid, shot.cam, shot.index)
    cam = cameras[shot.cam]
    if shot.pid > 0:
        return _encode(render(make_identity(seed, shot.pid), cam, rng, height, width))
    # distractors and junk: false detections of passers-by seen once, or of nothing at all
    stranger = make_identity(seed, (100_000 if shot.pid == 0 else 200_000) + shot.index)
    kind = ("background", "fragment", "offset")[rng.integers(3)]
    if kind == "background":
        return _encode(render(None, cam, rng, height, width))
    return _encode(render(stranger, cam, rng, height, width, detection=kind))


def check_params(*, ids: int, cams: int, height: int = 128, width: int = 64) -> None:
    if not 2 <= ids <= MAX_IDS:
        raise ConfigError(f"must lie in [2, {MAX_IDS}], got {ids}", key="DATASETS.SYNTH.IDS")
    if not 2 <= cams <= MAX_CAMS:
        raise ConfigError(f"must lie in [2, {MAX_CAMS}] (Market-1501 names hold one camera digit), got {cams}", key="DATASETS.SYNTH.CAMS")
    if height < 16 or width < 8:
        raise ConfigError(f"images must be at least 16x8, got {height}x{width}", key="DATASETS.SYNTH.HEIGHT")


def params_key(*, ids: int, cams: int, seed: int, height: int, width: int) -> str:
    """The cache folder name for these generator parameters."""
    return f"market-v{GENERATOR_VERSION}-ids{ids}-cams{cams}-seed{seed}-{height}x{width}"


def generate(
    out_dir: str | os.PathLike,
    *,
    ids: int,
    cams: int,
    seed: int,
    height: int = 128,
    width: int = 64,
    progress: bool = True,
) -> dict:
    """Write the dataset into `out_dir` (created atomically) and return its image counts per split.

    A folder already holding the same dataset is left as it is; one holding
    anything else is an error.
    """
    check_params(ids=ids, cams=cams, height=height, width=width)
    out = Path(out_dir).expanduser()
    params = {"ids": ids, "cams": cams, "seed": seed, "height": height, "width": width, "version": GENERATOR_VERSION}
    existing = read_meta(out)
    if existing is not None and existing.get("params") == params:
        return existing["counts"]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not this synthetic dataset; choose another folder or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        counts = _write(tmp, params, progress=progress, label=str(out))
        try:
            if out.exists():
                out.rmdir()  # an empty folder is replaced
            os.rename(tmp, out)
        except OSError:
            # another process finished the same dataset first: keep theirs
            theirs = read_meta(out)
            if theirs is None or theirs.get("params") != params:
                raise DataError(f"{out}: cannot move the generated dataset into place") from None
            return theirs["counts"]
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return counts


def read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / META_FILE).read_text())
    except (OSError, ValueError):
        return None


PARALLEL_FROM = 400  # images; below this, starting worker processes costs more than it saves


def _draw_chunk(args: tuple) -> list[bytes]:
    shots, seed, height, width, cams = args
    cameras = [make_camera(seed, c) for c in range(cams)]
    return [draw(shot, seed=seed, height=height, width=width, cameras=cameras) for shot in shots]


def _write(tmp: Path, params: dict, *, progress: bool, label: str, workers: int | None = None) -> dict:
    seed, height, width, cams = params["seed"], params["height"], params["width"], params["cams"]
    shots = plan(ids=params["ids"], cams=cams, seed=seed)
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp / split).mkdir(parents=True)
    counts = {"bounding_box_train": 0, "query": 0, "bounding_box_test": 0}
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if len(shots) >= PARALLEL_FROM else 1
    chunks = [shots[i : i + 64] for i in range(0, len(shots), 64)]
    jobs = [(chunk, seed, height, width, cams) for chunk in chunks]
    with _progress_bar(len(shots), f"synthesising {label}", enabled=progress) as bar:
        if workers > 1:
            # spawn, not fork: the caller may be a training process with threads running
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=die_with_parent)
            results = pool.map(_draw_chunk, jobs)
        else:
            pool, results = None, map(_draw_chunk, jobs)
        try:
            for chunk, images in zip(chunks, results):
                for shot, data in zip(chunk, images):
                    (tmp / shot.split / shot.name).write_bytes(data)
                    counts[shot.split] += 1
                bar.advance(len(chunk))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    meta = {"params": params, "counts": counts, "format": "Market-1501"}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return counts


def _progress_bar(total: int, label: str, *, enabled: bool):
    import contextlib

    from reidplug.core import progress as progress_mod

    if not enabled:
        return contextlib.nullcontext(_NoBar())
    return progress_mod.bar(label, total, unit="images")


class _NoBar:
    def advance(self, n: int = 1) -> None:
        pass
