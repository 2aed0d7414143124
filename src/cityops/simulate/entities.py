"""Shapes: an asset and its observation as NGSI-LD entities, ingest payloads and device specs.

Static attributes (name, location, capacities, alarm levels) are written once when the asset is
provisioned; observations carry only measured attributes, so history holds measurements only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cityops.simulate.catalog import Asset
from cityops.simulate.generators import UNIT_CODES

# Attributes that are not numbers, by kind of value (everything else is a number).
TEXT_ATTRIBUTES = frozenset(
    {"airQualityLevel", "floodLevelStatus", "reservoirStatus", "powerState", "status",
     "dateLastEmptying"}
)  # fmt: skip
BOOLEAN_ATTRIBUTES = frozenset({"congested"})

# The measured attributes of each kind, in payload order.
MEASURED: Mapping[str, tuple[str, ...]] = {
    "air": ("pm25", "pm10", "no2", "o3", "co", "so2", "temperature", "relativeHumidity",
            "airQualityIndex", "airQualityLevel"),
    "river_level": ("waterLevel", "floodLevelStatus"),
    "reservoir": ("waterLevel", "reservoirStatus"),
    "water_quality": ("temperature", "pH", "O2", "bod", "cod", "tss", "NH4", "turbidity"),
    "wastewater": ("temperature", "pH", "cod", "tss", "NH4", "flow"),
    "traffic": ("intensity", "averageVehicleSpeed", "occupancy", "travelTimeIndex", "congested"),
    "parking": ("occupiedSpotNumber", "availableSpotNumber", "occupancy"),
    "streetlight": ("powerState", "status", "illuminanceLevel"),
    "waste": ("fillingLevel", "status", "dateLastEmptying"),
    "weather": ("temperature", "relativeHumidity", "precipitation", "windSpeed",
                "windDirection", "atmosphericPressure"),
    "noise": ("LAeq", "LAmax"),
    "hospital": ("occupancy", "bedOccupancy", "outpatientVisits"),
    "school": ("attendanceRate", "occupancy"),
}  # fmt: skip


def iso(t: datetime) -> str:
    """Return an instant as ISO 8601 UTC with a Z suffix."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _prop(value: Any, unit: str | None = None, observed: str | None = None) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        prop["unitCode"] = unit
    if observed:
        prop["observedAt"] = observed
    return prop


def _static(asset: Asset) -> dict[str, Any]:
    p = asset.params
    kind = asset.kind
    if kind == "hospital":
        return {"category": ["hospital"], "capacity": p["beds"]}
    if kind == "school":
        return {"category": ["school"], "capacity": p["places"]}
    if kind == "parking":
        # OnStreetParking's categories are about charging and use; "onStreet" belongs to
        # ParkingSpot, and the entity type already says it.
        return {"totalSpotNumber": p["spots"], "category": ["feeCharged"]}
    if kind == "river_level":
        return {"alarmLevel1": p["alarm1"], "alarmLevel2": p["alarm2"], "alarmLevel3": p["alarm3"]}
    if kind == "reservoir":
        return {
            "deadLevel": p["dead"], "dischargeLevel": p["discharge"],
            "lowWarningLevel": p["low_warning"], "normalLevel": p["normal"],
        }  # fmt: skip
    if kind == "traffic":
        return {"roadName": p["road"], "maximumAllowedSpeed": p["speed"]}
    if kind == "waste":
        return {"binCapacity": p["capacity"]}
    if kind in ("water_quality",):
        return {"riverName": p["river"]}
    if kind == "wastewater":
        return {"industrialPark": p["park"]}
    if kind == "streetlight":
        return {"streetName": p["street"]}
    return {}


_STATIC_UNITS = {
    "alarmLevel1": "MTR", "alarmLevel2": "MTR", "alarmLevel3": "MTR", "deadLevel": "MTR",
    "dischargeLevel": "MTR", "lowWarningLevel": "MTR", "normalLevel": "MTR",
    "maximumAllowedSpeed": "KMH", "binCapacity": "LTR",
}  # fmt: skip


def static_entity(asset: Asset) -> dict[str, Any]:
    """Return the asset's entity with its name, location and fixed attributes."""
    entity: dict[str, Any] = {
        "id": asset.entity_id,
        "type": asset.entity_type,
        "name": _prop(asset.name),
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [asset.lon, asset.lat]},
        },
    }
    for key, value in _static(asset).items():
        entity[key] = _prop(value, _STATIC_UNITS.get(key))
    return entity


def observation_entity(asset: Asset, values: Mapping[str, Any], t: datetime) -> dict[str, Any]:
    """Return an entity fragment holding one observation's attributes, each with observedAt."""
    observed = iso(t)
    entity: dict[str, Any] = {"id": asset.entity_id, "type": asset.entity_type}
    for key, value in values.items():
        entity[key] = _prop(value, UNIT_CODES.get(key), observed)
    return entity


def ingest_body(values: Mapping[str, Any], t: datetime) -> dict[str, Any]:
    """Return the HTTP/MQTT ingest payload of one observation."""
    return {**values, "observedAt": iso(t)}


def attribute_specs(asset: Asset) -> list[dict[str, Any]]:
    """Return the device's attribute map (payload key → attribute, type and canonical unit)."""
    specs: list[dict[str, Any]] = []
    for key in MEASURED[asset.kind]:
        if key in TEXT_ATTRIBUTES:
            specs.append({"key": key, "type": "text"})
        elif key in BOOLEAN_ATTRIBUTES:
            specs.append({"key": key, "type": "boolean"})
        else:
            spec: dict[str, Any] = {"key": key, "type": "number"}
            if key in UNIT_CODES:
                spec["unit_code"] = UNIT_CODES[key]
            specs.append(spec)
    return specs
