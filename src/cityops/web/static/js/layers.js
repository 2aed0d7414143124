// Extra layers of the operations screen: facilities (hospitals, schools) and a choropleth of the
// open alerts per commune or ward. Installed by operations.js as the screen starts: both fetch
// at once, in parallel with the other layers, and are drawn when the boundaries are in; both
// follow the area selector.

const PAGE = 500;
const OPEN = ["open", "acknowledged", "snoozed"];
// Sequential reds (ColorBrewer Reds): 0, 1, 2–3, 4–6, 7+ open alerts.
const STEPS = [[0, "#fff5f0"], [1, "#fcbba1"], [2, "#fb6a4a"], [4, "#de2d26"], [7, "#a50f15"]];
const GLYPH = { hospital: "H", school: "T" };

function colourOf(count) {
  let colour = STEPS[0][1];
  for (const [minimum, c] of STEPS) if (count >= minimum) colour = c;
  return colour;
}

function entityLink(id, text) {
  const link = document.createElement("a");
  link.href = `/entities/${encodeURIComponent(id)}`;
  link.textContent = text;
  return link;
}

async function loadFacilities(getJson) {
  const all = [];
  for (let offset = 0; ; offset += 1000) {
    const params = new URLSearchParams({
      type: "PointOfInterest", options: "keyValues", pick: "id,name,location,category,capacity",
      limit: "1000", offset: String(offset),
    });
    const page = await getJson(`/ngsi-ld/v1/entities?${params}`);
    all.push(...page);
    if (page.length < 1000) return all;
  }
}

async function loadOpenAlerts(getJson) {
  const counts = new Map();
  for (let offset = 0; offset < 20 * PAGE; offset += PAGE) {
    const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    for (const s of OPEN) params.append("status", s);
    const page = await getJson(`/api/v1/alerts?${params}`);
    for (const alert of page.items) {
      if (alert.unit_code) counts.set(alert.unit_code, (counts.get(alert.unit_code) || 0) + 1);
    }
    if (page.items.length < PAGE) break;
  }
  return counts;
}

/**
 * Add the facilities and open-alerts layers to the operations map; resolve once drawn.
 * `boundaries` is a promise of the units' features.
 */
export async function install({ map, config, getJson, selectedUnits, unitAt, boundaries }) {
  const lang = config.lang === "en" ? "en" : "vi";
  const T = lang === "en"
    ? { facilities: "Facilities (hospitals, schools)", alerts: "Open alerts per commune/ward",
        hospital: "Hospital", school: "School", capacity: "Capacity", open: "open alerts",
        details: "Details" }
    : { facilities: "Cơ sở (bệnh viện, trường học)", alerts: "Cảnh báo đang mở theo xã, phường",
        hospital: "Bệnh viện", school: "Trường học", capacity: "Quy mô", open: "cảnh báo đang mở",
        details: "Xem chi tiết" };
  const facilities = L.layerGroup();
  const choropleth = L.geoJSON(null, {
    style: (feature) => ({
      color: "#67000d", weight: 1, fillOpacity: 0.55,
      fillColor: colourOf(feature.properties.openAlerts || 0),
    }),
    onEachFeature: (feature, layer) => layer.bindTooltip(
      `${feature.properties.name}: ${feature.properties.openAlerts || 0} ${T.open}`, { sticky: true },
    ),
  });
  L.control.layers(null, { [T.facilities]: facilities, [T.alerts]: choropleth },
    { collapsed: false, position: "bottomright" }).addTo(map);
  facilities.addTo(map);

  // Both requests leave now; a failure is settled at once (never an unhandled rejection).
  const loadingFacilities = loadFacilities(getJson).catch((error) => {
    console.error(error);
    return [];
  });
  const loadingAlerts = loadOpenAlerts(getJson).catch((error) => {
    // A user who may not read alerts simply gets an empty choropleth.
    if (!/: 40[13]$/.test(error.message)) console.error(error);
    return new Map();
  });
  const features = await boundaries;
  const places = (await loadingFacilities).filter(
    (p) => p.location && p.location.type === "Point"
      && [].concat(p.category || []).some((c) => c in GLYPH),
  );
  for (const p of places) p.unit = unitAt(...p.location.coordinates, features);
  const counts = await loadingAlerts;

  function render() {
    const units = selectedUnits();
    facilities.clearLayers();
    let shown = 0;
    for (const place of places) {
      if (units && !(place.unit && units.has(place.unit))) continue;
      const kind = [].concat(place.category).find((c) => c in GLYPH);
      const [lon, lat] = place.location.coordinates;
      const icon = L.divIcon({
        className: `facility facility-${kind}`, html: `<span>${GLYPH[kind]}</span>`, iconSize: [20, 20],
      });
      const marker = L.marker([lat, lon], { icon, title: place.name || place.id, keyboard: true });
      const popup = document.createElement("div");
      const heading = document.createElement("strong");
      heading.textContent = place.name || place.id;
      const line = document.createElement("div");
      line.textContent = `${T[kind]}${typeof place.capacity === "number" ? ` · ${T.capacity}: ${place.capacity}` : ""}`;
      popup.append(heading, line, entityLink(place.id, T.details));
      marker.bindPopup(popup);
      facilities.addLayer(marker);
      shown += 1;
    }
    choropleth.clearLayers();
    const inArea = features.filter((f) => !units || units.has(f.properties.code));
    for (const f of inArea) f.properties.openAlerts = counts.get(f.properties.code) || 0;
    choropleth.addData(inArea);
    document.body.dataset.facilities = String(shown);
    document.body.dataset.alertUnits = String(inArea.filter((f) => f.properties.openAlerts).length);
  }

  for (const id of ["area", "unit"]) document.getElementById(id).addEventListener("change", render);
  render();
  document.body.dataset.layers = "1";
}
