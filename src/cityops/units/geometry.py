"""Geometry: demo boundaries from centroids, GeoJSON conversion, and the point → unit locator.

Geometry is stored portably as GeoJSON (WGS 84 lon/lat) with bounding-box columns; exact
predicates run in process with shapely 2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Point, shape
from shapely.geometry.base import BaseGeometry

# Stored coordinates are rounded to 1e-6° (≈ 0.1 m): enough for boundaries, stable in JSON.
PRECISION = 1e-6
# One square degree near 11° N is about 110.6 km × 108.6 km.
KM2_PER_DEG2 = 110.6 * 108.6
# Grid cell of the locator, in degrees (≈ 550 m): ~90,000 cells over the province.
GRID_STEP = 0.005
# Cells are tested slightly enlarged so a point rounded into a neighbouring cell is still covered.
_CELL_SLACK = 1e-9

DEMO_NOTE = {
    "vi": "Ranh giới minh họa, sinh tự động từ tâm đơn vị; không phải ranh giới pháp lý.",
    "en": "Demo boundary generated from unit centroids; not a legal boundary.",
}
OFFICIAL_NOTE = {
    "vi": "Ranh giới do cơ quan có thẩm quyền cung cấp, được nhập vào hệ thống.",
    "en": "Boundary imported from an official source.",
}


def demo_outline(points: Sequence[tuple[float, float]], areas_km2: Sequence[float]) -> BaseGeometry:
    """Build a province outline around unit centroids, sized by their areas (deterministic)."""
    hull = shapely.concave_hull(MultiPoint(list(points)), ratio=0.3)
    # A disc per unit with its approximate area keeps border units from being clipped to slivers.
    discs = [
        Point(x, y).buffer(math.sqrt(max(a, 1.0) / KM2_PER_DEG2 / math.pi) * 0.8, quad_segs=6)
        for (x, y), a in zip(points, areas_km2, strict=True)
    ]
    shape_ = shapely.union_all([hull.buffer(0.02, quad_segs=4), *discs])
    # Close narrow gaps between discs, then drop needless vertices.
    smooth = shape_.buffer(0.03, quad_segs=4).buffer(-0.03, quad_segs=4)
    outline = shapely.make_valid(smooth.simplify(0.003))
    if outline.geom_type == "MultiPolygon":
        outline = max(outline.geoms, key=lambda g: g.area)
    return rounded(outline)


def demo_cells(points: Sequence[tuple[float, float]], outline: BaseGeometry) -> list[BaseGeometry]:
    """Split an outline into one Voronoi cell per point, in the order of the points."""
    envelope = outline.envelope.buffer(1.0)
    cells = shapely.voronoi_polygons(MultiPoint(list(points)), extend_to=envelope, ordered=True)
    out: list[BaseGeometry] = []
    for cell in cells.geoms:
        clipped = rounded(shapely.intersection(cell, outline))
        out.append(clipped)
    return out


def rounded(geom: BaseGeometry) -> BaseGeometry:
    """Snap coordinates to the storage precision, keeping the geometry valid."""
    return shapely.make_valid(shapely.set_precision(geom, PRECISION))


def to_geojson(geom: BaseGeometry) -> dict[str, Any]:
    """Return the GeoJSON geometry object of a shapely geometry."""
    result: dict[str, Any] = json.loads(shapely.to_geojson(geom))
    return result


def from_geojson(obj: dict[str, Any]) -> BaseGeometry:
    """Return the shapely geometry of a GeoJSON geometry object."""
    return shape(obj)


def bbox_of(geom: BaseGeometry) -> tuple[float, float, float, float]:
    """Return (min_lon, min_lat, max_lon, max_lat)."""
    min_x, min_y, max_x, max_y = geom.bounds
    return float(min_x), float(min_y), float(max_x), float(max_y)


@dataclass(frozen=True, slots=True)
class _Grid:
    min_x: float
    min_y: float
    nx: int
    ny: int
    step: float


class Locator:
    """Answer "which unit contains this point?" in microseconds, without a database.

    A uniform grid covers the units' bounding box. Each cell is precomputed to one unit (the
    cell lies inside it), to nothing (outside every unit), or to a short list of candidates that
    are checked exactly. Units earlier in `codes` win on shared boundaries.
    """

    EMPTY = -1
    MIXED = -2

    def __init__(
        self, codes: Sequence[str], geometries: Sequence[BaseGeometry], *, step: float = GRID_STEP
    ) -> None:
        if len(codes) != len(geometries):
            raise ValueError("codes and geometries differ in length")
        self.codes: tuple[str, ...] = tuple(codes)
        self.geometries: tuple[BaseGeometry, ...] = tuple(geometries)
        for geom in self.geometries:
            shapely.prepare(geom)
        self._tree = shapely.STRtree(list(self.geometries))
        if not self.geometries:
            self._grid = _Grid(0.0, 0.0, 0, 0, step)
            self._cells: list[int] = []
            self._cells_np = np.empty(0, dtype=np.int32)
            self._candidates: dict[int, tuple[int, ...]] = {}
            return
        min_x, min_y, max_x, max_y = shapely.total_bounds(list(self.geometries))
        # One cell more than needed, so the grid strictly covers the units' far edges.
        nx = math.floor((max_x - min_x) / step) + 1
        ny = math.floor((max_y - min_y) / step) + 1
        self._grid = _Grid(float(min_x), float(min_y), nx, ny, step)
        cells, candidates = self._build(nx, ny)
        # A Python list indexes faster than a numpy array for one point at a time.
        self._cells = cells.tolist()
        self._cells_np = cells
        self._candidates = candidates

    def _build(self, nx: int, ny: int) -> tuple[np.ndarray, dict[int, tuple[int, ...]]]:
        grid = self._grid
        grid_x, grid_y = np.meshgrid(np.arange(nx), np.arange(ny))
        ix, iy = grid_x.ravel(), grid_y.ravel()
        x0 = grid.min_x + ix * grid.step - _CELL_SLACK
        y0 = grid.min_y + iy * grid.step - _CELL_SLACK
        boxes = shapely.box(
            x0, y0, x0 + grid.step + 2 * _CELL_SLACK, y0 + grid.step + 2 * _CELL_SLACK
        )
        flat = iy * nx + ix
        cells = np.full(nx * ny, self.EMPTY, dtype=np.int32)
        box_idx, geom_idx = self._tree.query(boxes, predicate="intersects")
        candidates: dict[int, list[int]] = {}
        for b, g in zip(box_idx.tolist(), geom_idx.tolist(), strict=True):
            candidates.setdefault(int(flat[b]), []).append(g)
        inside_box, inside_geom = self._tree.query(boxes, predicate="within")
        inside = {
            int(flat[b]): g for b, g in zip(inside_box.tolist(), inside_geom.tolist(), strict=True)
        }
        mixed: dict[int, tuple[int, ...]] = {}
        for cell, geoms in candidates.items():
            geoms.sort()
            owner = inside.get(cell)
            # A cell wholly inside a unit belongs to it, unless an earlier unit also touches it.
            if owner is not None and geoms[0] == owner:
                cells[cell] = owner
            else:
                cells[cell] = self.MIXED
                mixed[cell] = tuple(geoms)
        return cells, mixed

    @property
    def cell_count(self) -> int:
        """How many grid cells the index holds."""
        return self._grid.nx * self._grid.ny

    def locate(self, lat: float, lon: float) -> str | None:
        """Return the code of the unit containing the point, or None outside every unit."""
        grid = self._grid
        fx = (lon - grid.min_x) / grid.step
        fy = (lat - grid.min_y) / grid.step
        # Written as a range check so NaN (every comparison false) falls out as None.
        if not (0.0 <= fx < grid.nx and 0.0 <= fy < grid.ny):
            return None
        cell = int(fy) * grid.nx + int(fx)
        owner = self._cells[cell]
        if owner >= 0:
            return self.codes[owner]
        if owner == self.EMPTY:
            return None
        for index in self._candidates[cell]:
            if shapely.intersects_xy(self.geometries[index], lon, lat):
                return self.codes[index]
        return None

    def locate_many(
        self, lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray
    ) -> list[str | None]:
        """Locate many points at once (vectorised); None where a point is outside every unit."""
        ys = np.asarray(lats, dtype=np.float64)
        xs = np.asarray(lons, dtype=np.float64)
        if ys.shape != xs.shape or ys.ndim != 1:
            raise ValueError("lats and lons must be one-dimensional and of equal length")
        result = np.full(len(xs), self.EMPTY, dtype=np.int64)
        grid = self._grid
        if grid.nx and len(xs):
            # Range-check in degrees first, so huge inputs never overflow the division.
            max_x = grid.min_x + grid.nx * grid.step
            max_y = grid.min_y + grid.ny * grid.step
            ok = (xs >= grid.min_x) & (xs < max_x) & (ys >= grid.min_y) & (ys < max_y)
            idx = np.flatnonzero(ok)
            fx = np.minimum((xs[idx] - grid.min_x) / grid.step, grid.nx - 1)
            fy = np.minimum((ys[idx] - grid.min_y) / grid.step, grid.ny - 1)
            cell = fy.astype(np.int64) * grid.nx + fx.astype(np.int64)
            owner = self._cells_np[cell]
            result[idx] = owner
            mixed = idx[owner == self.MIXED]
            result[mixed] = self.EMPTY
            if len(mixed):
                points = shapely.points(xs[mixed], ys[mixed])
                p_idx, g_idx = self._tree.query(points, predicate="intersects")
                if len(p_idx):
                    # The lowest unit index wins on shared boundaries, as in `locate`.
                    order = np.lexsort((g_idx, p_idx))
                    p_sorted, g_sorted = p_idx[order], g_idx[order]
                    first = np.ones(len(p_sorted), dtype=bool)
                    first[1:] = p_sorted[1:] != p_sorted[:-1]
                    result[mixed[p_sorted[first]]] = g_sorted[first]
        codes = self.codes
        return [codes[i] if i >= 0 else None for i in result.tolist()]
