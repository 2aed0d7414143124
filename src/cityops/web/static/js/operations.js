// The operations screen: CityOps's own boundaries, the sensors from the NGSI-LD API, and the key
// figures of the chosen area. Leaflet and markercluster are loaded as classic scripts (global L).

import { startFeed } from "./feed.js";

const config = JSON.parse(document.getElementById("ops-config").textContent);
const S = config.strings;
const locale = config.lang === "en" ? "en-GB" : "vi-VN";
const number = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
const clock = new Intl.DateTimeFormat(locale, {
  timeZone: config.timeZone, dateStyle: "short", timeStyle: "medium",
});

// Official VN_AQI bands (Decision 1459/QĐ-TCMT): upper bound, code, colour.
const AQI_BANDS = [
  [50, "good", "#00e400"], [100, "moderate", "#ffff00"], [150, "poor", "#ff7e00"],
  [200, "bad", "#ff0000"], [300, "veryBad", "#8f3f97"], [Infinity, "hazardous", "#7e0023"],
];
const FLOOD_COLOURS = {
  normal: "#2e7d32", alarm1: "#f9a825", alarm2: "#ef6c00", alarm3: "#c62828",
};
const GREY = "#78909c";
const PICK = [
  "id", "type", "name", "location", "airQualityIndex", "airQualityLevel",
  "waterLevel", "floodLevelStatus", "bedOccupancy",
].join(",");
const TYPES = "AirQualityObserved,WaterObserved,PointOfInterest";
const PAGE = 1000;

export function aqiBand(index) {
  return AQI_BANDS.find(([upper]) => index <= upper);
}

function occupancyColour(percent) {
  if (percent >= 95) return "#c62828";
  if (percent >= 85) return "#ef6c00";
  if (percent >= 70) return "#f9a825";
  return "#2e7d32";
}

/** Return the colour and a one-line description of a sensor's level. */
function level(entity) {
  if (typeof entity.airQualityIndex === "number") {
    const [, code, colour] = aqiBand(entity.airQualityIndex);
    return [colour, `${S["web.ops.popup.aqi"]}: ${number.format(entity.airQualityIndex)} (${S["web.aqi." + code]})`];
  }
  if (entity.floodLevelStatus) {
    const state = S["web.flood." + entity.floodLevelStatus] || entity.floodLevelStatus;
    const height = typeof entity.waterLevel === "number" ? `${number.format(entity.waterLevel)} m — ` : "";
    return [FLOOD_COLOURS[entity.floodLevelStatus] || GREY, `${S["web.ops.popup.water"]}: ${height}${state}`];
  }
  if (typeof entity.bedOccupancy === "number") {
    return [occupancyColour(entity.bedOccupancy), `${S["web.ops.popup.beds"]}: ${number.format(entity.bedOccupancy)} %`];
  }
  return [GREY, ""];
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
  const response = await fetch(url, {
    credentials: "same-origin", headers: { Accept: "application/json" },
  });
  if (response.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new Error("unauthenticated");
  }
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function loadSensors() {
  const all = [];
  for (let offset = 0; ; offset += PAGE) {
    const params = new URLSearchParams({
      type: TYPES, options: "keyValues", pick: PICK, limit: String(PAGE), offset: String(offset),
    });
    const page = await getJson(`/ngsi-ld/v1/entities?${params}`);
    all.push(...page);
    if (page.length < PAGE) return all;
  }
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
const cluster = L.markerClusterGroup({ showCoverageOnHover: false, maxClusterRadius: 40 });
map.addLayer(cluster);
const layerControl = L.control.layers(null, {
  [S["web.ops.layer.boundaries"]]: boundaryLayer, [S["web.ops.layer.sensors"]]: cluster,
}, { collapsed: true }).addTo(map);

const areaSelect = document.getElementById("area");
const unitSelect = document.getElementById("unit");
const unitNames = new Map(config.units.map((u) => [u.code, u.name]));
let features = [];
let feed = null;
let sensors = [];

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

function markerFor(entity) {
  const [lon, lat] = entity.location.coordinates;
  const [colour, text] = level(entity);
  const icon = L.divIcon({
    className: "sensor-dot", html: `<span style="background:${colour}"></span>`, iconSize: [16, 16],
  });
  const marker = L.marker([lat, lon], { icon, title: entity.name || entity.id, keyboard: true });
  const popup = document.createElement("div");
  const title = document.createElement("strong");
  title.textContent = entity.name || entity.id;
  const line = document.createElement("div");
  line.textContent = text;
  popup.append(title, line);
  marker.bindPopup(popup);
  return marker;
}

function render() {
  const units = selectedUnits();
  const shown = features.filter((f) => !units || units.has(f.properties.code));
  boundaryLayer.clearLayers();
  boundaryLayer.addData(shown);
  document.body.dataset.units = String(shown.length);
  const inside = sensors.filter((s) => !units || (s.unit && units.has(s.unit)));
  cluster.clearLayers();
  cluster.addLayers(inside.map(markerFor));
  document.body.dataset.sensors = String(inside.length);
  if (shown.length) map.fitBounds(boundaryLayer.getBounds(), { padding: [12, 12], animate: false });
  document.body.dataset.bounds = map.getBounds().toBBoxString();
  figures(shown.length, inside);
  if (feed) feed.render();
}

function figures(unitCount, inside) {
  document.getElementById("fig-units").textContent = number.format(unitCount);
  document.getElementById("fig-sensors").textContent = number.format(inside.length);
  const aqi = inside.filter((s) => typeof s.airQualityIndex === "number");
  const worst = aqi.reduce((m, s) => Math.max(m, s.airQualityIndex), -1);
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
  const alarms = inside.filter((s) => s.floodLevelStatus && s.floodLevelStatus !== "normal");
  document.getElementById("fig-river").textContent = number.format(alarms.length);
  const beds = inside.filter((s) => typeof s.bedOccupancy === "number");
  document.getElementById("fig-beds").textContent = beds.length
    ? `${number.format(Math.max(...beds.map((s) => s.bedOccupancy)))} %` : "–";
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
  try {
    const geometry = await getJson("/api/v1/units/geometry?level=commune");
    features = geometry.features.filter((f) => f.geometry);
    for (const feature of features) feature.bbox = bboxOf(feature.geometry);
  } catch (error) {
    document.getElementById("updated").textContent = S["web.ops.load_failed"];
    throw error;
  }
  try {
    sensors = (await loadSensors()).filter((e) => e.location && e.location.type === "Point");
    for (const s of sensors) s.unit = unitAt(...s.location.coordinates, features);
  } catch (error) {
    sensors = [];
    document.getElementById("updated").textContent = S["web.ops.load_failed"];
    console.error(error);
  }
  feed = startFeed({ map, config, selectedUnits, layers: layerControl, unitCentre });
  render();
  await feed.ready;
  if (!document.getElementById("updated").textContent) {
    document.getElementById("updated").textContent = `${S["web.ops.updated"]} ${clock.format(new Date())}`;
  }
  document.body.dataset.ready = "1";
  import("./layers.js").then((m) => m.install({ map, sensors, features, config, getJson, selectedUnits, unitAt }));
}

start();
