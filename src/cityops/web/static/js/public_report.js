// The citizen's report form (/public/report): the service's extra questions, the place (map pin
// or the phone's position; CityOps's own commune and ward boundaries as the base layer), up to
// three photos, optional contacts with consent; nearby open reports of the same service are
// offered before sending ("follow it instead" or "send anyway"). Leaflet is a classic script (L).

const config = JSON.parse(document.getElementById("public-config").textContent);
const S = config.strings;
const form = document.getElementById("report-form");
const serviceSelect = document.getElementById("service");
const errorBox = document.getElementById("form-error");
const placeState = document.getElementById("place-state");
const latInput = document.getElementById("lat");
const lonInput = document.getElementById("long");
const photoInput = document.getElementById("photos");
const dupBox = document.getElementById("duplicates");
const dupList = document.getElementById("duplicate-list");
const sendButton = document.getElementById("send");

// --- the service's extra questions ------------------------------------------------------------

function showAttributes() {
  for (const fieldset of form.querySelectorAll("fieldset.attributes")) {
    const on = fieldset.dataset.service === serviceSelect.value;
    fieldset.hidden = !on;
    fieldset.disabled = !on; // hidden questions are not sent
  }
  dupBox.hidden = true;
}
serviceSelect.addEventListener("change", showAttributes);

// --- the map ----------------------------------------------------------------------------------

const map = L.map("pick-map", { zoomControl: true, minZoom: 7, maxZoom: 19 });
map.setView([10.95, 106.84], 11);
if (config.tileUrl) {
  L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: "&copy; OpenStreetMap" }).addTo(map);
}
const boundaries = L.geoJSON(null, {
  style: () => ({ color: "#0b5394", weight: 1, fillColor: "#6fa8dc", fillOpacity: 0.1 }),
  onEachFeature: (feature, layer) => layer.bindTooltip(feature.properties.name, { sticky: true }),
}).addTo(map);
fetch("/api/v1/units/geometry?level=commune", { headers: { Accept: "application/json" } })
  .then((r) => (r.ok ? r.json() : null))
  .then((data) => {
    if (data) boundaries.addData(data);
    document.body.dataset.boundaries = String(data ? data.features.length : 0);
  })
  .catch(() => { document.body.dataset.boundaries = "0"; });

let marker = null;

function pin(lat, lon, text) {
  latInput.value = lat.toFixed(6);
  lonInput.value = lon.toFixed(6);
  if (marker) marker.setLatLng([lat, lon]);
  else marker = L.marker([lat, lon], { keyboard: true }).addTo(map);
  placeState.textContent = `${text} (${lat.toFixed(5)}, ${lon.toFixed(5)})`;
  dupBox.hidden = true;
}

map.on("click", (event) => pin(event.latlng.lat, event.latlng.lng, S["web.public.js.pinned"]));
document.getElementById("locate").addEventListener("click", () => {
  if (!navigator.geolocation) {
    placeState.textContent = S["web.public.js.no_location"];
    return;
  }
  placeState.textContent = S["web.public.js.locating"];
  navigator.geolocation.getCurrentPosition(
    (position) => {
      const { latitude, longitude } = position.coords;
      pin(latitude, longitude, S["web.public.js.located"]);
      map.setView([latitude, longitude], 17);
    },
    () => { placeState.textContent = S["web.public.js.no_location"]; },
    { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
  );
});

// --- sending ----------------------------------------------------------------------------------

function showError(lines) {
  errorBox.replaceChildren();
  for (const line of lines) {
    const p = document.createElement("p");
    p.textContent = line;
    errorBox.append(p);
  }
  errorBox.hidden = false;
  errorBox.scrollIntoView({ block: "center" });
}

function checkLocally() {
  const problems = [];
  if (!serviceSelect.value) problems.push(S["web.public.js.choose_service"]);
  const photos = photoInput.files.length;
  if (photos > config.maxPhotos) problems.push(S["web.public.js.too_many_photos"]);
  const hasPhoto = photos > 0;
  if (!latInput.value && !form.address_string.value.trim() && !hasPhoto) {
    problems.push(S["web.public.js.choose_place"]);
  }
  const contacts = ["first_name", "last_name", "phone", "email"].some((n) => form[n].value.trim());
  if (contacts && !form.consent.checked) problems.push(S["web.public.js.consent_needed"]);
  return problems;
}

async function duplicates() {
  if (!latInput.value || !lonInput.value) return [];
  const params = new URLSearchParams({
    service_code: serviceSelect.value, lat: latInput.value, lon: lonInput.value,
  });
  try {
    const response = await fetch(`/api/v1/citizen/duplicates?${params}`, {
      headers: { Accept: "application/json" },
    });
    return response.ok ? await response.json() : [];
  } catch {
    return [];
  }
}

function offer(candidates) {
  dupList.replaceChildren();
  for (const item of candidates) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/public/reports/${encodeURIComponent(item.tracking_code)}`;
    link.textContent = item.tracking_code;
    link.target = "_blank";
    const text = document.createElement("span");
    const words = (item.description || "").slice(0, 140);
    text.textContent = ` — ${words} (${S["web.public.js.distance"].replace("{m}", Math.round(item.distance_m))})`;
    const follow = document.createElement("button");
    follow.type = "button";
    follow.className = "button";
    follow.dataset.follow = item.tracking_code;
    follow.textContent = S["web.public.js.follow"];
    follow.addEventListener("click", () => send(item.tracking_code));
    li.append(link, text, document.createElement("br"), follow);
    dupList.append(li);
  }
  dupBox.hidden = false;
  dupBox.scrollIntoView({ block: "center" });
}

async function send(duplicateOf) {
  const body = new FormData(form);
  body.delete("photos");
  for (const file of photoInput.files) body.append("photos", file, file.name);
  if (!form.consent.checked) body.delete("consent");
  if (duplicateOf) body.set("duplicate_of", duplicateOf);
  for (const [key, value] of [...body.entries()]) {
    if (typeof value === "string" && value.trim() === "") body.delete(key);
  }
  sendButton.disabled = true;
  sendButton.textContent = S["web.public.js.sending"];
  try {
    const response = await fetch(`/api/v1/citizen/submissions?lang=${config.lang}`, {
      method: "POST", body, headers: { Accept: "application/json" },
    });
    const data = await response.json().catch(() => ({}));
    if (response.status === 201) {
      form.hidden = true;
      const sent = document.getElementById("sent");
      document.getElementById("tracking-code").textContent = data.tracking_code;
      document.getElementById("tracking-link").href = data.tracking_url;
      sent.hidden = false;
      sent.scrollIntoView({ block: "start" });
      document.body.dataset.sent = data.tracking_code;
      return;
    }
    const lines = (data.errors || []).map((e) => e.message).filter(Boolean);
    showError([data.detail || data.title || S["web.public.js.failed"], ...lines]);
  } catch {
    showError([S["web.public.js.unreachable"]]);
  } finally {
    sendButton.disabled = false;
    sendButton.textContent = sendButton.dataset.label;
  }
}

sendButton.dataset.label = sendButton.textContent;
document.getElementById("submit-anyway").addEventListener("click", () => send(null));
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  const problems = checkLocally();
  if (problems.length) {
    showError(problems);
    return;
  }
  const candidates = await duplicates();
  if (candidates.length) {
    offer(candidates);
    return;
  }
  await send(null);
});
showAttributes();
document.body.dataset.ready = "1";
