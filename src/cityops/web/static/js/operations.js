// The operations screen: CityOps's own boundaries, every sensor, the open incidents, the
// facilities and the live feed, with the key figures of the chosen area. Leaflet, markercluster
// (the incidents layer) and Supercluster (the sensors layer) are loaded as classic scripts
// (globals L and Supercluster).
//
// First load: every layer's request leaves from the page's head, before any script is fetched
// (`window.cityopsEarly`, consumed by getJson); the boundaries, /api/v1/map/sensors — one
// compact response for all sensors —, the incidents layer and the feed, the facilities and the
// alerts choropleth are drawn as they come in. The sensors are clustered by Supercluster
// (sensors.js): only the markers the view shows exist, sharing one icon per level and building
// their popups when opened. `body[data-ready='1']` is set once every layer is drawn. Afterwards
// the SSE stream's entity changes recolour markers in place (`onEntity`), and a `reset` reloads
// the sensors layer. `performance.mark("ops:…")` marks each phase (bench/bench_web.py --trace).

import { request, startFeed } from "./feed.js";
import { install as installLayers } from "./layers.js";
import { sensorLayer } from "./sensors.js";

const config = JSON.parse(document.getElementById("ops-config").textContent);
const S = config.strings;
const locale = config.lang === "en" ? "en-GB" : "vi-VN";
const number = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
const clock = new Intl.DateTimeFormat(locale, {
  timeZone: config.timeZone, dateStyle: "short", timeStyle: "medium",
});

// Official VN_AQI bands (Decision 1459/QĐ-TCMT): upper bound, code, colour. The server's
// `level` uses the same bounds; these serve live updates.
const AQI_BANDS = [
  [50, "good", "#00e400"], [100, "moderate", "#ffff00"], [150, "poor", "#ff7e00"],
  [200, "bad", "#ff0000"], [300, "veryBad", "#8f3f97"], [Infinity, "hazardous", "#7e0023"],
];
const AQI_COLOURS = Object.fromEntries(AQI_BANDS.map(([, code, colour]) => [code, colour]));
const FLOOD_COLOURS = {
  normal: "#2e7d32", alarm1: "#f9a825", alarm2: "#ef6c00", alarm3: "#c62828",
};
// Bed occupancy classes (≥ 95 %, ≥ 85 %, ≥ 70 %, below).
const OCCUPANCY = [[95, "critical"], [85, "high"], [70, "elevated"], [-Infinity, "normal"]];
const OCCUPANCY_COLOURS = {
  critical: "#c62828", high: "#ef6c00", elevated: "#f9a825", normal: "#2e7d32",
};
const GREY = "#78909c";
// Per entity type: the attribute holding the headline value, the one giving the level, and
// how a level is computed from a live value.
const KINDS = {
  AirQualityObserved: {
    value: "airQualityIndex", level: "airQualityIndex", colours: AQI_COLOURS,
    classify: (v) => (typeof v === "number" ? aqiBand(v)[1] : null),
  },
  WaterObserved: {
    value: "waterLevel", level: "floodLevelStatus", colours: FLOOD_COLOURS,
    classify: (v) => (typeof v === "string" && v in FLOOD_COLOURS ? v : null),
  },
  PointOfInterest: {
    value: "bedOccupancy", level: "bedOccupancy", colours: OCCUPANCY_COLOURS,
    classify: (v) => (typeof v === "number" ? OCCUPANCY.find(([m]) => v >= m)[1] : null),
  },
};

export function aqiBand(index) {
  return AQI_BANDS.find(([upper]) => index <= upper);
}

function colourOf(sensor) {
  const kind = KINDS[sensor.type];
  return (kind && sensor.level && kind.colours[sensor.level]) || GREY;
}

/** Return a one-line description of a sensor's level. */
function describe(sensor) {
  const v = sensor.value;
  if (sensor.type === "AirQualityObserved" && typeof v === "number") {
    return `${S["web.ops.popup.aqi"]}: ${number.format(v)} (${S["web.aqi." + sensor.level]})`;
  }
  if (sensor.type === "WaterObserved" && (sensor.level || typeof v === "number")) {
    const state = sensor.level ? S["web.flood." + sensor.level] || sensor.level : "";
    const height = typeof v === "number" ? `${number.format(v)} m${state ? " — " : ""}` : "";
    return `${S["web.ops.popup.water"]}: ${height}${state}`;
  }
  if (sensor.type === "PointOfInterest" && typeof v === "number") {
    return `${S["web.ops.popup.beds"]}: ${number.format(v)} %`;
  }
  return "";
}

// --- geometry: which commune or ward holds a point ------------------------------------------

function inRing(lon, lat, ring) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if ((yi > lat) !== (yj > lat) && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function inGeometry(lon, lat, geometry) {
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  return polygons.some(
    (rings) => inRing(lon, lat, rings[0]) && !rings.slice(1).some((hole) => inRing(lon, lat, hole)),
  );
}

function unitAt(lon, lat, features) {
  for (const feature of features) {
    const b = feature.bbox;
    if (lon < b[0] || lon > b[2] || lat < b[1] || lat > b[3]) continue;
    if (inGeometry(lon, lat, feature.geometry)) return feature.properties.code;
  }
  return null;
}

function bboxOf(geometry) {
  const box = [Infinity, Infinity, -Infinity, -Infinity];
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  for (const rings of polygons) {
    for (const [lon, lat] of rings[0]) {
      box[0] = Math.min(box[0], lon); box[1] = Math.min(box[1], lat);
      box[2] = Math.max(box[2], lon); box[3] = Math.max(box[3], lat);
    }
  }
  return box;
}

/** Return the [lat, lon] centre of a commune or ward's bounding box, or null. */
function unitCentre(code) {
  const feature = features.find((f) => f.properties.code === code);
  if (!feature) return null;
  const [west, south, east, north] = feature.bbox;
  return [(south + north) / 2, (west + east) / 2];
}

// --- data -----------------------------------------------------------------------------------

async function getJson(url) {
  const response = await request(url);
  if (response.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new Error("unauthenticated");
  }
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

/**
 * Turn the compact sensors layer ({fields, rows}) into sensor objects. Every object is built
 * with the same members in the same order (and `marker`, set when first drawn), which V8 does
 * several times faster for 10,000 rows than adding the fields one by one.
 */
export function sensorsOf(layer) {
  const at = Object.fromEntries(layer.fields.map((name, index) => [name, index]));
  const [id, type, lat, lon, unit] = [at.id, at.type, at.lat, at.lon, at.unit];
  const [level, value, observedAt, name] = [at.level, at.value, at.observedAt, at.name];
  return layer.rows.map((r) => ({
    id: r[id], type: r[type], lat: r[lat], lon: r[lon], unit: r[unit], level: r[level],
    value: r[value], observedAt: r[observedAt], name: r[name], marker: null,
  }));
}

async function loadBoundaries() {
  const geometry = await getJson("/api/v1/units/geometry?level=commune");
  const found = geometry.features.filter((f) => f.geometry);
  for (const feature of found) feature.bbox = bboxOf(feature.geometry);
  return found;
}

async function loadSensors() {
  return sensorsOf(await getJson("/api/v1/map/sensors"));
}

// --- the screen -----------------------------------------------------------------------------

// markercluster needs a maxZoom, which a map without a tile layer does not otherwise have.
const map = L.map("map", { zoomControl: true, minZoom: 6, maxZoom: 19 });
map.setView([11.1, 106.9], 9);
if (config.tileUrl) {
  L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: "&copy; OpenStreetMap" }).addTo(map);
}
const boundaryLayer = L.geoJSON(null, {
  style: () => ({ color: "#0b5394", weight: 1, fillColor: "#6fa8dc", fillOpacity: 0.12 }),
  onEachFeature: (feature, layer) => layer.bindTooltip(feature.properties.name, { sticky: true }),
}).addTo(map);
// The sensors of the chosen area, clustered by Supercluster: built in tens of milliseconds for
// 10,000 sensors, and only what the view shows is drawn (sensors.js).
const sensorsLayer = sensorLayer({
  list: () => inside(selectedUnits()),
  markerFor,
  minZoom: map.getMinZoom(),
  clusterTitle: (count) => S["web.ops2.cluster"].replace("{count}", number.format(count)),
});
map.addLayer(sensorsLayer);
const layerControl = L.control.layers(null, {
  [S["web.ops.layer.boundaries"]]: boundaryLayer, [S["web.ops.layer.sensors"]]: sensorsLayer,
}, { collapsed: true }).addTo(map);

const areaSelect = document.getElementById("area");
const unitSelect = document.getElementById("unit");
const unitNames = new Map(config.units.map((u) => [u.code, u.name]));
let features = [];
let feed = null;
let sensors = [];
const byId = new Map(); // entity id → sensor
const icons = new Map(); // colour → shared icon (one per level: 10,000 markers, ~15 icons)

function selectedUnits() {
  if (unitSelect.value) return new Set([unitSelect.value]);
  const area = config.areas.find((a) => a.code === areaSelect.value);
  return area ? new Set(area.units) : null; // null: the whole province
}

function fillUnitOptions() {
  const area = config.areas.find((a) => a.code === areaSelect.value);
  const codes = area ? area.units : config.units.map((u) => u.code);
  const keep = unitSelect.value;
  unitSelect.replaceChildren(unitSelect.options[0]);
  for (const code of codes) {
    const option = new Option(`${unitNames.get(code) || code} (${code})`, code);
    unitSelect.add(option);
  }
  unitSelect.value = codes.includes(keep) ? keep : "";
}

function iconFor(sensor) {
  const colour = colourOf(sensor);
  const key = `${sensor.level || ""}|${colour}`;
  let icon = icons.get(key);
  if (!icon) {
    icon = L.divIcon({
      className: "sensor-dot",
      html: `<span style="background:${colour}" data-level="${sensor.level || ""}"></span>`,
      iconSize: [16, 16],
    });
    icons.set(key, icon);
  }
  return icon;
}

function popupOf(sensor) {
  const popup = document.createElement("div");
  const title = document.createElement("strong");
  title.textContent = sensor.name || sensor.id;
  const line = document.createElement("div");
  line.textContent = describe(sensor);
  const link = document.createElement("a");
  link.href = `/entities/${encodeURIComponent(sensor.id)}`;
  link.textContent = S["web.ops.popup.details"];
  popup.append(title, line, link);
  if (sensor.observedAt) {
    const when = document.createElement("div");
    when.className = "muted small";
    when.textContent = `${S["web.ops.popup.observed"]} ${clock.format(new Date(sensor.observedAt))}`;
    popup.append(when);
  }
  return popup;
}

function markerFor(sensor) {
  const marker = L.marker([sensor.lat, sensor.lon], {
    icon: iconFor(sensor), title: sensor.name || sensor.id, keyboard: true,
  });
  // Built when opened, from the sensor's latest values: 10,000 popups are never built upfront.
  marker.bindPopup(() => popupOf(sensor));
  sensor.marker = marker;
  return marker;
}

function inside(units) {
  return sensors.filter((s) => !units || (s.unit && units.has(s.unit)));
}

function render() {
  const units = selectedUnits();
  const shown = features.filter((f) => !units || units.has(f.properties.code));
  boundaryLayer.clearLayers();
  boundaryLayer.addData(shown);
  document.body.dataset.units = String(shown.length);
  // The view first: the sensors layer then draws once, for the view it will show.
  if (shown.length) map.fitBounds(boundaryLayer.getBounds(), { padding: [12, 12], animate: false });
  document.body.dataset.bounds = map.getBounds().toBBoxString();
  const within = inside(units);
  sensorsLayer.refresh();
  document.body.dataset.sensors = String(within.length);
  figures(shown.length, within);
  if (feed) feed.render();
}

function figures(unitCount, within) {
  document.getElementById("fig-units").textContent = number.format(unitCount);
  document.getElementById("fig-sensors").textContent = number.format(within.length);
  let worst = -1;
  let alarms = 0;
  let beds = -1;
  for (const s of within) {
    if (typeof s.value !== "number" && s.type !== "WaterObserved") continue;
    if (s.type === "AirQualityObserved") worst = Math.max(worst, s.value);
    else if (s.type === "PointOfInterest") beds = Math.max(beds, s.value);
    else if (s.type === "WaterObserved" && s.level && s.level !== "normal") alarms += 1;
  }
  const band = document.getElementById("fig-aqi-band");
  if (worst >= 0) {
    const [, code, colour] = aqiBand(worst);
    document.getElementById("fig-aqi").textContent = number.format(worst);
    band.textContent = S["web.aqi." + code];
    band.style.setProperty("--band", colour);
  } else {
    document.getElementById("fig-aqi").textContent = "–";
    band.textContent = S["web.ops.none"];
    band.style.removeProperty("--band");
  }
  document.getElementById("fig-river").textContent = number.format(alarms);
  document.getElementById("fig-beds").textContent = beds >= 0 ? `${number.format(beds)} %` : "–";
}

// Live figures: many changes per second are folded into one recount per frame.
let figuresPending = false;
function refreshFigures() {
  if (figuresPending) return;
  figuresPending = true;
  requestAnimationFrame(() => {
    figuresPending = false;
    const units = selectedUnits();
    figures(features.filter((f) => !units || units.has(f.properties.code)).length, inside(units));
  });
}

/** Apply one entity change from the stream to its marker (colour, value, place). */
function onEntity(type, data) {
  if (data.tenant && data.tenant !== config.tenant) return;
  const id = data.entity_id;
  let sensor = byId.get(id);
  if (type === "context.entity_deleted") {
    if (!sensor) return;
    if (sensor.marker) sensor.marker.off();
    byId.delete(id);
    sensors = sensors.filter((s) => s !== sensor);
    sensorsLayer.changed();
    document.body.dataset.sensors = String(inside(selectedUnits()).length);
    refreshFigures();
    return;
  }
  // The map reads default instances only (no datasetId).
  if (type !== "context.attribute_changed" || data.dataset_id) return;
  const kind = KINDS[data.entity_type];
  if (!kind) return;
  const located = typeof data.lat === "number" && typeof data.lon === "number";
  let placed = false; // added, moved or in another unit: the clusters change
  if (!sensor) {
    // A new sensor: drawn once its location is known.
    if (!located) return;
    placed = true;
    sensor = {
      id, type: data.entity_type, lat: data.lat, lon: data.lon, unit: data.unit_code || null,
      level: null, value: null, observedAt: null, name: null, marker: null,
    };
    byId.set(id, sensor);
    sensors.push(sensor);
  }
  const value = data.deleted ? null : data.value;
  const attribute = data.attribute;
  if (attribute === "name") sensor.name = typeof value === "string" ? value : null;
  if (attribute === kind.value) {
    sensor.value = typeof value === "number" ? value : null;
    if (data.observed_at) sensor.observedAt = data.observed_at;
  }
  if (attribute === kind.level) sensor.level = kind.classify(value);
  const moved = located && (data.lat !== sensor.lat || data.lon !== sensor.lon);
  if (located) {
    sensor.lat = data.lat;
    sensor.lon = data.lon;
  }
  if (data.unit_code !== undefined && (data.unit_code || null) !== sensor.unit) {
    sensor.unit = data.unit_code || null;
    placed = true;
  }
  if (moved || placed) sensorsLayer.changed();
  // A sensor never shown alone has no marker yet: it gets the right icon when first drawn.
  if (sensor.marker) {
    if (moved) sensor.marker.setLatLng([sensor.lat, sensor.lon]);
    // Under a flood of changes most leave the level as it was: touch the DOM only when not.
    const icon = iconFor(sensor);
    if (sensor.marker.options.icon !== icon) sensor.marker.setIcon(icon);
    const title = sensor.name || sensor.id;
    if (sensor.marker.options.title !== title) {
      sensor.marker.options.title = title;
      const element = sensor.marker.getElement();
      if (element) element.title = title;
    }
  }
  document.body.dataset.sensors = String(inside(selectedUnits()).length);
  document.body.dataset.sensorUpdates = String(Number(document.body.dataset.sensorUpdates || 0) + 1);
  refreshFigures();
}

function setSensors(list) {
  for (const s of sensors) if (s.marker) s.marker.off();
  sensors = list;
  byId.clear();
  for (const s of sensors) byId.set(s.id, s);
}

/** Reload the sensors layer (the stream could not replay the entity changes we missed). */
async function reloadSensors() {
  try {
    setSensors(await loadSensors());
    render();
  } catch (error) {
    console.error(error);
  }
}

function remember() {
  const params = new URLSearchParams(location.search);
  for (const [key, select] of [["area", areaSelect], ["unit", unitSelect]]) {
    if (select.value) params.set(key, select.value); else params.delete(key);
  }
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  // The language links keep the area: they carry the page's address.
  for (const link of document.querySelectorAll("a[data-lang]")) {
    link.href = `/lang/${link.dataset.lang}?next=${encodeURIComponent(location.pathname + location.search)}`;
  }
}

areaSelect.addEventListener("change", () => {
  unitSelect.value = "";
  fillUnitOptions();
  remember();
  render();
});
unitSelect.addEventListener("change", () => {
  remember();
  render();
});

async function start() {
  const params = new URLSearchParams(location.search);
  if (config.areas.some((a) => a.code === params.get("area"))) areaSelect.value = params.get("area");
  fillUnitOptions();
  if (unitNames.has(params.get("unit") || "")) unitSelect.value = params.get("unit");
  const status = document.getElementById("updated");
  // Every request leaves now; each layer is drawn when its data and the boundaries are in.
  const boundaries = loadBoundaries();
  // Settled at once, so that a failure waits for us without being an unhandled rejection.
  const sensorData = loadSensors().then((list) => ({ list }), (error) => ({ error }));
  feed = startFeed({
    map, config, selectedUnits, layers: layerControl, unitCentre, boundaries,
    onEntity: config.liveEntities ? onEntity : null, onReset: reloadSensors,
  });
  const extra = installLayers({ map, config, getJson, selectedUnits, unitAt, boundaries });
  try {
    features = await boundaries;
    performance.mark("ops:boundaries");
  } catch (error) {
    status.textContent = S["web.ops.load_failed"];
    throw error;
  }
  const loaded = await sensorData;
  performance.mark("ops:sensors");
  setSensors(loaded.list || []);
  if (loaded.error) {
    status.textContent = S["web.ops.load_failed"];
    console.error(loaded.error);
  }
  render();
  performance.mark("ops:render");
  feed.ready.then(() => performance.mark("ops:feed"));
  extra.then(() => performance.mark("ops:layers"), () => null);
  const results = await Promise.allSettled([feed.ready, extra]);
  for (const r of results) if (r.status === "rejected") console.warn(r.reason);
  if (!status.textContent) status.textContent = `${S["web.ops.updated"]} ${clock.format(new Date())}`;
  document.body.dataset.ready = "1";
  performance.mark("ops:ready");
}

start();
