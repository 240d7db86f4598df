"""Transverse Mercator / UTM against published coordinates, and forward-inverse round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.importers.projection import GRS80, LocalUtm, utm, utm_zone

MM = 1e-3  # [m]


@pytest.mark.parametrize(
    ("lat", "lon", "easting", "northing"),
    [
        # PROJ's own tests of "+proj=utm +ellps=GRS80 +zone=30" (builtins.gie and the PJ_utm selftest), to 0.1 mm.
        (1.0, 2.0, 1057002.405491298, 110955.141175949),
        (1.0, -2.0, 611263.812278905, 110547.105696804),
    ],
)
def test_grs80_zone30_matches_proj_builtins(lat: float, lon: float, easting: float, northing: float) -> None:
    x, y = utm(30, ellipsoid=GRS80).forward(lat, lon)
    assert abs(float(x) - easting) < 0.1 * MM
    assert abs(float(y) - northing) < 0.1 * MM


@pytest.mark.parametrize(
    ("zone", "lat", "lon", "easting", "northing"),
    [
        # a real point, Tel Aviv (32.0853 N, 34.7818 E), WGS84 / UTM 36N as computed by PROJ
        (36, 32.0853, 34.7818, 668156.435264, 3551279.766754),
        # WGS84 / UTM 31N, either side of the prime meridian (the INTERACTION maps' zone), by PROJ
        (31, 50.0, -0.5, 249192.239358, 5544502.325708),
        (31, 50.0, 0.5, 320842.135809, 5541625.749826),
    ],
)
def test_wgs84_utm_matches_published_points(zone: int, lat: float, lon: float, easting: float, northing: float) -> None:
    x, y = utm(zone).forward(lat, lon)
    assert abs(float(x) - easting) < MM
    assert abs(float(y) - northing) < MM


def test_geoconvert_example_both_ways() -> None:
    # GeographicLib's GeoConvert documentation: 33.3 44.4 <-> 38n 444140.54 3684706.36 (to 1 cm),
    # and "GeoConvert -p 9" of that grid point gives 33.30000003988349 44.39999994689769.
    x, y = utm(38).forward(33.3, 44.4)
    assert round(float(x), 2) == 444140.54 and round(float(y), 2) == 3684706.36
    lat, lon = utm(38).inverse(444140.54, 3684706.36)
    assert abs(float(lat) - 33.30000003988349) < 1e-11
    assert abs(float(lon) - 44.39999994689769) < 1e-11


def test_interaction_frame_offset_is_utm31_of_the_origin() -> None:
    # The western edge of every UTM zone at the equator (EPSG's published bounds of WGS 84 / UTM N).
    frame = LocalUtm(0.0, 0.0)
    assert frame.projection.lon0_deg == 3.0
    assert abs(frame.offset[0] - 166021.4431) < 0.1 * MM
    assert frame.offset[1] == 0.0
    x, y = frame.forward(0.0, 0.0)
    assert float(x) == 0.0 and float(y) == 0.0
    # 0.01 deg of latitude at the equator is 1105.74 m of meridian arc (times k = 0.9996 * 1.0011)
    _, y = frame.forward(0.01, 0.0)
    assert 1105.0 < float(y) < 1108.0


def test_utm_zone_rules() -> None:
    assert utm_zone(0.0, 0.0) == 31
    assert utm_zone(0.0, -0.0001) == 30
    assert utm_zone(48.85, 2.29) == 31  # Paris
    assert utm_zone(60.0, 5.0) == 32  # Norway exception
    assert utm_zone(78.0, 15.0) == 33  # Svalbard exception
    assert utm_zone(0.0, 179.9) == 60
    with pytest.raises(ValueError):
        utm(61)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=-80.0, max_value=84.0, allow_nan=False),
    st.floats(min_value=-3.0, max_value=9.0, allow_nan=False),
)
def test_inverse_undoes_forward_to_a_micrometre(lat: float, lon: float) -> None:
    projection = utm(31)
    x, y = projection.forward(lat, lon)
    lat2, lon2 = projection.inverse(x, y)
    x2, y2 = projection.forward(lat2, lon2)
    assert abs(float(x2) - float(x)) < 1e-6 and abs(float(y2) - float(y)) < 1e-6
    assert abs(float(lat2) - lat) < 1e-10 and abs(float(lon2) - lon) < 1e-10


def test_local_frame_round_trip_on_arrays() -> None:
    frame = LocalUtm()
    x = np.array([-50.0, 0.0, 1234.567, 2500.0])
    y = np.array([-20.0, 0.0, 987.654, 3000.0])
    lat, lon = frame.inverse(x, y)
    x2, y2 = frame.forward(lat, lon)
    np.testing.assert_allclose(x2, x, atol=1e-8)
    np.testing.assert_allclose(y2, y, atol=1e-8)
    assert lat[1] == pytest.approx(0.0, abs=1e-15) and lon[1] == pytest.approx(0.0, abs=1e-12)
    assert (lat[2] > 0) and (lon[2] > 0) and lat[0] < 0 and lon[0] < 0
