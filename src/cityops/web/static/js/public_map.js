// The public map of reports (/public/reports): CityOps's commune and ward boundaries, and the
// reports the filters selected as clustered markers (no personal data is ever sent here).

const config = JSON.parse(document.getElementById("public-config").textContent);
const S = config.strings;

const map = L.map("reports-map", { zoomControl: true, minZoom: 7, maxZoom: 19 });
map.setView([11.0, 106.95], 9);
if (config.tileUrl) {
  L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: "&copy; OpenStreetMap" }).addTo(map);
}
const boundaries = L.geoJSON(null, {
  style: () => ({ color: "#0b5394", weight: 1, fillColor: "#6fa8dc", fillOpacity: 0.08 }),
  onEachFeature: (feature, layer) => layer.bindTooltip(feature.properties.name, { sticky: true }),
}).addTo(map);
fetch("/api/v1/units/geometry?level=commune", { headers: { Accept: "application/json" } })
  .then((r) => (r.ok ? r.json() : null))
  .then((data) => { if (data) boundaries.addData(data); })
  .catch(() => {});

const cluster = L.markerClusterGroup({ showCoverageOnHover: false, maxClusterRadius: 40 });
const COLOURS = { open: "#b45309", closed: "#2e7d32" };
for (const item of config.markers) {
  const icon = L.divIcon({
    className: "report-dot",
    html: `<span style="background:${COLOURS[item.status] || "#78909c"}"></span>`,
    iconSize: [16, 16],
  });
  const marker = L.marker([item.lat, item.lon], { icon, title: item.code, keyboard: true });
  const popup = document.createElement("div");
  const heading = document.createElement("strong");
  heading.textContent = item.service;
  const line = document.createElement("div");
  line.textContent = `${item.code} · ${S[`web.public.status.${item.status}`] || item.status}`;
  const link = document.createElement("a");
  link.href = `/public/reports/${encodeURIComponent(item.code)}`;
  link.textContent = S["web.public.js.details"];
  popup.append(heading, line, link);
  marker.bindPopup(popup);
  cluster.addLayer(marker);
}
map.addLayer(cluster);
if (config.markers.length) {
  map.fitBounds(cluster.getBounds(), { maxZoom: 15, padding: [20, 20] });
}
document.body.dataset.markers = String(config.markers.length);
