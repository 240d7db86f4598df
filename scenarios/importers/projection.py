"""Transverse Mercator and UTM, forward and inverse, to a few nanometres near the central meridian.

Krüger's series to sixth order in the third flattening ``n``, as given by Karney (2011),
"Transverse Mercator with an accuracy of a few nanometers", J. Geodesy 85(8), eqs. (7)-(11) and
(35)-(36). The series is accurate to 5 nm within 3900 km of the central meridian, far more than
any driving map needs, and has no dependency beyond numpy (no PROJ, no pyproj).

``LocalUtm`` is the frame of Lanelet2's ``UtmProjector``: the UTM zone of an origin, minus the
origin's own UTM coordinates. The INTERACTION dataset's maps (origin (0, 0), UTM zone 31) and
tracks are in that frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Largest |latitude| and |longitude| [deg] there are: a coordinate beyond is a corrupt value,
#: not a place (the series would still return finite metres for latitude 95).
MAX_LATITUDE_DEG = 90.0
MAX_LONGITUDE_DEG = 180.0
#: Scale on the central meridian of every UTM zone.
UTM_SCALE = 0.9996
#: False easting of every UTM zone [m].
UTM_FALSE_EASTING = 500_000.0
#: False northing of southern-hemisphere UTM zones [m].
UTM_FALSE_NORTHING_SOUTH = 10_000_000.0


@dataclass(frozen=True, slots=True)
class Ellipsoid:
    """A reference ellipsoid.

    Attributes:
        a: equatorial radius [m].
        f: flattening (dimensionless).
    """

    a: float
    f: float


WGS84 = Ellipsoid(6_378_137.0, 1.0 / 298.257223563)
GRS80 = Ellipsoid(6_378_137.0, 1.0 / 298.257222101)


def _series(n: float) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """Rectifying radius factor ``A / a`` and Krüger's alpha (forward) and beta (inverse) coefficients."""
    n2, n3, n4, n5, n6 = n**2, n**3, n**4, n**5, n**6
    a_factor = (1 + n2 / 4 + n4 / 64 + n6 / 256) / (1 + n)
    alpha = (
        n / 2 - 2 * n2 / 3 + 5 * n3 / 16 + 41 * n4 / 180 - 127 * n5 / 288 + 7891 * n6 / 37800,
        13 * n2 / 48 - 3 * n3 / 5 + 557 * n4 / 1440 + 281 * n5 / 630 - 1983433 * n6 / 1935360,
        61 * n3 / 240 - 103 * n4 / 140 + 15061 * n5 / 26880 + 167603 * n6 / 181440,
        49561 * n4 / 161280 - 179 * n5 / 168 + 6601661 * n6 / 7257600,
        34729 * n5 / 80640 - 3418889 * n6 / 1995840,
        212378941 * n6 / 319334400,
    )
    beta = (
        n / 2 - 2 * n2 / 3 + 37 * n3 / 96 - n4 / 360 - 81 * n5 / 512 + 96199 * n6 / 604800,
        n2 / 48 + n3 / 15 - 437 * n4 / 1440 + 46 * n5 / 105 - 1118711 * n6 / 3870720,
        17 * n3 / 480 - 37 * n4 / 840 - 209 * n5 / 4480 + 5569 * n6 / 90720,
        4397 * n4 / 161280 - 11 * n5 / 504 - 830251 * n6 / 7257600,
        4583 * n5 / 161280 - 108847 * n6 / 3991680,
        20648693 * n6 / 638668800,
    )
    return a_factor, alpha, beta


@dataclass(frozen=True, slots=True)
class TransverseMercator:
    """A transverse Mercator projection on an ellipsoid.

    Attributes:
        lon0_deg: central meridian [deg].
        k0: scale on the central meridian.
        false_easting, false_northing: added to x and y [m].
        ellipsoid: the reference ellipsoid (WGS84 by default).
    """

    lon0_deg: float
    k0: float = UTM_SCALE
    false_easting: float = UTM_FALSE_EASTING
    false_northing: float = 0.0
    ellipsoid: Ellipsoid = WGS84
    _e: float = field(init=False, repr=False, compare=False)
    _scale: float = field(init=False, repr=False, compare=False)
    _alpha: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _beta: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        f = self.ellipsoid.f
        n = f / (2 - f)
        a_factor, alpha, beta = _series(n)
        object.__setattr__(self, "_e", math.sqrt(f * (2 - f)))
        object.__setattr__(self, "_scale", self.k0 * self.ellipsoid.a * a_factor)
        object.__setattr__(self, "_alpha", alpha)
        object.__setattr__(self, "_beta", beta)

    def forward(self, lat_deg: np.ndarray | float, lon_deg: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Geodetic latitude, longitude [deg] to easting x, northing y [m]."""
        phi = np.radians(np.asarray(lat_deg, dtype=np.float64))
        lam = np.radians(np.asarray(lon_deg, dtype=np.float64) - self.lon0_deg)
        lam = (lam + np.pi) % (2 * np.pi) - np.pi
        e = self._e
        sin_phi = np.sin(phi)
        # tangent of the conformal latitude
        tau_c = np.sinh(np.arctanh(sin_phi) - e * np.arctanh(e * sin_phi))
        xi_p = np.arctan2(tau_c, np.cos(lam))
        eta_p = np.arcsinh(np.sin(lam) / np.hypot(tau_c, np.cos(lam)))
        xi, eta = xi_p.copy(), eta_p.copy()
        for j, a_j in enumerate(self._alpha, start=1):
            xi += a_j * np.sin(2 * j * xi_p) * np.cosh(2 * j * eta_p)
            eta += a_j * np.cos(2 * j * xi_p) * np.sinh(2 * j * eta_p)
        return self.false_easting + self._scale * eta, self.false_northing + self._scale * xi

    def inverse(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Easting x, northing y [m] to geodetic latitude, longitude [deg]."""
        xi = (np.asarray(y, dtype=np.float64) - self.false_northing) / self._scale
        eta = (np.asarray(x, dtype=np.float64) - self.false_easting) / self._scale
        xi_p, eta_p = xi.copy(), eta.copy()
        for j, b_j in enumerate(self._beta, start=1):
            xi_p -= b_j * np.sin(2 * j * xi) * np.cosh(2 * j * eta)
            eta_p -= b_j * np.cos(2 * j * xi) * np.sinh(2 * j * eta)
        tau_c = np.sin(xi_p) / np.hypot(np.sinh(eta_p), np.cos(xi_p))
        lam = np.arctan2(np.sinh(eta_p), np.cos(xi_p))
        tau = _tau_from_conformal(tau_c, self._e)
        return np.degrees(np.arctan(tau)), np.degrees(lam) + self.lon0_deg


def _tau_from_conformal(tau_c: np.ndarray, e: float) -> np.ndarray:
    """tan(geodetic latitude) from tan(conformal latitude), by Newton's method (Karney 2011, eqs. 19-21)."""
    e2m = 1 - e * e
    tau = tau_c.copy()
    for _ in range(5):  # converges to machine precision in 2-3 iterations
        sigma = np.sinh(e * np.arctanh(e * tau / np.hypot(1.0, tau)))
        tau_c_i = tau * np.hypot(1.0, sigma) - sigma * np.hypot(1.0, tau)
        d_tau = (tau_c - tau_c_i) / (e2m * np.hypot(1.0, tau_c_i) * np.hypot(1.0, tau)) * (1 + e2m * tau * tau)
        tau = tau + d_tau
    return tau


def utm_zone(lat_deg: float, lon_deg: float) -> int:
    """The standard UTM zone (1..60) of a point, with the Norway and Svalbard exceptions."""
    lon = (lon_deg + 180.0) % 360.0 - 180.0
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    if 56.0 <= lat_deg < 64.0 and 3.0 <= lon < 12.0:
        return 32
    if 72.0 <= lat_deg < 84.0 and 0.0 <= lon < 42.0:
        return 31 if lon < 9.0 else 33 if lon < 21.0 else 35 if lon < 33.0 else 37
    return zone


def utm(zone: int, *, south: bool = False, ellipsoid: Ellipsoid = WGS84) -> TransverseMercator:
    """The UTM projection of ``zone`` (1..60), northern hemisphere unless ``south``."""
    if not 1 <= zone <= 60:
        raise ValueError(f"UTM zone must be 1..60, got {zone}")
    return TransverseMercator(
        lon0_deg=6.0 * zone - 183.0,
        false_northing=UTM_FALSE_NORTHING_SOUTH if south else 0.0,
        ellipsoid=ellipsoid,
    )


@dataclass(frozen=True, slots=True)
class LocalUtm:
    """UTM in the zone of an origin, minus the origin's UTM coordinates (Lanelet2's ``UtmProjector``).

    With origin (0, 0) this is the INTERACTION dataset's map frame: UTM zone 31, offset by
    (166021.4431 m, 0 m).

    Attributes:
        origin_lat_deg, origin_lon_deg: the origin [deg].
    """

    origin_lat_deg: float = 0.0
    origin_lon_deg: float = 0.0
    projection: TransverseMercator = field(init=False, repr=False, compare=False)
    offset: tuple[float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        zone = utm_zone(self.origin_lat_deg, self.origin_lon_deg)
        projection = utm(zone, south=self.origin_lat_deg < 0)
        x0, y0 = projection.forward(self.origin_lat_deg, self.origin_lon_deg)
        object.__setattr__(self, "projection", projection)
        object.__setattr__(self, "offset", (float(x0), float(y0)))

    def forward(self, lat_deg: np.ndarray | float, lon_deg: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Latitude, longitude [deg] to local x, y [m]."""
        x, y = self.projection.forward(lat_deg, lon_deg)
        return x - self.offset[0], y - self.offset[1]

    def inverse(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Local x, y [m] to latitude, longitude [deg]."""
        x = np.asarray(x, dtype=np.float64) + self.offset[0]
        return self.projection.inverse(x, np.asarray(y, dtype=np.float64) + self.offset[1])
