"""The simulated assets of Đồng Nai, as data: monitoring stations, road segments, facilities.

Positions: where facts.md gives a coordinate (Bệnh viện Đa khoa Đồng Nai, Trị An dam area) it is
used; otherwise an asset sits a few hundred metres from the centroid of the commune or ward that
holds it (communes_2025.csv centroids, ≈), so the point → unit locator places it in that unit
even with the demo boundaries. Names are real places and institutions; sizes marked "demo" in
the comments are placeholders in the sense of facts.md, not facts.

Ids are stable: `urn:ngsi-ld:<Type>:dn-<slug>`; the device that reports an asset is `dn-<slug>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from math import cos, radians, sin
from typing import Any

from cityops.units.profile import load_profile

# Live emission interval per kind, in seconds (facts.md §5.3: water stations report every 5 min).
INTERVALS: Mapping[str, int] = {
    "air": 300,
    "river_level": 300,
    "reservoir": 900,
    "water_quality": 300,
    "wastewater": 300,
    "traffic": 60,
    "parking": 120,
    "streetlight": 600,
    "waste": 900,
    "weather": 300,
    "noise": 300,
    "hospital": 900,
    "school": 900,
}

ENTITY_TYPES: Mapping[str, str] = {
    "air": "AirQualityObserved",
    "river_level": "WaterObserved",
    "reservoir": "WaterObserved",
    "water_quality": "WaterQualityObserved",
    "wastewater": "WaterQualityObserved",
    "traffic": "TrafficFlowObserved",
    "parking": "OnStreetParking",
    "streetlight": "Streetlight",
    "waste": "WasteContainer",
    "weather": "WeatherObserved",
    "noise": "NoiseLevelObserved",
    "hospital": "PointOfInterest",
    "school": "PointOfInterest",
}

# Kinds that `rate` multiplies (more stations around each city, more traffic segments).
SCALABLE: frozenset[str] = frozenset(
    {"air", "traffic", "parking", "streetlight", "waste", "noise", "wastewater", "water_quality"}
)


@dataclass(frozen=True, slots=True)
class Asset:
    """One simulated thing: a station, a road segment, a facility."""

    kind: str
    slug: str
    name: str
    unit_code: str
    lat: float
    lon: float
    # Weather zone whose rain and temperature the asset feels (a weather station's slug).
    zone: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def entity_type(self) -> str:
        """Return the Smart Data Models type of the asset's entity."""
        return ENTITY_TYPES[self.kind]

    @property
    def entity_id(self) -> str:
        """Return the entity's NGSI-LD id."""
        return f"urn:ngsi-ld:{self.entity_type}:dn-{self.slug}"

    @property
    def device_id(self) -> str:
        """Return the id of the device reporting the asset."""
        return f"dn-{self.slug}"

    @property
    def interval(self) -> int:
        """Return the live emission interval in seconds."""
        return INTERVALS[self.kind]


@lru_cache(maxsize=1)
def centroids() -> Mapping[str, tuple[float, float]]:
    """Return (lat, lon) of each current commune/ward centroid from the Đồng Nai profile."""
    profile = load_profile("dongnai")
    return {
        unit.code: (unit.lat, unit.lon)
        for unit in profile.communes
        if unit.lat is not None and unit.lon is not None
    }


def _near(code: str, dlat: float = 0.0, dlon: float = 0.0) -> tuple[str, float, float]:
    # Offsets stay under ≈ 0.006° (≈ 650 m): inside the smallest Biên Hòa wards' demo cells.
    lat, lon = centroids()[code]
    return code, round(lat + dlat, 5), round(lon + dlon, 5)


def _at(code: str, lat: float, lon: float) -> tuple[str, float, float]:
    return code, lat, lon


# Weather zones: the four weather stations (facts.md §9 asks for inland corrections).
ZONE_BIEN_HOA = "kttv-bien-hoa"
ZONE_LONG_KHANH = "kttv-long-khanh"
ZONE_DONG_XOAI = "kttv-dong-xoai"
ZONE_TAN_PHU = "kttv-tan-phu"


def _asset(
    kind: str,
    slug: str,
    name: str,
    where: tuple[str, float, float],
    zone: str,
    **params: Any,
) -> Asset:
    code, lat, lon = where
    return Asset(kind, slug, name, code, lat, lon, zone, params)


def _weather() -> list[Asset]:
    # temp_offset: facts.md §9, HCMC normals −1 °C for the province, −2 °C inland (Tân Phú);
    # Đồng Xoài and Long Khánh sit higher and inland: −1.5 °C (demo).
    return [
        _asset(
            "weather",
            ZONE_BIEN_HOA,
            "Trạm khí tượng Biên Hòa",
            _near("26041", 0.003, 0.002),
            ZONE_BIEN_HOA,
            temp_offset=-1.0,
            rain_scale=1.055,
        ),
        _asset(
            "weather",
            ZONE_LONG_KHANH,
            "Trạm khí tượng Long Khánh",
            _near("26080", 0.002, -0.002),
            ZONE_LONG_KHANH,
            temp_offset=-1.5,
            rain_scale=1.1,
        ),
        _asset(
            "weather",
            ZONE_DONG_XOAI,
            "Trạm khí tượng Đồng Xoài",
            _near("25210", 0.002, 0.002),
            ZONE_DONG_XOAI,
            temp_offset=-1.5,
            rain_scale=1.2,
        ),
        _asset(
            "weather",
            ZONE_TAN_PHU,
            "Trạm khí tượng Tân Phú",
            _near("26116", -0.002, 0.002),
            ZONE_TAN_PHU,
            temp_offset=-2.0,
            rain_scale=1.15,
        ),
    ]


def _air() -> list[Asset]:
    # pm25: annual-mean PM2.5 in µg/m³ (demo); industry/traffic weight SO2 and NO2/CO.
    # facts.md §5.3 and §8: industrial air stations in Biên Hòa, Long Thành, Nhơn Trạch.
    z = ZONE_BIEN_HOA
    return [
        _asset(
            "air",
            "aq-bien-hoa-trung-tam",
            "Trạm quan trắc không khí tự động Biên Hòa",
            _near("26041", -0.002, 0.003),
            z,
            pm25=30.0,
            industry=0.2,
            traffic=0.9,
        ),
        _asset(
            "air",
            "aq-kcn-bien-hoa-1",
            "Trạm quan trắc không khí KCN Biên Hòa 1",
            _near("26017", -0.004, 0.002),
            z,
            pm25=34.0,
            industry=0.6,
            traffic=0.6,
        ),
        _asset(
            "air",
            "aq-kcn-bien-hoa-2",
            "Trạm quan trắc không khí KCN Biên Hòa 2",
            _near("26020", 0.003, -0.005),
            z,
            pm25=38.0,
            industry=0.9,
            traffic=0.6,
        ),
        _asset(
            "air",
            "aq-kcn-amata",
            "Trạm quan trắc không khí KCN Amata",
            _near("26020", 0.005, 0.003),
            z,
            pm25=36.0,
            industry=0.8,
            traffic=0.5,
        ),
        _asset(
            "air",
            "aq-long-thanh",
            "Trạm quan trắc không khí Long Thành",
            _near("26368", 0.002, -0.002),
            z,
            pm25=30.0,
            industry=0.5,
            traffic=0.7,
        ),
        _asset(
            "air",
            "aq-nhon-trach",
            "Trạm quan trắc không khí KCN Nhơn Trạch",
            _near("26485", 0.003, 0.003),
            z,
            pm25=33.0,
            industry=0.8,
            traffic=0.4,
        ),
        _asset(
            "air",
            "aq-trang-bom",
            "Trạm quan trắc không khí Trảng Bom",
            _near("26248", -0.002, 0.002),
            z,
            pm25=28.0,
            industry=0.5,
            traffic=0.6,
        ),
        _asset(
            "air",
            "aq-long-khanh",
            "Trạm quan trắc không khí Long Khánh",
            _near("26080", -0.003, 0.002),
            ZONE_LONG_KHANH,
            pm25=24.0,
            industry=0.2,
            traffic=0.6,
        ),
        _asset(
            "air",
            "aq-dong-xoai",
            "Trạm quan trắc không khí Đồng Xoài",
            _near("25210", -0.002, -0.003),
            ZONE_DONG_XOAI,
            pm25=22.0,
            industry=0.2,
            traffic=0.5,
        ),
    ]


def _water_levels() -> list[Asset]:
    # Alarm levels I/II/III at Biên Hòa: configurable demo values (the national table of alarm
    # levels is not summarised in facts.md). Trị An figures: facts.md §5.2.
    return [
        _asset(
            "river_level",
            "wl-song-dong-nai-bien-hoa",
            "Trạm thủy văn Biên Hòa (sông Đồng Nai)",
            _near("26068", 0.004, 0.0),
            ZONE_BIEN_HOA,
            mean=0.35,
            tide=0.85,
            seasonal=0.35,
            alarm1=1.6,
            alarm2=1.8,
            alarm3=2.0,
        ),
        # Long Thành bridge (1,721 m, HLD expressway, facts.md §6) between Thủ Đức and Nhơn Trạch.
        _asset(
            "river_level",
            "wl-cau-long-thanh",
            "Trạm đo mực nước cầu Long Thành (sông Đồng Nai)",
            _at("26485", 10.795, 106.836),
            ZONE_BIEN_HOA,
            mean=0.25,
            tide=1.05,
            seasonal=0.25,
            alarm1=1.7,
            alarm2=1.9,
            alarm3=2.1,
        ),
        _asset(
            "river_level",
            "wl-song-dong-nai-ta-lai",
            "Trạm đo mực nước sông Đồng Nai tại Tà Lài",
            _near("26134", 0.003, 0.003),
            ZONE_TAN_PHU,
            mean=112.0,
            tide=0.0,
            seasonal=2.5,
            alarm1=115.5,
            alarm2=116.5,
            alarm3=117.5,
        ),
        # The gauge sits on the lake a few km up-reservoir of the dam (11.105 N, 106.984 E).
        _asset(
            "reservoir",
            "wl-ho-tri-an",
            "Trạm đo mực nước hồ Trị An",
            _at("26170", 11.135, 107.025),
            ZONE_TAN_PHU,
            dead=50.0,
            low_critical=50.5,
            low_warning=52.0,
            discharge_watch=60.0,
            discharge=60.8,
            normal=62.0,
        ),
    ]


def _water_quality() -> list[Asset]:
    # Baselines per river (demo, in the ranges of QCVN 08:2023/BTNMT classes A–B).
    dn = {"do": 6.2, "bod": 3.5, "cod": 9.0, "tss": 25.0, "nh4": 0.15, "turb": 20.0}
    tv = {"do": 4.2, "bod": 6.5, "cod": 18.0, "tss": 45.0, "nh4": 0.6, "turb": 35.0}
    ln = {"do": 5.8, "bod": 4.0, "cod": 10.0, "tss": 35.0, "nh4": 0.2, "turb": 30.0}
    return [
        _asset(
            "water_quality",
            "wq-song-dong-nai-ta-lai",
            "Trạm quan trắc nước mặt sông Đồng Nai – Tà Lài",
            _near("26134", -0.003, 0.002),
            ZONE_TAN_PHU,
            river="Sông Đồng Nai",
            **dn,
        ),
        _asset(
            "water_quality",
            "wq-song-dong-nai-tri-an",
            "Trạm quan trắc nước mặt sông Đồng Nai – hạ lưu đập Trị An",
            _near("26179", 0.004, 0.002),
            ZONE_BIEN_HOA,
            river="Sông Đồng Nai",
            **dn,
        ),
        _asset(
            "water_quality",
            "wq-song-dong-nai-hoa-an",
            "Trạm quan trắc nước mặt sông Đồng Nai – trạm bơm Hóa An",
            _near("26068", 0.002, -0.004),
            ZONE_BIEN_HOA,
            river="Sông Đồng Nai",
            **{**dn, "bod": 4.2, "cod": 11.0},
        ),
        _asset(
            "water_quality",
            "wq-song-dong-nai-long-hung",
            "Trạm quan trắc nước mặt sông Đồng Nai – Long Hưng",
            _near("26380", -0.003, -0.003),
            ZONE_BIEN_HOA,
            river="Sông Đồng Nai",
            **{**dn, "do": 5.4, "bod": 5.0, "cod": 13.0},
        ),
        _asset(
            "water_quality",
            "wq-song-dong-nai-cau-long-thanh",
            "Trạm quan trắc nước mặt sông Đồng Nai – cầu Long Thành",
            _near("26485", 0.004, -0.001),
            ZONE_BIEN_HOA,
            river="Sông Đồng Nai",
            **{**dn, "do": 5.0, "bod": 5.5, "cod": 14.0},
        ),
        _asset(
            "water_quality",
            "wq-song-thi-vai-phuoc-an",
            "Trạm quan trắc nước mặt sông Thị Vải – Phước An",
            _near("26503", 0.003, 0.002),
            ZONE_BIEN_HOA,
            river="Sông Thị Vải",
            **tv,
        ),
        _asset(
            "water_quality",
            "wq-song-thi-vai-phuoc-thai",
            "Trạm quan trắc nước mặt sông Thị Vải – Phước Thái",
            _near("26422", -0.003, -0.002),
            ZONE_BIEN_HOA,
            river="Sông Thị Vải",
            **tv,
        ),
        _asset(
            "water_quality",
            "wq-song-la-nga",
            "Trạm quan trắc nước mặt sông La Ngà – cầu La Ngà",
            _near("26227", 0.003, -0.003),
            ZONE_TAN_PHU,
            river="Sông La Ngà",
            **ln,
        ),
    ]


# Industrial-park wastewater stations (facts.md §5.3 and §8); flow in m³/h (demo).
_PARKS: tuple[tuple[str, str, str, float, float, str, float], ...] = (
    ("kcn-bien-hoa-2", "KCN Biên Hòa 2", "26020", -0.004, -0.003, ZONE_BIEN_HOA, 420.0),
    ("kcn-amata", "KCN Amata", "26020", 0.004, 0.005, ZONE_BIEN_HOA, 380.0),
    ("kcn-loteco", "KCN Loteco", "26020", -0.002, 0.004, ZONE_BIEN_HOA, 150.0),
    ("kcn-agtex-long-binh", "KCN Agtex Long Bình", "26020", 0.0, -0.005, ZONE_BIEN_HOA, 90.0),
    ("kcn-nhon-trach-3", "KCN Nhơn Trạch 3", "26485", -0.004, 0.004, ZONE_BIEN_HOA, 310.0),
    ("kcn-giang-dien", "KCN Giang Điền", "26296", 0.003, -0.003, ZONE_BIEN_HOA, 200.0),
    ("kcn-song-may", "KCN Sông Mây", "26248", 0.004, -0.004, ZONE_BIEN_HOA, 160.0),
    ("kcn-long-duc", "KCN Long Đức", "26368", -0.004, 0.004, ZONE_BIEN_HOA, 180.0),
    ("kcn-suoi-tre", "KCN Suối Tre", "26089", -0.004, 0.003, ZONE_LONG_KHANH, 120.0),
    ("kcn-xuan-loc", "KCN Xuân Lộc", "26425", 0.003, 0.004, ZONE_LONG_KHANH, 110.0),
    ("kcn-dinh-quan", "KCN Định Quán", "26206", 0.003, -0.003, ZONE_TAN_PHU, 60.0),
    ("kcn-tan-phu", "KCN Tân Phú", "26116", 0.003, -0.003, ZONE_TAN_PHU, 55.0),
    ("kcn-minh-hung", "KCN Minh Hưng", "25441", 0.003, 0.003, ZONE_DONG_XOAI, 140.0),
    ("kcn-dong-xoai", "KCN Đồng Xoài", "25195", 0.003, -0.003, ZONE_DONG_XOAI, 100.0),
)


def _wastewater() -> list[Asset]:
    return [
        _asset(
            "wastewater",
            f"ww-{slug}",
            f"Trạm quan trắc nước thải tự động {name}",
            _near(code, dlat, dlon),
            zone,
            park=name,
            flow=flow,
        )
        for slug, name, code, dlat, dlon, zone, flow in _PARKS
    ]


def _traffic() -> list[Asset]:
    # aadt: vehicles/day both directions; capacity: vehicles/h both directions; profile picks the
    # hourly shape. HLD expressway ≈ 65,000/day, 75,000 at weekend peaks (facts.md §6); urban
    # Biên Hòa segments are given capacities that put rush hours at a TTI of 1.5–2.5 (§6).
    z = ZONE_BIEN_HOA
    lk = ZONE_LONG_KHANH
    return [
        _asset(
            "traffic",
            "tf-ql1a-ho-nai",
            "Quốc lộ 1A – đoạn Hố Nai",
            _near("26005", 0.003, -0.003),
            z,
            road="QL1A",
            aadt=92000,
            capacity=5200,
            speed=50,
            profile="urban",
        ),
        _asset(
            "traffic",
            "tf-ql1a-trang-bom",
            "Quốc lộ 1A – đoạn Trảng Bom",
            _near("26248", 0.002, 0.004),
            z,
            road="QL1A",
            aadt=56000,
            capacity=5600,
            speed=70,
            profile="highway",
        ),
        _asset(
            "traffic",
            "tf-ql1a-dau-giay",
            "Quốc lộ 1A – nút giao Dầu Giây",
            _near("26326", -0.003, 0.003),
            lk,
            road="QL1A",
            aadt=52000,
            capacity=5000,
            speed=60,
            profile="highway",
        ),
        _asset(
            "traffic",
            "tf-ql1a-long-khanh",
            "Quốc lộ 1A – đoạn Long Khánh",
            _near("26080", 0.003, 0.003),
            lk,
            road="QL1A",
            aadt=42000,
            capacity=3600,
            speed=50,
            profile="urban",
        ),
        _asset(
            "traffic",
            "tf-ql1a-xuan-loc",
            "Quốc lộ 1A – đoạn Xuân Lộc",
            _near("26425", -0.003, -0.003),
            lk,
            road="QL1A",
            aadt=30000,
            capacity=4200,
            speed=70,
            profile="highway",
        ),
        _asset(
            "traffic",
            "tf-ql51-long-binh-tan",
            "Quốc lộ 51 – đoạn Long Bình Tân",
            _near("26380", 0.004, 0.002),
            z,
            road="QL51",
            aadt=85000,
            capacity=4800,
            speed=50,
            profile="urban",
        ),
        _asset(
            "traffic",
            "tf-ql51-tam-phuoc",
            "Quốc lộ 51 – đoạn Tam Phước",
            _near("26374", -0.003, 0.003),
            z,
            road="QL51",
            aadt=62000,
            capacity=5600,
            speed=70,
            profile="highway",
        ),
        _asset(
            "traffic",
            "tf-ql51-long-thanh",
            "Quốc lộ 51 – đoạn Long Thành",
            _near("26368", 0.004, 0.003),
            z,
            road="QL51",
            aadt=58000,
            capacity=4400,
            speed=60,
            profile="urban",
        ),
        _asset(
            "traffic",
            "tf-ql51-phuoc-thai",
            "Quốc lộ 51 – đoạn Phước Thái",
            _near("26422", 0.003, 0.003),
            z,
            road="QL51",
            aadt=46000,
            capacity=5200,
            speed=70,
            profile="highway",
        ),
        _asset(
            "traffic",
            "tf-ql20-gia-kiem",
            "Quốc lộ 20 – đoạn Gia Kiệm",
            _near("26311", 0.003, -0.003),
            lk,
            road="QL20",
            aadt=22000,
            capacity=3200,
            speed=60,
            profile="highway",
        ),
        _asset(
            "traffic",
            "tf-ql20-dinh-quan",
            "Quốc lộ 20 – đoạn Định Quán",
            _near("26206", -0.003, 0.003),
            ZONE_TAN_PHU,
            road="QL20",
            aadt=18000,
            capacity=3200,
            speed=60,
            profile="highway",
        ),
        _asset(
            "traffic",
            "tf-ql20-tan-phu",
            "Quốc lộ 20 – đoạn Tân Phú",
            _near("26116", 0.002, 0.004),
            ZONE_TAN_PHU,
            road="QL20",
            aadt=15000,
            capacity=3000,
            speed=60,
            profile="highway",
        ),
        _asset(
            "traffic",
            "tf-cao-toc-hld-cau-long-thanh",
            "Cao tốc TP.HCM – Long Thành – Dầu Giây – cầu Long Thành",
            _near("26485", 0.005, -0.005),
            z,
            road="CT01",
            aadt=65000,
            capacity=6400,
            speed=100,
            profile="expressway",
        ),
        _asset(
            "traffic",
            "tf-cao-toc-hld-long-thanh",
            "Cao tốc TP.HCM – Long Thành – Dầu Giây – nút giao Long Thành",
            _near("26389", -0.004, 0.003),
            z,
            road="CT01",
            aadt=65000,
            capacity=6400,
            speed=100,
            profile="expressway",
        ),
        _asset(
            "traffic",
            "tf-cao-toc-hld-dau-giay",
            "Cao tốc TP.HCM – Long Thành – Dầu Giây – nút giao Dầu Giây",
            _near("26326", 0.004, -0.004),
            lk,
            road="CT01",
            aadt=48000,
            capacity=6400,
            speed=100,
            profile="expressway",
        ),
        _asset(
            "traffic",
            "tf-dong-khoi-tam-hiep",
            "Đường Đồng Khởi – Tam Hiệp",
            _near("26017", 0.003, 0.0),
            z,
            road="Đồng Khởi",
            aadt=68000,
            capacity=3800,
            speed=45,
            profile="urban",
        ),
        _asset(
            "traffic",
            "tf-pham-van-thuan",
            "Đường Phạm Văn Thuận – Trấn Biên",
            _near("26041", 0.004, 0.004),
            z,
            road="Phạm Văn Thuận",
            aadt=60000,
            capacity=3400,
            speed=45,
            profile="urban",
        ),
        _asset(
            "traffic",
            "tf-ql14-dong-xoai",
            "Quốc lộ 14 – đoạn Đồng Xoài",
            _near("25210", 0.004, 0.004),
            ZONE_DONG_XOAI,
            road="QL14",
            aadt=28000,
            capacity=3600,
            speed=50,
            profile="urban",
        ),
        _asset(
            "traffic",
            "tf-ql13-chon-thanh",
            "Quốc lộ 13 – đoạn Chơn Thành",
            _near("25432", 0.003, 0.003),
            ZONE_DONG_XOAI,
            road="QL13",
            aadt=34000,
            capacity=4600,
            speed=60,
            profile="highway",
        ),
    ]


def _parking() -> list[Asset]:
    # spots: car and motorbike spaces marked on the street (demo).
    z = ZONE_BIEN_HOA
    lk = ZONE_LONG_KHANH
    return [
        _asset(
            "parking",
            "pk-duong-30-thang-4",
            "Điểm đỗ xe đường 30 Tháng 4",
            _near("26041", 0.001, -0.003),
            z,
            spots=60,
            profile="commercial",
        ),
        _asset(
            "parking",
            "pk-cach-mang-thang-tam",
            "Điểm đỗ xe đường Cách Mạng Tháng Tám",
            _near("26041", -0.003, -0.002),
            z,
            spots=45,
            profile="commercial",
        ),
        _asset(
            "parking",
            "pk-ha-huy-giap",
            "Điểm đỗ xe đường Hà Huy Giáp",
            _near("26041", 0.004, -0.001),
            z,
            spots=40,
            profile="office",
        ),
        _asset(
            "parking",
            "pk-cho-bien-hoa",
            "Điểm đỗ xe chợ Biên Hòa",
            _near("26068", -0.002, 0.003),
            z,
            spots=80,
            profile="market",
        ),
        _asset(
            "parking",
            "pk-benh-vien-dong-nai",
            "Điểm đỗ xe Bệnh viện Đa khoa Đồng Nai",
            _near("26017", -0.002, -0.004),
            z,
            spots=120,
            profile="office",
        ),
        _asset(
            "parking",
            "pk-hung-vuong-long-khanh",
            "Điểm đỗ xe đường Hùng Vương (Long Khánh)",
            _near("26080", 0.002, 0.003),
            lk,
            spots=50,
            profile="commercial",
        ),
        _asset(
            "parking",
            "pk-nguyen-trai-long-khanh",
            "Điểm đỗ xe đường Nguyễn Trãi (Long Khánh)",
            _near("26080", -0.002, -0.003),
            lk,
            spots=35,
            profile="office",
        ),
        _asset(
            "parking",
            "pk-cho-long-khanh",
            "Điểm đỗ xe chợ Long Khánh",
            _near("26080", 0.004, -0.002),
            lk,
            spots=70,
            profile="market",
        ),
    ]


def _streetlights() -> list[Asset]:
    streets = (
        ("dong-khoi", "Đồng Khởi", "26017", ZONE_BIEN_HOA),
        ("pham-van-thuan", "Phạm Văn Thuận", "26041", ZONE_BIEN_HOA),
        ("nguyen-ai-quoc", "Nguyễn Ái Quốc", "26005", ZONE_BIEN_HOA),
        ("hung-vuong", "Hùng Vương", "26080", ZONE_LONG_KHANH),
        ("phu-rieng-do", "Phú Riềng Đỏ", "25210", ZONE_DONG_XOAI),
    )
    out = []
    for slug, street, code, zone in streets:
        for i in range(6):
            # Lights every ≈ 40 m along a short stretch near the ward centre.
            where = _near(code, -0.0025 + 0.0004 * i, -0.002 + 0.0004 * i)
            out.append(
                _asset(
                    "streetlight",
                    f"sl-{slug}-{i + 1:02d}",
                    f"Đèn chiếu sáng đường {street} số {i + 1}",
                    where,
                    zone,
                    street=street,
                    power=150.0,
                )
            )
    return out


def _waste() -> list[Asset]:
    # fill: fraction of a 660-litre container filled per day of normal activity (demo).
    places = (
        ("cho-bien-hoa", "chợ Biên Hòa", "26068", 1.3),
        ("cong-vien-bien-hung", "công viên Biên Hùng", "26068", 0.8),
        ("cho-tan-hiep", "chợ Tân Hiệp", "26017", 1.2),
        ("duong-dong-khoi", "đường Đồng Khởi", "26017", 0.9),
        ("cho-long-binh", "chợ Long Bình", "26020", 1.1),
        ("cho-ho-nai", "chợ Hố Nai", "26005", 1.2),
        ("quang-truong-tinh", "quảng trường tỉnh", "26041", 0.7),
        ("cho-trang-dai", "chợ Trảng Dài", "25993", 1.0),
        ("cho-long-khanh", "chợ Long Khánh", "26080", 1.3),
        ("duong-hung-vuong", "đường Hùng Vương", "26080", 0.8),
        ("cho-dong-xoai", "chợ Đồng Xoài", "25210", 1.1),
        ("cho-long-thanh", "chợ Long Thành", "26368", 1.2),
    )
    zones = {"26080": ZONE_LONG_KHANH, "25210": ZONE_DONG_XOAI}
    return [
        _asset(
            "waste",
            f"wc-{slug}",
            f"Thùng rác công cộng {place}",
            _near(code, 0.002 * (1 if i % 2 else -1), 0.002),
            zones.get(code, ZONE_BIEN_HOA),
            fill=fill,
            capacity=660,
        )
        for i, (slug, place, code, fill) in enumerate(places)
    ]


def _noise() -> list[Asset]:
    # base: daytime LAeq in dB(A) (demo; QCVN 26:2010 limits 70 dB(A) by day in mixed areas).
    return [
        _asset(
            "noise",
            "nl-nga-tu-vung-tau",
            "Trạm đo tiếng ồn ngã tư Vũng Tàu",
            _near("26380", 0.005, -0.002),
            ZONE_BIEN_HOA,
            base=74.0,
        ),
        _asset(
            "noise",
            "nl-cong-vien-bien-hung",
            "Trạm đo tiếng ồn công viên Biên Hùng",
            _near("26068", 0.003, 0.003),
            ZONE_BIEN_HOA,
            base=63.0,
        ),
        _asset(
            "noise",
            "nl-nga-tu-amata",
            "Trạm đo tiếng ồn ngã tư Amata",
            _near("26020", 0.005, -0.001),
            ZONE_BIEN_HOA,
            base=72.0,
        ),
        _asset(
            "noise",
            "nl-trung-tam-long-khanh",
            "Trạm đo tiếng ồn trung tâm Long Khánh",
            _near("26080", 0.0, 0.004),
            ZONE_LONG_KHANH,
            base=66.0,
        ),
        _asset(
            "noise",
            "nl-nut-giao-dau-giay",
            "Trạm đo tiếng ồn nút giao Dầu Giây",
            _near("26326", 0.0, 0.004),
            ZONE_LONG_KHANH,
            base=71.0,
        ),
        _asset(
            "noise",
            "nl-cho-dong-xoai",
            "Trạm đo tiếng ồn chợ Đồng Xoài",
            _near("25210", -0.004, 0.0),
            ZONE_DONG_XOAI,
            base=65.0,
        ),
    ]


def _hospitals() -> list[Asset]:
    # Bệnh viện Đa khoa Đồng Nai: 1,150 beds and 3,500–4,000 outpatient visits/day at
    # ≈ 10.95 N, 106.85 E (facts.md §4). The others: demo sizes of facts.md §4 (regional general
    # hospitals 300–600 beds, 500–1,500 visits/day).
    return [
        _asset(
            "hospital",
            "bv-da-khoa-dong-nai",
            "Bệnh viện Đa khoa Đồng Nai",
            _at("26017", 10.95, 106.85),
            ZONE_BIEN_HOA,
            beds=1150,
            visits=3750,
        ),
        _asset(
            "hospital",
            "bv-da-khoa-thong-nhat",
            "Bệnh viện Đa khoa Thống Nhất",
            _near("26005", -0.003, 0.002),
            ZONE_BIEN_HOA,
            beds=900,
            visits=2500,
        ),
        _asset(
            "hospital",
            "bv-nhi-dong-nai",
            "Bệnh viện Nhi Đồng Nai",
            _near("26041", 0.005, 0.001),
            ZONE_BIEN_HOA,
            beds=600,
            visits=1500,
        ),
        _asset(
            "hospital",
            "bv-dkkv-long-khanh",
            "Bệnh viện Đa khoa khu vực Long Khánh",
            _near("26080", -0.004, 0.003),
            ZONE_LONG_KHANH,
            beds=550,
            visits=1400,
        ),
        _asset(
            "hospital",
            "bv-dkkv-long-thanh",
            "Bệnh viện Đa khoa khu vực Long Thành",
            _near("26368", -0.002, 0.004),
            ZONE_BIEN_HOA,
            beds=450,
            visits=1100,
        ),
        _asset(
            "hospital",
            "bv-dkkv-dinh-quan",
            "Bệnh viện Đa khoa khu vực Định Quán",
            _near("26206", 0.004, 0.003),
            ZONE_TAN_PHU,
            beds=350,
            visits=700,
        ),
        _asset(
            "hospital",
            "bv-da-khoa-binh-phuoc",
            "Bệnh viện Đa khoa tỉnh Bình Phước",
            _near("25210", 0.004, -0.003),
            ZONE_DONG_XOAI,
            beds=600,
            visits=1500,
        ),
    ]


def _schools() -> list[Asset]:
    # Upper-secondary schools of the province (places: demo sizes).
    schools = (
        ("thpt-chuyen-luong-the-vinh", "Trường THPT chuyên Lương Thế Vinh", "26041", 1100),
        ("thpt-ngo-quyen", "Trường THPT Ngô Quyền", "26041", 1900),
        ("thpt-nguyen-trai-bien-hoa", "Trường THPT Nguyễn Trãi", "26068", 1700),
        ("thpt-tam-hiep", "Trường THPT Tam Hiệp", "26017", 1600),
        ("thpt-long-khanh", "Trường THPT Long Khánh", "26080", 1600),
        ("thpt-trang-bom", "Trường THPT Trảng Bom", "26248", 1800),
        ("thpt-long-thanh", "Trường THPT Long Thành", "26368", 1800),
        ("thpt-nhon-trach", "Trường THPT Nhơn Trạch", "26485", 1500),
        ("thpt-dinh-quan", "Trường THPT Định Quán", "26206", 1400),
        ("thpt-tan-phu", "Trường THPT Tân Phú", "26116", 1300),
        ("thpt-xuan-loc", "Trường THPT Xuân Lộc", "26425", 1400),
        ("thpt-chuyen-quang-trung", "Trường THPT chuyên Quang Trung", "25210", 1000),
    )
    zones = {
        "26080": ZONE_LONG_KHANH,
        "26425": ZONE_LONG_KHANH,
        "25210": ZONE_DONG_XOAI,
        "26206": ZONE_TAN_PHU,
        "26116": ZONE_TAN_PHU,
    }
    return [
        _asset(
            "school",
            f"sch-{slug}",
            name,
            _near(code, -0.004 + 0.002 * (i % 3), 0.004 - 0.003 * (i % 2)),
            zones.get(code, ZONE_BIEN_HOA),
            places=places,
        )
        for i, (slug, name, code, places) in enumerate(schools)
    ]


def _replicas(asset: Asset, rate: int) -> list[Asset]:
    # Deterministic ring of extra points ≤ 0.004° from the original: same unit, same zone.
    out = []
    for k in range(2, rate + 1):
        angle = (k * 137.5) % 360.0
        radius = 0.0012 + 0.0007 * ((k - 2) % 4)
        dlat = round(radius * sin(radians(angle)), 5)
        dlon = round(radius * cos(radians(angle)), 5)
        out.append(
            replace(
                asset,
                slug=f"{asset.slug}-{k}",
                name=f"{asset.name} (điểm đo {k})",
                lat=round(asset.lat + dlat, 5),
                lon=round(asset.lon + dlon, 5),
            )
        )
    return out


def build_catalog(rate: int = 1) -> list[Asset]:
    """Return every simulated asset; `rate` > 1 adds that many points per scalable asset."""
    if rate < 1:
        raise ValueError("rate must be at least 1")
    base = [
        *_weather(),
        *_air(),
        *_water_levels(),
        *_water_quality(),
        *_wastewater(),
        *_traffic(),
        *_parking(),
        *_streetlights(),
        *_waste(),
        *_noise(),
        *_hospitals(),
        *_schools(),
    ]
    out = list(base)
    if rate > 1:
        for asset in base:
            if asset.kind in SCALABLE:
                out.extend(_replicas(asset, rate))
    return out


def by_slug(assets: list[Asset]) -> dict[str, Asset]:
    """Index assets by slug."""
    return {asset.slug: asset for asset in assets}
