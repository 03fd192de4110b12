"""Faster renderers for Gymnasium's ``CarRacing-v3``.

Gymnasium's CarRacing spends almost all of a step in ``_render("state_pixels")``:
it draws ~800 polygons (400 grass patches plus the road tiles and kerbs) on a
fresh 1000x800 pygame surface, doing the zoom/rotate/translate maths per vertex
in Python, flips the surface, builds a new ``pygame.font.Font`` for the score
and finally smoothscales to 96x96.  Physics (Box2D) is only a few percent of a
step.

:class:`CarRacing` subclasses the official environment and only replaces the
``state_pixels`` rendering; physics, track generation, seeding, rewards and
termination are the parent's code.  Three renderers are available:

``"official"``
    no override at all: the parent's rendering.

``"exact"``
    bit-identical observations to the official environment, faster:

    * polygon geometry is cached per track as numpy arrays and the per-frame
      zoom/rotate/translate is vectorised (the exact same IEEE double
      operations pygame's ``Vector2.rotate_rad`` does, so the float
      coordinates handed to ``pygame.gfxdraw`` are identical);
    * only polygons that can put a pixel into the visible part of the frame
      are drawn (the official culling test is still applied on top; polygons
      entirely off-screen, or entirely under the black indicator bar that is
      painted over the bottom 100 rows after the flip, are skipped, and those
      100 rows are neither cleared nor flipped);
    * when the grass-coloured playfield covers the whole screen, the
      background polygon is replaced by ``Surface.fill`` with the colour
      gfxdraw would have produced;
    * the car's Box2D ``transform * vertex`` products are done in numpy with
      the same float32 operations;
    * the 1000x800 surfaces are reused (the flip is a numpy row copy), the
      font is built once and rendered score strings are cached.

    What remains is pygame's own pixel work (gfxdraw fills/anti-aliased
    outlines, the flip copy and the 1000x800 -> 96x96 smoothscale).

``"fast"``
    approximate observations, never drawing at 1000x800:

    * grass, road tiles and kerbs: ``cv2.fillPoly`` (sub-pixel fixed point,
      one call per colour) on a 2x supersampled 192x192 canvas with the same
      camera transform, then ``cv2.INTER_AREA`` down to 96x96;
    * the car (always at the same screen spot): drawn by pygame, exactly as
      ``Car.draw`` does, into a 64x96 full-resolution patch that is
      area-averaged into the frame (on the canvas its fixed position would
      give a constant, visible bias);
    * indicator bars: their exact area coverage; score text: cached per
      string, area-downsampled from pygame's rendering;
    * pygame's fixed-point smoothscale darkens flat areas by 2 levels: the
      same table is applied.

    Mean absolute error vs. official is about 0.2-0.4/255 per frame (worst
    frames ~1.2/255, during the zoom-in of the first second);
    ``scripts/bench_render.py`` measures it.

``render_mode="human"``/``"rgb_array"`` rendering always uses the parent's code.

Use :func:`register` to make ``gymnasium.make("worldmodels/CarRacing-v3",
renderer=...)`` available.  This module must not import torch.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import gymnasium
import numpy as np
import pygame
from gymnasium.envs.box2d import car_dynamics as _cd
from gymnasium.envs.box2d import car_racing as _cr
from pygame import gfxdraw

from . import CARRACING_ID

__all__ = ["CarRacing", "RENDERERS", "ENV_ID"]

RENDERERS = ("official", "exact", "fast")
ENV_ID = CARRACING_ID

_W = _cr.WINDOW_W  # 1000
_H = _cr.WINDOW_H  # 800
_SW = _cr.STATE_W  # 96
_SH = _cr.STATE_H  # 96
_MAX_DIM = _cr.MAX_SHAPE_DIM
_BAR_ROWS = int(round(_H * 5 / 40.0))  # indicator bar: bottom 100 rows after the flip

# Grass patches, in the parent's drawing order (x outer loop, y inner loop).
_GRASS = np.array(
    [
        [
            (_cr.GRASS_DIM * x + _cr.GRASS_DIM, _cr.GRASS_DIM * y + 0),
            (_cr.GRASS_DIM * x + 0, _cr.GRASS_DIM * y + 0),
            (_cr.GRASS_DIM * x + 0, _cr.GRASS_DIM * y + _cr.GRASS_DIM),
            (_cr.GRASS_DIM * x + _cr.GRASS_DIM, _cr.GRASS_DIM * y + _cr.GRASS_DIM),
        ]
        for x in range(-20, 20, 2)
        for y in range(-20, 20, 2)
    ],
    dtype=np.float64,
)
_B = _cr.PLAYFIELD
_FIELD = [(_B, _B), (_B, -_B), (-_B, -_B), (-_B, _B)]

# Fast renderer constants.
_SHIFT = 4  # cv2 fixed-point fractional bits
_TEXT_COLS = 125  # score text lives in x < 125 (12 output columns exactly)
_PATCH_CACHE: dict = {}
_WW = _cd.WHEEL_W * _cd.SIZE
_WR = _cd.WHEEL_R * _cd.SIZE
_FIELD_ARR = np.array(_FIELD, dtype=np.float64)
_CAR_GEOM = None


def _car_geometry(car):
    """Car polygons in body coordinates, in ``Car.draw`` order and vertex order.

    Returns (local (n, 2), body index (n,), hull polygon slices, n_fixed).
    Vertices come from the Box2D shapes themselves (Box2D reorders them and
    stores float32), so pygame gets the very same polygons as ``Car.draw``;
    the last 16 rows are the white wheel stripes (y filled in per frame).
    """
    global _CAR_GEOM
    if _CAR_GEOM is None:
        local, body, hull = [], [], []
        n = 0
        for bi, obj in enumerate(car.drawlist):
            for f in obj.fixtures:
                v = np.array(f.shape.vertices, dtype=np.float64)
                if bi == 4:
                    hull.append((n, n + len(v)))
                local.append(v)
                body.append(np.full(len(v), bi))
                n += len(v)
        assert [len(b) for b in body[:4]] == [4] * 4 and len(car.drawlist) == 5
        stripe = np.array([(-_WW, 0.0), (_WW, 0.0), (_WW, 0.0), (-_WW, 0.0)])
        local.append(np.tile(stripe, (4, 1)))
        body.append(np.repeat(np.arange(4), 4))
        _CAR_GEOM = (np.concatenate(local), np.concatenate(body), tuple(hull), n)
    return _CAR_GEOM


# The car is always drawn around screen point (W/2, H/4) before the flip, i.e.
# (500, 600) in the final frame.  The fast renderer draws it with pygame at full
# resolution in this small patch (final-frame pixels x in [X0, X1), y in
# [Y0, Y1)) and area-averages the patch into the output pixels it touches.
_CP_X0, _CP_X1 = 468, 532
_CP_Y0, _CP_Y1 = 550, 646


def _box_weights(lo: int, hi: int, size: float):
    """Area weights (n_out, hi-lo) of full-res pixels [lo, hi) in output pixels of ``size``."""
    o0 = int(math.floor(lo / size))
    o1 = int(math.ceil(hi / size))
    px = np.arange(lo, hi, dtype=np.float64)
    edges = np.arange(o0, o1 + 1, dtype=np.float64) * size
    ov = np.minimum(px[None, :] + 1, edges[1:, None]) - np.maximum(px[None, :], edges[:-1, None])
    return o0, o1, (np.clip(ov, 0.0, None) / size).astype(np.float32)


_CP_J0, _CP_J1, _CP_WX = _box_weights(_CP_X0, _CP_X1, _W / _SW)
_CP_I0, _CP_I1, _CP_WY = _box_weights(_CP_Y0, _CP_Y1, _H / _SH)
_CP_WX = np.ascontiguousarray(_CP_WX.T)  # (patch cols, out cols)
_CP_WY_PRE = np.ascontiguousarray(_CP_WY[:, ::-1])  # applies to pre-flip patch rows
# Output pixel edges in full-res coordinates.
_OUT_EDGES_X = np.arange(_SW + 1) * (_W / _SW)
_OUT_EDGES_Y = np.arange(_SH + 1) * (_H / _SH)

# Text cache shared by all envs of a process: score string -> (surface, rect).
_FONT: pygame.font.Font | None = None
_TEXT_CACHE: dict = {}
_TEXT_CACHE_MAX = 4096


def _get_font() -> pygame.font.Font:
    global _FONT
    if _FONT is None:
        pygame.font.init()
        _FONT = pygame.font.Font(pygame.font.get_default_font(), 42)
    return _FONT


def _score_text(reward: float):
    """(surface, rect) of the score text exactly as the parent renders it."""
    s = f"{reward:04.0f}"
    hit = _TEXT_CACHE.get(s)
    if hit is None:
        text = _get_font().render(s, True, (255, 255, 255), (0, 0, 0))
        rect = text.get_rect()
        rect.center = (60, _H - _H * 2.5 / 40.0)
        if len(_TEXT_CACHE) >= _TEXT_CACHE_MAX:
            _TEXT_CACHE.clear()
        hit = _TEXT_CACHE[s] = (s, text, rect)
    return hit


_SMOOTH_LUT: np.ndarray | None = None
_LUT_IS_MINUS_2 = False


def _smoothscale_lut() -> np.ndarray:
    """What ``smoothscale(1000x800 -> 96x96)`` does to a flat area of value v.

    The filter is separable (X pass per row, then Y pass per column) and its
    result on flat input does not depend on position, so two small
    smoothscales (X only, Y only) give the exact 256-entry table.
    """
    global _SMOOTH_LUT, _LUT_IS_MINUS_2
    if _SMOOTH_LUT is None:
        v = np.arange(256, dtype=np.uint8)
        rows = np.repeat(np.repeat(v[None, :, None], _W, 0), 3, 2)  # (W, 256, 3)
        sx = pygame.transform.smoothscale(pygame.surfarray.make_surface(rows), (_SW, 256))
        u = pygame.surfarray.array3d(sx)[0, :, 0]
        cols = np.repeat(np.repeat(v[:, None, None], _H, 1), 3, 2)  # (256, H, 3)
        sy = pygame.transform.smoothscale(pygame.surfarray.make_surface(cols), (256, _SH))
        w = pygame.surfarray.array3d(sy)[:, 0, 0]
        _SMOOTH_LUT = np.ascontiguousarray(w[u]).astype(np.uint8)
        _LUT_IS_MINUS_2 = bool((_SMOOTH_LUT == np.maximum(np.arange(256) - 2, 0)).all())
    return _SMOOTH_LUT


def _rot_cs(angle: float) -> tuple[float, float]:
    """(cos, sin) exactly as pygame's ``Vector2.rotate_rad`` uses them.

    ``Vector2((1, 0)).rotate_rad(a)`` is ``(c*1 - s*0, s*1 + c*0) == (c, s)``,
    including pygame's special cases for multiples of 90 degrees, so
    ``(c*x - s*y, s*x + c*y)`` reproduces ``Vector2((x, y)).rotate_rad(a)``
    bit for bit.
    """
    v = pygame.math.Vector2(1.0, 0.0).rotate_rad(angle)
    return v[0], v[1]


class CarRacing(_cr.CarRacing):
    """Gymnasium CarRacing with a choice of observation renderer.

    Args:
        renderer: ``"official"``, ``"exact"`` or ``"fast"`` (see module docs).
        other arguments: as :class:`gymnasium.envs.box2d.car_racing.CarRacing`.
    """

    # Supersampling factor of the fast renderer (canvas = 96*K x 96*K).
    FAST_SUPERSAMPLE = 2
    # Sub-pixel offset (full-resolution pixels) applied to the fast scene.
    FAST_OFFSET = (0.0, 0.0)

    # The parent's __init__ sets these to None and fills them later, so its inferred type is None.
    road: list  # type: ignore[assignment]
    surf: pygame.Surface | None  # type: ignore[assignment]
    clock: pygame.time.Clock | None  # type: ignore[assignment]

    def __init__(
        self,
        render_mode: str | None = None,
        verbose: bool = False,
        lap_complete_percent: float = 0.95,
        domain_randomize: bool = False,
        continuous: bool = True,
        renderer: str = "fast",
    ):
        if renderer not in RENDERERS:
            raise ValueError(
                f"CarRacing: unknown renderer {renderer!r}; expected one of "
                f"{', '.join(repr(r) for r in RENDERERS)}"
            )
        super().__init__(
            render_mode=render_mode,
            verbose=verbose,
            lap_complete_percent=lap_complete_percent,
            domain_randomize=domain_randomize,
            continuous=continuous,
        )
        # Re-record constructor args so that pickling/copying keeps the renderer.
        gymnasium.utils.EzPickle.__init__(
            self,
            render_mode,
            verbose,
            lap_complete_percent,
            domain_randomize,
            continuous,
            renderer,
        )
        self.renderer = renderer
        # Set by worldmodels.envs.ActionRepeat on the held steps whose frame nobody sees: step()
        # then keeps the previous state instead of drawing one (physics and rewards unchanged).
        self.skip_render = False
        self._skipped_reward = 0.0
        self._geom: dict[str, Any] | None = None
        self._x_surf: pygame.Surface | None = None  # reused 1000x800 surfaces of the exact renderer
        self._x_flip: pygame.Surface | None = None
        self._x_car: tuple | None = None
        self._bg_probe: tuple | None = None
        self._f_canvas: np.ndarray | None = None
        self._f_bg_tpl: np.ndarray | None = None
        self._f_car_surf: pygame.Surface | None = None

    # ------------------------------------------------------------------ hooks
    def _create_track(self):
        ok = super()._create_track()
        if ok and self.renderer != "official":
            self._build_geometry()
        return ok

    def redraw(self) -> np.ndarray:
        """Draw the frame the last step() skipped (an episode that ended on a held step) as
        step() would have drawn it: step() draws before it takes the step's 0.1 off the score."""
        shown, self.reward = self.reward, self._skipped_reward
        try:
            self.state = self._render("state_pixels")
        finally:
            self.reward = shown
        return self.state

    def _render(self, mode: str):
        if mode == "state_pixels" and self.skip_render and getattr(self, "state", None) is not None:
            self._skipped_reward = self.reward  # the score this frame would have shown
            return self.state.copy()  # a held step: nobody looks at it (a copy, as step() promises new arrays)
        if self.renderer == "official" or mode != "state_pixels":
            return super()._render(mode)
        if "t" not in self.__dict__ or self.car is None or self._geom is None:
            return super()._render(mode)
        if self.renderer == "exact":
            return self._render_exact()
        return self._render_fast()

    # --------------------------------------------------------------- geometry
    def _build_geometry(self) -> None:
        """Cache this track's polygons (world coordinates) as numpy arrays.

        Road tiles change colour when driven on (``FrictionDetector`` does
        ``tile.color[:] = road_color``).  We move all road polygon colours into
        one (N, 3) array and make each tile's ``color`` (and its ``road_poly``
        entry) a view into it, so the in-place update lands in our array and
        the parent code sees exactly the same values as before.
        """
        tiles_by_color = {id(t.color): t for t in self.road}
        n = len(self.road_poly)
        colors = np.empty((n, 3), dtype=np.float64)
        road = np.empty((n, 4, 2), dtype=np.float64)
        is_tile = np.zeros(n, dtype=bool)
        for k, (poly, color) in enumerate(self.road_poly):
            road[k] = poly
            colors[k] = color
            is_tile[k] = id(color) in tiles_by_color
        for k, (poly, color) in enumerate(self.road_poly):
            t = tiles_by_color.get(id(color))
            if t is not None:
                t.color = colors[k]
                self.road_poly[k] = (poly, colors[k])
        verts = np.concatenate([_GRASS, road], axis=0)  # parent's drawing order
        centers = verts.mean(axis=1)
        radius = np.sqrt(((verts - centers[:, None, :]) ** 2).sum(-1)).max(1)
        self._geom = {
            "n_grass": len(_GRASS),
            "verts": verts,
            "vx": np.ascontiguousarray(verts[:, :, 0]),
            "vy": np.ascontiguousarray(verts[:, :, 1]),
            "centers": centers,
            "radius": radius,
            "colors": colors,  # (n_road, 3) float64, live
            "is_tile": is_tile,
        }

    def _camera(self):
        """Exactly the parent's camera: (zoom, translation, angle)."""
        assert self.car is not None  # _render checks it
        angle = -self.car.hull.angle
        zoom = 0.1 * _cr.SCALE * max(1 - self.t, 0) + _cr.ZOOM * _cr.SCALE * min(self.t, 1)
        scroll_x = -(self.car.hull.position[0]) * zoom
        scroll_y = -(self.car.hull.position[1]) * zoom
        rot = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (_W / 2 + rot[0], _H / 4 + rot[1])
        return zoom, trans, angle

    def _candidates(self, zoom: float) -> np.ndarray:
        """Indices of polygons that may be visible (conservative superset)."""
        g = self._geom
        assert g is not None and self.car is not None  # _render checks them
        px, py = self.car.hull.position
        # The car sits at screen (W/2, H/4); the farthest screen corner is
        # sqrt((W/2)^2 + (3H/4)^2) px away.  Generous margins.
        r = (math.hypot(_W / 2, _H * 3 / 4) + 8.0) / zoom + 1.0
        c = g["centers"]
        d2 = (c[:, 0] - px) ** 2 + (c[:, 1] - py) ** 2
        return np.flatnonzero(d2 <= (r + g["radius"]) ** 2)

    # ------------------------------------------------------------ exact path
    def _bg_fill_color(self):
        """RGB that gfxdraw.filled_polygon writes for ``self.bg_color``."""
        key = tuple(np.asarray(self.bg_color, dtype=np.float64).tolist())
        if self._bg_probe is None or self._bg_probe[0] != key:
            probe = pygame.Surface((4, 4))
            gfxdraw.filled_polygon(probe, [(-8, -8), (12, -8), (12, 12), (-8, 12)], self.bg_color)
            self._bg_probe = (key, tuple(probe.get_at((1, 1)))[:3])
        return self._bg_probe[1]

    def _render_exact(self):
        pygame.font.init()
        if self.clock is None:
            self.clock = pygame.time.Clock()
        g = self._geom
        assert g is not None
        zoom, trans, angle = self._camera()
        c, s = _rot_cs(angle)
        tx, ty = trans

        if self._x_surf is None:
            self._x_surf = pygame.Surface((_W, _H))
        surf = self._x_surf
        self.surf = surf

        # --- background (playfield polygon, not culled by the parent) -------
        # Does the playfield cover the whole screen with a margin of 4 px?
        # Map the screen corners back to world coordinates (inverse rotation).
        m = 4.0
        covered = True
        lim = _B - m / zoom
        for sx_, sy_ in ((0.0, 0.0), (_W, 0.0), (0.0, _H), (_W, _H)):
            u = (sx_ - tx) / zoom
            v = (sy_ - ty) / zoom
            wx = c * u + s * v
            wy = -s * u + c * v
            if not (abs(wx) < lim and abs(wy) < lim):
                covered = False
                break
        # Rows [0, BAR_ROWS) before the flip end up under the indicator bar,
        # which the parent paints opaque black over the whole width: we neither
        # clear nor copy them (whatever lands there is never seen).
        visible = (0, _BAR_ROWS, _W, _H - _BAR_ROWS)
        if covered:
            surf.fill(self._bg_fill_color(), visible)
        else:
            surf.fill((0, 0, 0), visible)
            self._draw_colored_polygon(surf, _FIELD, self.bg_color, zoom, trans, angle, clip=False)

        # --- grass and road ------------------------------------------------
        idx = self._candidates(zoom)
        vx = g["vx"][idx]
        vy = g["vy"][idx]
        # Same operations, same order as Vector2.rotate_rad + zoom/translate.
        X = (c * vx - s * vy) * zoom + tx
        Y = (s * vx + c * vy) * zoom + ty
        # Parent's culling test: any vertex inside the enlarged screen box.
        inbox = (X >= -_MAX_DIM) & (X <= _W + _MAX_DIM) & (Y >= -_MAX_DIM) & (Y <= _H + _MAX_DIM)
        keep = inbox.any(axis=1)
        # Our extra test: the polygon can put a pixel in the visible part of
        # the frame (rows >= BAR_ROWS before the flip are under the bar).
        mm = 3.0
        keep &= X.max(1) >= -mm
        keep &= X.min(1) <= _W - 1 + mm
        keep &= Y.max(1) >= _BAR_ROWS - mm
        keep &= Y.min(1) <= _H - 1 + mm
        sel = np.flatnonzero(keep)
        if sel.size:
            n_grass = g["n_grass"]
            ids = idx[sel]
            pts = np.stack([X[sel], Y[sel]], axis=-1).tolist()
            road_ids = ids[ids >= n_grass] - n_grass
            road_cols = g["colors"][road_ids].astype(np.int64).tolist()
            grass_color = self.grass_color
            ri = 0
            aapolygon = gfxdraw.aapolygon
            filled_polygon = gfxdraw.filled_polygon
            for k, poly in zip(ids.tolist(), pts):
                if k < n_grass:
                    color = grass_color
                else:
                    color = road_cols[ri]
                    ri += 1
                aapolygon(surf, poly, color)
                filled_polygon(surf, poly, color)

        # --- car (no skid particles in state_pixels mode) -------------------
        self._draw_car_exact(surf, zoom, trans, c, s)

        # == pygame.transform.flip(surf, False, True) into a reused surface,
        # except the rows the indicator bar (drawn next) paints over.
        if self._x_flip is None:
            self._x_flip = pygame.Surface((_W, _H))
        flipped = self._x_flip
        src2d = pygame.surfarray.pixels2d(surf)  # (W, H) views
        dst2d = pygame.surfarray.pixels2d(flipped)
        dst2d[:, : _H - _BAR_ROWS] = src2d[:, _H - 1 : _BAR_ROWS - 1 : -1]
        del src2d, dst2d  # release the surface locks
        self.surf = flipped
        self._render_indicators(_W, _H)  # starts with the opaque black bar
        _, text, rect = _score_text(self.reward)
        flipped.blit(text, rect)
        scaled = pygame.transform.smoothscale(flipped, (_SW, _SH))
        buf = pygame.image.tobytes(scaled, "RGB")
        return np.frombuffer(buf, dtype=np.uint8).reshape(_SH, _SW, 3).copy()

    def _draw_car_exact(self, surf, zoom, trans, c, s):
        """``Car.draw(..., draw_particles=False)`` with vectorised maths.

        Box2D's ``transform * v`` is ``(q.c*v.x - q.s*v.y) + p.x`` (and
        ``(q.s*v.x + q.c*v.y) + p.y``) in float32; we do the same float32
        operations in numpy, then pygame's double-precision rotation.
        """
        car = self.car
        assert car is not None
        cache = self._x_car
        if cache is None or cache[0] is not car:
            fixtures = []
            for bi, obj in enumerate(car.drawlist):
                color = [int(v * 255) for v in obj.color]
                for f in obj.fixtures:
                    local = np.array(f.shape.vertices, dtype=np.float32)
                    fixtures.append((bi, local, color, "phase" in obj.__dict__))
            cache = self._x_car = (car, fixtures)
        drawlist = car.drawlist
        transforms = []
        for obj in drawlist:
            T = obj.transform
            q = T.q
            p = T.position
            transforms.append((q.c, q.s, p[0], p[1]))
        params = np.array(transforms, dtype=np.float32)  # exact: values are float32

        locals_, bodies, polys = [], [], []  # polys: (n_vertices, color)
        W_, R_, S_ = _cd.WHEEL_W, _cd.WHEEL_R, _cd.SIZE
        for bi, local, color, is_wheel in cache[1]:
            locals_.append(local)
            bodies.append(np.full(len(local), bi))
            polys.append((len(local), color))
            if not is_wheel:
                continue
            obj = drawlist[bi]
            a1 = obj.phase
            a2 = obj.phase + 1.2
            s1 = math.sin(a1)
            s2 = math.sin(a2)
            c1 = math.cos(a1)
            c2 = math.cos(a2)
            if s1 > 0 and s2 > 0:
                continue
            if s1 > 0:
                c1 = np.sign(c1)
            if s2 > 0:
                c2 = np.sign(c2)
            white = [
                (-W_ * S_, +R_ * c1 * S_),
                (+W_ * S_, +R_ * c1 * S_),
                (+W_ * S_, +R_ * c2 * S_),
                (-W_ * S_, +R_ * c2 * S_),
            ]
            locals_.append(np.array(white, dtype=np.float64).astype(np.float32))
            bodies.append(np.full(4, bi))
            polys.append((4, _cd.WHEEL_WHITE))
        L = np.concatenate(locals_)
        Pb = params[np.concatenate(bodies)]
        qc, qs, px, py = Pb[:, 0], Pb[:, 1], Pb[:, 2], Pb[:, 3]
        vx, vy = L[:, 0], L[:, 1]
        wx = ((qc * vx - qs * vy) + px).astype(np.float64)  # float32 maths
        wy = ((qs * vx + qc * vy) + py).astype(np.float64)
        X = (c * wx - s * wy) * zoom + trans[0]
        Y = (s * wx + c * wy) * zoom + trans[1]
        pts = np.stack([X, Y], axis=-1).tolist()
        o = 0
        draw_polygon = pygame.draw.polygon
        for n, color in polys:
            draw_polygon(surf, color=color, points=pts[o : o + n])
            o += n

    # ------------------------------------------------------------- fast path
    def _render_fast(self):
        g = self._geom
        assert g is not None
        K = self.FAST_SUPERSAMPLE
        CW, CH = _SW * K, _SH * K
        sx, sy = CW / _W, CH / _H
        F = float(1 << _SHIFT)
        canvas = self._f_canvas
        if canvas is None or canvas.shape[0] != CH:
            canvas = self._f_canvas = np.empty((CH, CW, 3), dtype=np.uint8)

        car = self.car
        assert car is not None
        hull = car.hull
        bodies = car.wheels + [hull]
        # (x, y, angle) of the 4 wheels and the hull
        st = []
        for body in bodies:
            bx, by = body.position
            st.append((bx, by, body.angle))
        px, py, hull_angle = st[4]
        angle = -hull_angle
        zoom = 0.1 * _cr.SCALE * max(1 - self.t, 0) + _cr.ZOOM * _cr.SCALE * min(self.t, 1)
        c, s = math.cos(angle), math.sin(angle)
        scx, scy = -px * zoom, -py * zoom
        tx = _W / 2 + (c * scx - s * scy)
        ty = _H / 4 + (s * scx + c * scy)
        # world -> canvas, fixed point, cv2 pixel centres at integers:
        #   X = zoom*(c*wx - s*wy) + tx,  Y = zoom*(s*wx + c*wy) + ty   (pre-flip)
        #   xc = sx*X - 0.5,  yc = sy*(H - Y) - 0.5                     (post-flip)
        M = np.array(
            [[F * sx * zoom * c, -F * sy * zoom * s], [-F * sx * zoom * s, -F * sy * zoom * c]]
        )
        b = np.array(
            [F * (sx * tx + self.FAST_OFFSET[0] - 0.5), F * (sy * (_H - ty) + self.FAST_OFFSET[1] - 0.5)]
        )

        def to_canvas(v):  # (..., 2) world -> (..., 2) int32 fixed point
            out = v @ M
            out += b
            return np.rint(out, out=out).astype(np.int32)

        # --- background ------------------------------------------------------
        bg = self._f_color(self.bg_color)
        lim = _B - 2.0 / zoom
        covered = True
        for X0, Y0 in ((0.0, 0.0), (_W, 0.0), (0.0, _H), (_W, _H)):
            u, v = (X0 - tx) / zoom, (Y0 - ty) / zoom
            if not (abs(c * u + s * v) < lim and abs(-s * u + c * v) < lim):
                covered = False
                break
        if covered:
            tpl = self._f_bg_tpl
            if tpl is None or tpl.shape != canvas.shape or tuple(tpl[0, 0].tolist()) != bg:
                tpl = self._f_bg_tpl = np.empty_like(canvas)
                tpl[:] = bg
            np.copyto(canvas, tpl)
        else:
            canvas.fill(0)
            cv2.fillConvexPoly(canvas, to_canvas(_FIELD_ARR), bg, cv2.LINE_8, _SHIFT)

        # --- grass, road tiles, kerbs -----------------------------------------
        idx = self._candidates(zoom)
        if idx.size:
            pts = to_canvas(g["verts"][idx])
            n_grass = g["n_grass"]
            ng = int(np.searchsorted(idx, n_grass))  # idx is sorted
            if ng:
                cv2.fillPoly(canvas, pts[:ng], self._f_color(self.grass_color), cv2.LINE_8, _SHIFT)
            if ng < idx.size:
                ridx = idx[ng:] - n_grass
                rpts = pts[ng:]
                col = g["colors"][ridx].astype(np.int64)
                key = (col[:, 0] << 16) | (col[:, 1] << 8) | col[:, 2]
                # Road tiles first, then kerbs (the parent interleaves them; they
                # only overlap where the track crosses itself).
                key = np.where(g["is_tile"][ridx], key, key | (1 << 24))
                for k in np.unique(key).tolist():
                    cv2.fillPoly(
                        canvas,
                        rpts[key == k],
                        ((k >> 16) & 255, (k >> 8) & 255, k & 255),
                        cv2.LINE_8,
                        _SHIFT,
                    )


        # --- indicator bar and score (drawn after the flip in the parent) -------
        canvas[(_H - _BAR_ROWS) * CH // _H :] = 0
        patch = self._f_text_patch(self.reward, K)
        canvas[CH - patch.shape[0] :, : patch.shape[1]] = patch

        if K == 1:
            out = canvas
        else:
            out = cv2.resize(canvas, (_SW, _SH), interpolation=cv2.INTER_AREA)
        # Car: drawn by pygame at full resolution in a small patch, then
        # area-averaged into the frame (its screen position never changes, so
        # sampling it on the canvas would give a fixed, visible bias).
        self._draw_car_fast(out, st, bodies, zoom, c, s, tx, ty)
        # Indicator bars: axis-aligned rectangles, blended into the 96x96 frame
        # with their exact area coverage (thin bars would vanish on the canvas).
        self._draw_indicators_fast(out)
        # pygame's fixed-point smoothscale darkens (v -> v-2 on flat areas).
        lut = _smoothscale_lut()
        if _LUT_IS_MINUS_2:
            # saturating, much cheaper; OpenCV's stubs know no scalar (tuple) operand
            return cv2.subtract(out, (2.0, 2.0, 2.0, 0.0))  # type: ignore[call-overload]
        return cv2.LUT(out, lut)

    @staticmethod
    def _f_color(color) -> tuple:
        return tuple(int(v) for v in color)

    def _draw_car_fast(self, out, st, bodies, zoom, c, s, tx, ty):
        """Wheels, their rotating white stripes and the hull, as ``Car.draw``."""
        # rotating white stripes on the wheels (Car.draw's logic)
        stripe_y = [0.0] * 16
        stripes = []
        for i in range(4):
            a1 = bodies[i].phase
            a2 = a1 + 1.2
            s1, s2 = math.sin(a1), math.sin(a2)
            if s1 > 0 and s2 > 0:
                continue
            c1, c2 = math.cos(a1), math.cos(a2)
            if s1 > 0:
                c1 = float(np.sign(c1))
            if s2 > 0:
                c2 = float(np.sign(c2))
            stripe_y[4 * i : 4 * i + 4] = (_WR * c1, _WR * c1, _WR * c2, _WR * c2)
            stripes.append(i)
        # body -> pre-flip screen (relative to the patch) affine maps, per body:
        # screen = zoom * R(angle) @ (R(a_b) @ local + p_b) + (tx, ty) - patch origin
        ox, oy = tx - _CP_X0, ty - (_H - _CP_Y1)
        aff = []
        for bx, by, ba in st:
            cb, sb = math.cos(ba), math.sin(ba)
            aff.append(
                (
                    zoom * (c * cb - s * sb),
                    zoom * (-c * sb - s * cb),
                    zoom * (s * cb + c * sb),
                    zoom * (c * cb - s * sb),
                    zoom * (c * bx - s * by) + ox,
                    zoom * (s * bx + c * by) + oy,
                )
            )
        car_local, car_body, hull_slices, n_fixed = _car_geometry(self.car)
        coef = np.array(aff)[car_body]  # (n_vertices, 6)
        local = car_local.copy()
        local[n_fixed:, 1] = stripe_y
        lx, ly = local[:, 0], local[:, 1]
        pts = np.empty_like(local)
        pts[:, 0] = coef[:, 0] * lx + coef[:, 1] * ly + coef[:, 4]
        pts[:, 1] = coef[:, 2] * lx + coef[:, 3] * ly + coef[:, 5]
        pts = pts.tolist()

        surf = self._f_car_surf
        if surf is None:
            surf = self._f_car_surf = pygame.Surface(
                (_CP_X1 - _CP_X0, _CP_Y1 - _CP_Y0), pygame.SRCALPHA, 32
            )
        surf.fill((0, 0, 0, 0))
        draw_polygon = pygame.draw.polygon
        for i in range(4):
            draw_polygon(surf, _cd.WHEEL_COLOR, pts[4 * i : 4 * i + 4])
            if i in stripes:
                o = n_fixed + 4 * i
                draw_polygon(surf, _cd.WHEEL_WHITE, pts[o : o + 4])
        hull_color = tuple(int(v * 255) for v in bodies[4].color)
        for a, e in hull_slices:
            draw_polygon(surf, hull_color, pts[a:e])

        h, w = _CP_Y1 - _CP_Y0, _CP_X1 - _CP_X0
        view = np.asarray(surf.get_view("2"))  # (w, h) uint32, locks the surface
        patch = view.T.copy().view(np.uint8).reshape(h, w * 4).astype(np.float32)
        del view
        rows = (_CP_WY_PRE @ patch).reshape(-1, w, 4)  # flip + row weights
        cols = np.matmul(rows.transpose(0, 2, 1), _CP_WX)  # (out rows, 4, out cols)
        shifts = surf.get_shifts()
        alpha = cols[:, shifts[3] // 8, :, None] * (1.0 / 255.0)
        rgb = cols[:, [shifts[0] // 8, shifts[1] // 8, shifts[2] // 8], :].transpose(0, 2, 1)
        blk = out[_CP_I0:_CP_I1, _CP_J0:_CP_J1]
        blk[...] = np.clip(np.rint(blk * (1.0 - alpha) + rgb), 0, 255)

    def _draw_indicators_fast(self, out: np.ndarray) -> None:
        """The parent's ``_render_indicators`` (minus the black bar) on ``out``."""
        car = self.car
        assert car is not None
        W, H = _W, _H
        s = W / 40.0
        h = H / 40.0
        rects = []
        v = car.hull.linearVelocity
        true_speed = math.sqrt(v[0] * v[0] + v[1] * v[1])
        w = car.wheels
        ja = w[0].joint.angle
        av = car.hull.angularVelocity
        for value, place, val, color in (
            (true_speed, 5, 0.02 * true_speed, (255, 255, 255)),
            (w[0].omega, 7, 0.01 * w[0].omega, (0, 0, 255)),
            (w[1].omega, 8, 0.01 * w[1].omega, (0, 0, 255)),
            (w[2].omega, 9, 0.01 * w[2].omega, (51, 0, 255)),
            (w[3].omega, 10, 0.01 * w[3].omega, (51, 0, 255)),
        ):
            if abs(value) > 1e-4:
                rects.append((place * s, H - (h + h * val), (place + 1) * s, H - h, color))
        for value, place, val, color in (
            (ja, 20, -10.0 * ja, (0, 255, 0)),
            (av, 30, -0.8 * av, (255, 0, 0)),
        ):
            if abs(value) > 1e-4:
                rects.append((place * s, H - 4 * h, (place + val) * s, H - 2 * h, color))
        if not rects:
            return
        # pygame fills whole pixels between the truncated vertex coordinates,
        # both ends included: area [xa, xb) x [ya, yb) in full-res pixels.
        areas: list[list[int]] = []
        colors = []
        for x0, y0, x1, y1, color in rects:
            xa = min(max(math.floor(min(x0, x1)), 0), W)
            xb = min(max(math.floor(max(x0, x1)) + 1, 0), W)
            ya = min(max(math.floor(min(y0, y1)), 0), H)
            yb = min(max(math.floor(max(y0, y1)) + 1, 0), H)
            if areas and areas[-1][1] == xa + 1 and areas[-1][2] < yb and ya < areas[-1][3]:
                # adjacent bars share one pixel column, where the later one wins
                areas[-1][1] = xa
            areas.append([xa, xb, ya, yb])
            colors.append(color)
        top = min(b[2] for b in areas)
        left = min(b[0] for b in areas)
        i0 = top * _SH // H
        box = np.array(areas, dtype=np.float64)
        ex, ey = _OUT_EDGES_X, _OUT_EDGES_Y[i0:]
        # covered length (full-res px) of each output column / row, per bar
        cx = np.minimum(box[:, 1:2], ex[1:]) - np.maximum(box[:, 0:1], ex[:-1])
        cy = np.minimum(box[:, 3:4], ey[1:]) - np.maximum(box[:, 2:3], ey[:-1])
        np.maximum(cx, 0.0, out=cx)
        np.maximum(cy, 0.0, out=cy)
        # colour sum over the area of each output pixel (bars do not overlap)
        cw = np.array(colors, dtype=np.float64) * (_SW * _SH / (W * H))
        prem = (cy.T @ (cx[:, :, None] * cw[:, None, :]).reshape(len(box), -1)).reshape(
            len(ey) - 1, _SW, 3
        )
        if top >= H - _BAR_ROWS and left >= _TEXT_COLS:
            # the usual case: only on the black bar, right of the score text
            j0 = _TEXT_COLS * _SW // W
            out[i0:, j0:] = np.rint(prem[:, j0:])
            return
        alpha = (cy.T @ cx) * (_SW * _SH / (W * H))
        blk = out[i0:]
        blk[...] = np.clip(np.rint(blk * (1.0 - alpha[:, :, None]) + prem), 0, 255)

    def _f_text_patch(self, reward: float, K: int) -> np.ndarray:
        """Bottom-left 12x12-output-pixel block (bar + score) at canvas scale."""
        s, text, rect = _score_text(reward)
        key = (s, K)
        patch = _PATCH_CACHE.get(key)
        if patch is None:
            strip = np.zeros((_BAR_ROWS, _TEXT_COLS, 3), dtype=np.uint8)
            arr = pygame.surfarray.array3d(text).transpose(1, 0, 2)
            x0, y0 = rect.left, rect.top - (_H - _BAR_ROWS)
            xs0, ys0 = max(x0, 0), max(y0, 0)
            xs1 = min(x0 + arr.shape[1], _TEXT_COLS)
            ys1 = min(y0 + arr.shape[0], _BAR_ROWS)
            strip[ys0:ys1, xs0:xs1] = arr[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]
            n_out_cols = _TEXT_COLS * _SW // _W  # 12
            n_out_rows = _BAR_ROWS * _SH // _H  # 12
            patch = cv2.resize(strip, (n_out_cols * K, n_out_rows * K), interpolation=cv2.INTER_AREA)
            if len(_PATCH_CACHE) >= _TEXT_CACHE_MAX:
                _PATCH_CACHE.clear()
            _PATCH_CACHE[key] = patch
        return patch


def random_driving(seed: int, n: int) -> list[np.ndarray]:
    """Seeded piecewise-constant random driving (mostly gas, some braking): the action sequence
    the renderer tests and benchmark compare renderers on."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < n:
        hold = int(rng.integers(5, 30))
        steer = rng.uniform(-1.0, 1.0)
        gas = rng.uniform(0.3, 1.0) if rng.random() < 0.7 else 0.0
        brake = rng.uniform(0.0, 0.5) if rng.random() < 0.15 else 0.0
        out += [np.array([steer, gas, brake], dtype=np.float32)] * hold
    return out[:n]
