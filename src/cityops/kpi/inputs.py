"""The registry of named inputs an indicator formula may use.

Every input is an additive quantity per commune/ward for one period (a count, a sum, a number of
observations), so the value of an area or of the province is the formula applied to the inputs
summed over its units: a ratio of sums, never a mean of ratios. A mean is therefore written as
two inputs (`pm25_sum / pm25_count`).

Inputs come from the context store's history and current state, incidents, dossiers (egov),
citizen reports, population (seed data), yearly sector statistics (imported, `kpi_statistic`)
and unit areas. An input whose source system is not connected yet is declared without a fetch
(`pending`): a formula may use it, and its value is "no data" until the source exists. A sector
statistic never imported is "no data" too (its fetch answers None), rather than zero.

Other contexts' tables are only read here, in a few grouped queries per period.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cityops.citizen import service as citizen_service
from cityops.context import flows as context_flows
from cityops.context.models import Attribute, Entity, History, Tenant
from cityops.context.service import DEFAULT_TENANT
from cityops.core.runtime import Runtime
from cityops.egov import service as egov_service
from cityops.egov.enums import GroupBy
from cityops.egov.periods import Period
from cityops.incidents.models import Incident
from cityops.kpi import service
from cityops.kpi.periods import Window
from cityops.units.models import AdminUnit

# QCVN 05:2023 24-hour PM2.5 limit (µg/m³, *to confirm* in the catalogue) and the VN_AQI
# "Kém" (poor) threshold; kept here with their source rather than scattered in queries.
PM25_DAILY_LIMIT = 50.0
AQI_POOR_ABOVE = 100.0

Values = dict[str, float]


@dataclass(slots=True)
class Source:
    """What input fetchers read from: the period, the session, and a cache shared between the
    inputs that come from one query."""

    runtime: Runtime
    session: Session
    window: Window
    now: datetime
    cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, load: Callable[[], Any]) -> Any:
        """Run `load` once per source and key (several inputs share one grouped query)."""
        if key not in self.cache:
            self.cache[key] = load()
        return self.cache[key]


@dataclass(frozen=True, slots=True)
class Input:
    """A named input: where it comes from, what it means, and how to fetch it per unit."""

    name: str
    source: str
    description: str
    description_en: str
    fetch: Callable[[Source], Values | None] | None = None

    @property
    def pending(self) -> bool:
        """True when the source system is not connected yet (the value is "no data")."""
        return self.fetch is None


# --- population and units -----------------------------------------------------------------


def _population(src: Source) -> Values:
    return {
        code: float(n)
        for code, n in service.get_population_map(session=src.session, year=src.window.year).items()
    }


def _area(src: Source) -> Values:
    rows = src.session.execute(
        select(AdminUnit.code, AdminUnit.area_km2).where(
            AdminUnit.level == "commune", AdminUnit.area_km2.is_not(None)
        )
    )
    return {code: float(area or 0.0) for code, area in rows}


# --- context store ------------------------------------------------------------------------


def _iri(src: Source, term: str) -> str:
    return context_flows.default_context(src.runtime).expand(term)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _history(src: Source, entity_type: str, attribute: str) -> list[tuple[str, int, float, int]]:
    """(unit_code, observed_ms, value, entity_pk) of one attribute's numeric history in the
    period, for located entities of the default tenant."""

    def load() -> list[tuple[str, int, float, int]]:
        query = (
            select(Entity.unit_code, History.observed_ms, History.value_num, Entity.pk)
            .join(Entity, Entity.pk == History.entity_pk)
            .join(Tenant, Tenant.id == Entity.tenant_id)
            .where(
                Tenant.name == DEFAULT_TENANT,
                Entity.type == _iri(src, entity_type),
                Entity.unit_code.is_not(None),
                History.name == _iri(src, attribute),
                History.value_num.is_not(None),
                History.observed_ms >= _ms(src.window.start),
                History.observed_ms < _ms(src.window.end),
            )
        )
        rows = src.session.execute(query)
        return [(str(u), int(t), float(v or 0.0), int(pk)) for u, t, v, pk in rows]

    return list(src.once(f"history:{entity_type}:{attribute}", load))


def _sum_count(entity_type: str, attribute: str, part: str) -> Callable[[Source], Values]:
    def fetch(src: Source) -> Values:
        out: Values = defaultdict(float)
        for unit, _, value, _ in _history(src, entity_type, attribute):
            out[unit] += value if part == "sum" else 1.0
        return dict(out)

    return fetch


def _daily(src: Source, entity_type: str, attribute: str, how: str) -> dict[tuple[str, str], float]:
    """Per (unit, local day): the daily max or mean of an attribute over the unit's stations."""
    zone = ZoneInfo(src.runtime.settings.timezone)
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    for unit, ms, value, _ in _history(src, entity_type, attribute):
        day = datetime.fromtimestamp(ms / 1000, zone).date().isoformat()
        sums[(unit, day)].append(value)
    if how == "max":
        return {key: max(v) for key, v in sums.items()}
    return {key: sum(v) / len(v) for key, v in sums.items()}


def _days(entity_type: str, attribute: str, how: str, above: float | None) -> Any:
    def fetch(src: Source) -> Values:
        out: Values = defaultdict(float)
        for (unit, _), value in _daily(src, entity_type, attribute, how).items():
            if above is None or value > above:
                out[unit] += 1.0
            else:
                out.setdefault(unit, 0.0)
        return dict(out)

    return fetch


def _entity_mean_sum(entity_type: str, attribute: str) -> Callable[[Source], Values]:
    """Σ over entities of the entity's mean in the period (e.g. average occupied beds)."""

    def fetch(src: Source) -> Values:
        per: dict[int, list[float]] = defaultdict(list)
        unit_of: dict[int, str] = {}
        for unit, _, value, pk in _history(src, entity_type, attribute):
            per[pk].append(value)
            unit_of[pk] = unit
        out: Values = defaultdict(float)
        for pk, values in per.items():
            out[unit_of[pk]] += sum(values) / len(values)
        return dict(out)

    return fetch


def _current(src: Source, entity_type: str, attribute: str) -> list[tuple[str, Any, Any]]:
    """(unit_code, value, numeric value) of one attribute's current value per located entity."""

    def load() -> list[tuple[str, Any, Any]]:
        query = (
            select(Entity.unit_code, Attribute.value, Attribute.value_num)
            .join(Entity, Entity.pk == Attribute.entity_pk)
            .join(Tenant, Tenant.id == Entity.tenant_id)
            .where(
                Tenant.name == DEFAULT_TENANT,
                Entity.type == _iri(src, entity_type),
                Entity.unit_code.is_not(None),
                Attribute.name == _iri(src, attribute),
            )
        )
        return [(str(u), v, n) for u, v, n in src.session.execute(query)]

    return list(src.once(f"current:{entity_type}:{attribute}", load))


def _hospital_beds(src: Source) -> Values:
    query = (
        select(Entity.pk, Entity.unit_code, Attribute.name, Attribute.value, Attribute.value_num)
        .join(Entity, Entity.pk == Attribute.entity_pk)
        .join(Tenant, Tenant.id == Entity.tenant_id)
        .where(
            Tenant.name == DEFAULT_TENANT,
            Entity.type == _iri(src, "PointOfInterest"),
            Entity.unit_code.is_not(None),
            Attribute.name.in_([_iri(src, "category"), _iri(src, "capacity")]),
        )
    )
    category, capacity = _iri(src, "category"), _iri(src, "capacity")
    hospitals: set[int] = set()
    beds: dict[int, tuple[str, float]] = {}
    for pk, unit, name, value, number in src.session.execute(query):
        if name == category:
            kinds = value if isinstance(value, list) else [value]
            if "hospital" in kinds:
                hospitals.add(pk)
        elif name == capacity and number is not None:
            beds[pk] = (str(unit), float(number))
    out: Values = defaultdict(float)
    for pk in hospitals:
        if pk in beds:
            unit, n = beds[pk]
            out[unit] += n
    return dict(out)


def _count_entities(entity_type: str, attribute: str, equals: str | None) -> Any:
    def fetch(src: Source) -> Values:
        out: Values = defaultdict(float)
        for unit, value, _ in _current(src, entity_type, attribute):
            if equals is None or value == equals:
                out[unit] += 1.0
            else:
                out.setdefault(unit, 0.0)
        return dict(out)

    return fetch


def _count_type(entity_type: str) -> Callable[[Source], Values]:
    def fetch(src: Source) -> Values:
        query = (
            select(Entity.unit_code, func.count())
            .join(Tenant, Tenant.id == Entity.tenant_id)
            .where(
                Tenant.name == DEFAULT_TENANT,
                Entity.type == _iri(src, entity_type),
                Entity.unit_code.is_not(None),
            )
            .group_by(Entity.unit_code)
        )
        return {str(unit): float(n) for unit, n in src.session.execute(query)}

    return fetch


# --- incidents ----------------------------------------------------------------------------


def _incidents(src: Source) -> list[Any]:
    def load() -> list[Any]:
        w = src.window
        query = select(
            Incident.unit_code,
            Incident.category_code,
            Incident.created_at,
            Incident.resolved_at,
            Incident.resolve_breached,
        ).where(
            Incident.unit_code.is_not(None),
            or_(
                (Incident.created_at >= w.start) & (Incident.created_at < w.end),
                (Incident.resolved_at >= w.start) & (Incident.resolved_at < w.end),
            ),
        )
        return list(src.session.execute(query))

    return list(src.once("incidents", load))


def _opened(category: str | None) -> Callable[[Source], Values]:
    def fetch(src: Source) -> Values:
        out: Values = defaultdict(float)
        for row in _incidents(src):
            opened_in = src.window.start <= row.created_at < src.window.end
            if opened_in and (category is None or row.category_code == category):
                out[row.unit_code] += 1.0
        return dict(out)

    return fetch


def _resolved(measure: str) -> Callable[[Source], Values]:
    def fetch(src: Source) -> Values:
        out: Values = defaultdict(float)
        for row in _incidents(src):
            at = row.resolved_at
            if at is None or not src.window.start <= at < src.window.end:
                continue
            if measure == "count":
                out[row.unit_code] += 1.0
            elif measure == "on_time":
                out[row.unit_code] += 0.0 if row.resolve_breached else 1.0
            else:
                out[row.unit_code] += (at - row.created_at) / timedelta(hours=1)
        return dict(out)

    return fetch


# --- dossiers (egov) ----------------------------------------------------------------------


def _dossiers(counter: str) -> Callable[[Source], Values]:
    def fetch(src: Source) -> Values:
        def load() -> Any:
            w = src.window
            period = Period(label=w.label, kind="kpi", start=w.start, end=w.end)
            return egov_service.get_aggregates(
                session=src.session, period=period, now=src.now, group_by=GroupBy.UNIT
            )

        out: Values = defaultdict(float)
        for row in src.once("dossiers", load):
            out[row.key] += float(getattr(row.counts, counter))
        return dict(out)

    return fetch


# --- citizen reports ------------------------------------------------------------------------


def _reports(counter: str) -> Callable[[Source], Values]:
    """Citizen reports closed in the period, per unit: `closed`, `closed_on_time`, `rated` or
    `satisfied` (duplicates counted once, with their original)."""

    def fetch(src: Source) -> Values:
        def load() -> Any:
            w = src.window
            return citizen_service.satisfaction_by_unit(
                session=src.session, start=w.start, end=w.end
            )

        tally = src.once("reports", load)
        return {code: float(getattr(counts, counter)) for code, counts in tally.items()}

    return fetch


# --- yearly sector statistics ---------------------------------------------------------------


def _statistic(name: str) -> Callable[[Source], Values | None]:
    """A yearly statistic per unit for the window's year, whatever the window's length (as
    population: a month or a quarter reads its year's figure); None if never imported."""

    def fetch(src: Source) -> Values | None:
        def load() -> dict[str, dict[str, float]]:
            return service.get_statistic_map(session=src.session, year=src.window.year)

        table: dict[str, dict[str, float]] = src.once("statistics", load)
        return dict(table[name]) if name in table else None

    return fetch


# --- the registry -------------------------------------------------------------------------


def _statistics(names: Iterable[tuple[str, str, str]]) -> list[Input]:
    return [Input(name, "statistics", vi, en, _statistic(name)) for name, vi, en in names]


INPUTS: dict[str, Input] = {
    i.name: i
    for i in [
        Input(
            "population",
            "population",
            "Dân số trung bình năm",
            "Average population of the year",
            _population,
        ),
        Input("area_km2", "units", "Diện tích (km²)", "Area (km²)", _area),
        # Context store history in the period.
        Input(
            "pm25_sum",
            "context",
            "Tổng các giá trị PM2,5 quan trắc",
            "Sum of PM2.5 readings",
            _sum_count("AirQualityObserved", "pm25", "sum"),
        ),
        Input(
            "pm25_count",
            "context",
            "Số giá trị PM2,5 quan trắc",
            "Number of PM2.5 readings",
            _sum_count("AirQualityObserved", "pm25", "count"),
        ),
        Input(
            "pm25_days",
            "context",
            "Số ngày có quan trắc PM2,5",
            "Days with PM2.5 readings",
            _days("AirQualityObserved", "pm25", "mean", None),
        ),
        Input(
            "pm25_exceed_days",
            "context",
            "Số ngày PM2,5 trung bình 24 giờ vượt 50 µg/m³",
            "Days with 24-h mean PM2.5 above 50 µg/m³",
            _days("AirQualityObserved", "pm25", "mean", PM25_DAILY_LIMIT),
        ),
        Input(
            "aqi_days",
            "context",
            "Số ngày có VN_AQI",
            "Days with a VN_AQI reading",
            _days("AirQualityObserved", "airQualityIndex", "max", None),
        ),
        Input(
            "aqi_poor_days",
            "context",
            "Số ngày VN_AQI > 100",
            "Days with VN_AQI above 100",
            _days("AirQualityObserved", "airQualityIndex", "max", AQI_POOR_ABOVE),
        ),
        Input(
            "tti_sum",
            "context",
            "Tổng chỉ số thời gian di chuyển",
            "Sum of travel-time index readings",
            _sum_count("TrafficFlowObserved", "travelTimeIndex", "sum"),
        ),
        Input(
            "tti_count",
            "context",
            "Số giá trị chỉ số thời gian di chuyển",
            "Number of travel-time index readings",
            _sum_count("TrafficFlowObserved", "travelTimeIndex", "count"),
        ),
        Input(
            "beds_occupied",
            "context",
            "Số giường có người bệnh (trung bình kỳ)",
            "Occupied beds (mean over the period)",
            _entity_mean_sum("PointOfInterest", "occupancy"),
        ),
        Input(
            "attendance_sum",
            "context",
            "Tổng tỷ lệ chuyên cần quan trắc (%)",
            "Sum of school attendance-rate readings (%)",
            _sum_count("PointOfInterest", "attendanceRate", "sum"),
        ),
        Input(
            "attendance_count",
            "context",
            "Số giá trị tỷ lệ chuyên cần",
            "Number of attendance-rate readings",
            _sum_count("PointOfInterest", "attendanceRate", "count"),
        ),
        Input(
            "noise_sum",
            "context",
            "Tổng LAeq quan trắc",
            "Sum of LAeq readings",
            _sum_count("NoiseLevelObserved", "LAeq", "sum"),
        ),
        Input(
            "noise_count",
            "context",
            "Số giá trị LAeq",
            "Number of LAeq readings",
            _sum_count("NoiseLevelObserved", "LAeq", "count"),
        ),
        # Facility data: the current state of the context store.
        Input(
            "hospital_beds",
            "facilities",
            "Số giường bệnh (bệnh viện)",
            "Hospital beds",
            _hospital_beds,
        ),
        Input(
            "air_stations",
            "facilities",
            "Số trạm quan trắc không khí tự động",
            "Automatic air-quality stations",
            _count_type("AirQualityObserved"),
        ),
        Input(
            "streetlights",
            "facilities",
            "Số đèn chiếu sáng có trạng thái",
            "Streetlights reporting a status",
            _count_entities("Streetlight", "status", None),
        ),
        Input(
            "streetlights_ok",
            "facilities",
            "Số đèn chiếu sáng hoạt động tốt",
            "Streetlights with status ok",
            _count_entities("Streetlight", "status", "ok"),
        ),
        # Incidents.
        Input("incidents_opened", "incidents", "Số sự cố mới", "Incidents opened", _opened(None)),
        Input(
            "incidents_resolved",
            "incidents",
            "Số sự cố đã giải quyết",
            "Incidents resolved",
            _resolved("count"),
        ),
        Input(
            "incidents_resolved_on_time",
            "incidents",
            "Số sự cố giải quyết đúng hạn",
            "Incidents resolved within their SLA",
            _resolved("on_time"),
        ),
        Input(
            "incident_resolve_hours",
            "incidents",
            "Tổng số giờ giải quyết sự cố",
            "Total hours from opening to resolution",
            _resolved("hours"),
        ),
        Input(
            "flooding_incidents",
            "incidents",
            "Số sự cố ngập",
            "Flooding incidents opened",
            _opened("flooding"),
        ),
        Input(
            "congestion_incidents",
            "incidents",
            "Số sự cố ùn tắc giao thông",
            "Traffic-congestion incidents opened",
            _opened("traffic_congestion"),
        ),
        Input(
            "streetlight_faults",
            "incidents",
            "Số sự cố đèn chiếu sáng",
            "Streetlight-fault incidents opened",
            _opened("streetlight_fault"),
        ),
        Input(
            "waste_incidents",
            "incidents",
            "Số sự cố rác tràn",
            "Waste-overflow incidents opened",
            _opened("waste_overflow"),
        ),
        Input(
            "pollution_incidents",
            "incidents",
            "Số sự cố ô nhiễm",
            "Air-pollution incidents opened",
            _opened("air_pollution"),
        ),
        Input(
            "hospital_overload_incidents",
            "incidents",
            "Số sự cố quá tải bệnh viện",
            "Hospital-overload incidents opened",
            _opened("hospital_overload"),
        ),
        # Dossiers (Decision 766 counts per unit).
        Input(
            "dossiers_handled",
            "egov",
            "Số hồ sơ đã và đang giải quyết",
            "Dossiers handled (finished or in progress)",
            _dossiers("handled"),
        ),
        Input(
            "dossiers_on_time",
            "egov",
            "Số hồ sơ giải quyết trước hạn, đúng hạn",
            "Dossiers handled on time",
            _dossiers("on_time"),
        ),
        Input(
            "dossiers_received",
            "egov",
            "Số hồ sơ tiếp nhận",
            "Dossiers received",
            _dossiers("received"),
        ),
        Input(
            "dossiers_online",
            "egov",
            "Số hồ sơ nộp trực tuyến",
            "Dossiers submitted online",
            _dossiers("online"),
        ),
        Input(
            "dossiers_paid_online",
            "egov",
            "Số hồ sơ thanh toán trực tuyến",
            "Dossiers paid online",
            _dossiers("paid"),
        ),
        Input(
            "dossiers_digitised",
            "egov",
            "Số hồ sơ được số hóa",
            "Dossiers digitised",
            _dossiers("digitised"),
        ),
        Input(
            "dossiers_completed",
            "egov",
            "Số hồ sơ đã giải quyết",
            "Dossiers completed",
            _dossiers("completed"),
        ),
        Input(
            "dossier_handling_days",
            "egov",
            "Tổng số ngày giải quyết hồ sơ",
            "Total days to complete dossiers",
            _dossiers("handling_days"),
        ),
        Input(
            "dossiers_unsatisfied",
            "egov",
            "Số hồ sơ bị đánh giá không hài lòng",
            "Dossiers rated unsatisfied",
            _dossiers("unsatisfied"),
        ),
        # Citizen reports (phản ánh, kiến nghị) closed in the period.
        Input(
            "reports_total",
            "citizen",
            "Số phản ánh, kiến nghị đã xử lý xong",
            "Citizen reports (PAKN) closed",
            _reports("closed"),
        ),
        Input(
            "reports_on_time",
            "citizen",
            "Số phản ánh xử lý đúng hạn",
            "Citizen reports handled on time",
            _reports("closed_on_time"),
        ),
        Input(
            "reports_rated",
            "citizen",
            "Số phản ánh được người phản ánh đánh giá",
            "Citizen reports rated by their reporter",
            _reports("rated"),
        ),
        Input(
            "reports_satisfied",
            "citizen",
            "Số phản ánh được đánh giá hài lòng",
            "Citizen reports rated satisfied",
            _reports("satisfied"),
        ),
        # Yearly sector statistics per unit (`cityops kpi import-statistics`, seed demo file).
        *_statistics(
            [
                ("physicians", "Số bác sĩ", "Practising physicians"),
                (
                    "ehr_records",
                    "Số người có hồ sơ sức khỏe điện tử",
                    "Inhabitants with an electronic health record",
                ),
                ("telemedicine_visits", "Số lượt khám từ xa", "Remote consultations"),
                ("under5_deaths", "Số trẻ dưới 5 tuổi tử vong", "Under-5 deaths"),
                ("live_births", "Số trẻ sinh sống", "Live births"),
                ("primary_pupils", "Số học sinh tiểu học", "Primary pupils"),
                ("primary_teachers", "Số giáo viên tiểu học", "Primary teachers"),
                (
                    "enrolled_pupils",
                    "Số học sinh trong độ tuổi đến trường",
                    "School-aged pupils enrolled",
                ),
                ("school_age_population", "Dân số trong độ tuổi đi học", "School-aged population"),
                (
                    "cohort_entry",
                    "Số học sinh của khóa vào lớp 1",
                    "Pupils of the cohort entering grade 1",
                ),
                (
                    "cohort_final",
                    "Số học sinh của khóa đến lớp cuối cấp",
                    "Pupils of the cohort reaching the final grade",
                ),
                (
                    "pupils_ict",
                    "Số học sinh được tiếp cận CNTT",
                    "Pupils with classroom ICT access",
                ),
                ("schools", "Số trường học", "Schools"),
                (
                    "schools_drr",
                    "Số trường dạy phòng, chống thiên tai",
                    "Schools teaching disaster-risk reduction",
                ),
                ("traffic_deaths", "Số người chết do tai nạn giao thông", "Road-traffic deaths"),
                ("road_accidents", "Số vụ tai nạn giao thông", "Road accidents"),
                (
                    "signal_intersections",
                    "Số nút giao có đèn tín hiệu",
                    "Signal-controlled intersections",
                ),
                (
                    "adaptive_intersections",
                    "Số nút giao điều khiển thích ứng",
                    "Intersections with adaptive control",
                ),
                ("bus_stops", "Số điểm dừng xe buýt", "Bus stops"),
                (
                    "bus_stops_realtime",
                    "Số điểm dừng có thông tin thời gian thực",
                    "Bus stops with real-time information",
                ),
                ("green_area_ha", "Diện tích cây xanh đô thị (ha)", "Urban green area (ha)"),
                ("permits_issued", "Số giấy phép xây dựng đã cấp", "Building permits issued"),
                ("permits_on_time", "Số giấy phép cấp đúng hạn", "Building permits issued on time"),
                (
                    "buildings_required",
                    "Số công trình phải kết nối IOC",
                    "Buildings required to connect to the IOC",
                ),
                (
                    "buildings_connected",
                    "Số công trình đã kết nối IOC",
                    "Buildings connected to the IOC",
                ),
                ("poor_households", "Số hộ nghèo đa chiều", "Multidimensionally poor households"),
                ("households", "Số hộ gia đình", "Households"),
                ("unemployed", "Số người thất nghiệp", "Unemployed persons"),
                ("labour_force", "Lực lượng lao động", "Labour force"),
                ("insured_persons", "Số người có bảo hiểm y tế", "Persons with health insurance"),
                (
                    "assistance_paid_on_time",
                    "Số đối tượng được chi trả trợ cấp đúng hạn",
                    "Beneficiaries paid on time",
                ),
                (
                    "assistance_beneficiaries",
                    "Số đối tượng hưởng trợ cấp",
                    "Social-assistance beneficiaries",
                ),
                ("childcare_places", "Số chỗ giữ trẻ", "Child-care places"),
                ("children_0_3", "Số trẻ từ 0 đến 3 tuổi", "Children aged 0–3"),
                ("violent_crimes", "Số vụ tội phạm bạo lực", "Violent crimes"),
                ("property_crimes", "Số vụ xâm phạm sở hữu", "Crimes against property"),
                ("police_officers", "Số cán bộ công an", "Police officers"),
                ("fire_deaths", "Số người chết do cháy", "Fire deaths"),
                (
                    "police_response_minutes",
                    "Tổng số phút tiếp cận hiện trường (113)",
                    "Total minutes from 113 call to arrival",
                ),
                ("police_responses", "Số lượt xuất quân (113)", "Police (113) responses"),
                ("open_datasets", "Số bộ dữ liệu mở đã công bố", "Open datasets published"),
                ("datasets_inventoried", "Số bộ dữ liệu đã kiểm kê", "Datasets inventoried"),
            ],
        ),
    ]
}


def fetch_all(src: Source, names: Iterable[str]) -> dict[str, Values | None]:
    """Fetch the named inputs for every unit (None for a pending or never-imported input)."""
    out: dict[str, Values | None] = {}
    for name in names:
        spec = INPUTS[name]
        out[name] = None if spec.fetch is None else spec.fetch(src)
    return out
