// Extra layers of the operations screen: facilities (hospitals, schools), a choropleth of the
// open alerts per commune or ward, and the citizens' open reports. Installed by operations.js as
// the screen starts: the facilities fetch at once, in parallel with the other layers, and are
// drawn when the boundaries are in; the two overlays off at first (alerts per unit, reports)
// are fetched the first time the operator shows them, so they cost the first load nothing.
// All follow the area selector.

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

// The public Open311 list: open reports of the last 90 days, newest first, no personal data.
async function loadOpenReports(getJson) {
  const items = await getJson("/open311/v2/requests.json?status=open&page_size=1000");
  return items.filter((r) => typeof r.lat === "number" && typeof r.long === "number");
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
        details: "Details", reports: "Citizen reports (open)", report: "Open the report" }
    : { facilities: "Cơ sở (bệnh viện, trường học)", alerts: "Cảnh báo đang mở theo xã, phường",
        hospital: "Bệnh viện", school: "Trường học", capacity: "Quy mô", open: "cảnh báo đang mở",
        details: "Xem chi tiết", reports: "Phản ánh của người dân (đang mở)",
        report: "Xem phản ánh" };
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
  const reports = L.layerGroup();
  L.control.layers(null, { [T.facilities]: facilities, [T.alerts]: choropleth, [T.reports]: reports },
    { collapsed: false, position: "bottomright" }).addTo(map);
  facilities.addTo(map);

  // The facilities' request leaves now; a failure is settled at once (never an unhandled
  // rejection). The open alerts per unit are read when their overlay is first shown: paging
  // through every open alert would compete with the map's own layers on the first load.
  const loadingFacilities = loadFacilities(getJson).catch((error) => {
    console.error(error);
    return [];
  });
  const features = await boundaries;
  const places = (await loadingFacilities).filter(
    (p) => p.location && p.location.type === "Point"
      && [].concat(p.category || []).some((c) => c in GLYPH),
  );
  for (const p of places) p.unit = unitAt(...p.location.coordinates, features);
  let counts = null;

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
    document.body.dataset.facilities = String(shown);
    renderChoropleth();
  }

  function renderChoropleth() {
    if (!counts) return;
    const units = selectedUnits();
    choropleth.clearLayers();
    const inArea = features.filter((f) => !units || units.has(f.properties.code));
    for (const f of inArea) f.properties.openAlerts = counts.get(f.properties.code) || 0;
    choropleth.addData(inArea);
    document.body.dataset.alertUnits = String(inArea.filter((f) => f.properties.openAlerts).length);
  }

  let openReports = null;

  function renderReports() {
    if (!openReports) return;
    const units = selectedUnits();
    reports.clearLayers();
    let shown = 0;
    for (const report of openReports) {
      if (units && !(report.unit && units.has(report.unit))) continue;
      const icon = L.divIcon({ className: "citizen-report", html: "<span>!</span>", iconSize: [18, 18] });
      const marker = L.marker([report.lat, report.long], {
        icon, title: `${report.service_request_id}: ${report.service_name}`, keyboard: true,
      });
      const popup = document.createElement("div");
      const heading = document.createElement("strong");
      heading.textContent = `${report.service_request_id} · ${report.service_name}`;
      const text = document.createElement("div");
      text.textContent = report.description || "";
      const link = document.createElement("a");
      link.href = `/public/reports/${encodeURIComponent(report.service_request_id)}`;
      link.textContent = T.report;
      popup.append(heading, text, link);
      marker.bindPopup(popup);
      reports.addLayer(marker);
      shown += 1;
    }
    document.body.dataset.reports = String(shown);
  }

  map.on("overlayadd", async (event) => {
    if (event.layer !== choropleth || counts) return;
    counts = await loadOpenAlerts(getJson).catch((error) => {
      // A user who may not read alerts simply gets an empty choropleth.
      if (!/: 40[13]$/.test(error.message)) console.error(error);
      return new Map();
    });
    renderChoropleth();
  });

  map.on("overlayadd", async (event) => {
    if (event.layer !== reports || openReports) return;
    try {
      const items = await loadOpenReports(getJson);
      for (const r of items) r.unit = unitAt(r.long, r.lat, features);
      openReports = items;
    } catch (error) {
      console.error(error);
      document.body.dataset.reports = "failed";
      return;
    }
    renderReports();
  });

  for (const id of ["area", "unit"]) {
    document.getElementById(id).addEventListener("change", () => { render(); renderReports(); });
  }
  render();
  document.body.dataset.layers = "1";
}
