// The live feed and the open-incidents layer of the operations screen. The feed starts from
// the latest open alerts and incidents, then follows the SSE stream (/api/v1/stream): the
// browser's EventSource resumes with Last-Event-ID after a network cut; if the stream is refused
// (an expired session, a restarted server) we reopen it ourselves from the last id we saw.
// The incidents layer comes in one request (/api/v1/map/incidents). When the screen asks for
// them (`onEntity`), the same stream carries entity changes; a `reset` (changes the server no
// longer holds) is passed to `onReset`, which reloads the sensors.

const OPEN = new Set(["new", "assigned", "in_progress"]);
const SEVERITY_COLOURS = {
  low: "#1565c0", medium: "#f9a825", high: "#e65100", critical: "#a30000",
};
const RANK = { low: 0, medium: 1, high: 2, critical: 3 };
const MAX_ITEMS = 100;
const FIRST_ITEMS = 30;
const ENTITY_EVENTS = ["context.attribute_changed", "context.entity_created", "context.entity_deleted"];
const ALERT_VERBS = {
  "alerts.alert_opened": "web.feed.opened",
  "alerts.alert_acknowledged": "web.feed.acknowledged",
  "alerts.alert_snoozed": "web.feed.snoozed",
  "alerts.alert_resolved": "web.feed.resolved",
};
const INCIDENT_VERBS = {
  "incidents.incident_created": "web.feed.created",
  "incidents.incident_changed": "web.feed.changed",
  "incidents.comment_added": "web.feed.comment",
  "incidents.sla_breached": "web.feed.sla",
  "incidents.incident_escalated": "web.feed.escalated",
};

/**
 * Return the response to a request the page's head already sent (`window.cityopsEarly`: the
 * operations screen's layers leave before any script is fetched), or send it now. An early
 * response is taken once: reloading a layer asks the server again.
 */
export function request(url) {
  const early = window.cityopsEarly && window.cityopsEarly.get(url);
  if (early) {
    window.cityopsEarly.delete(url);
    return early;
  }
  return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
}

async function getJson(url) {
  const response = await request(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

/**
 * Start the feed and the incidents layer.
 * `selectedUnits()` returns the unit codes of the chosen area (null: the whole province);
 * `boundaries` is a promise of the units' features (incidents without a point are placed at
 * their unit's centre, so they wait for it); `onEntity(type, data)` receives entity changes.
 */
export function startFeed({
  map, config, selectedUnits, layers, unitCentre, boundaries = Promise.resolve(),
  onEntity = null, onReset = null,
}) {
  const S = config.strings;
  const kinds = config.feedKinds || [];
  const streamKinds = onEntity ? [...kinds, "entities"] : kinds;
  const locale = config.lang === "en" ? "en-GB" : "vi-VN";
  const time = new Intl.DateTimeFormat(locale, {
    timeZone: config.timeZone, day: "2-digit", month: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const list = document.getElementById("feed");
  const empty = document.getElementById("feed-empty");
  const state = document.getElementById("feed-state");
  const items = []; // newest first: {key, kind, severity, unit, at, title, verb, href}
  const incidentLinks = new Map(); // alert id → incident code
  const markers = new Map(); // incident code → marker
  const incidents = new Map(); // incident code → {unit, severity, ...}

  const cluster = L.markerClusterGroup({
    showCoverageOnHover: false, maxClusterRadius: 50,
    iconCreateFunction: (group) => {
      const worst = group.getAllChildMarkers().reduce((m, k) => Math.max(m, RANK[k.options.severity] ?? 0), 0);
      const severity = Object.keys(RANK)[worst];
      return L.divIcon({
        className: "incident-cluster",
        html: `<span style="background:${SEVERITY_COLOURS[severity]}">${group.getChildCount()}</span>`,
        iconSize: [30, 30],
      });
    },
  });
  if (kinds.includes("incidents")) {
    map.addLayer(cluster);
    layers.addOverlay(cluster, S["web.desk.layer.incidents"]);
  }

  function visible(unit) {
    const units = selectedUnits();
    return !units || (unit && units.has(unit));
  }

  let markersChanged = true;
  let lastSelection = null;

  function render() {
    const fragment = document.createDocumentFragment();
    let shown = 0;
    for (const item of items) {
      if (!visible(item.unit)) continue;
      shown += 1;
      const li = document.createElement("li");
      li.className = `feed-${item.severity} feed-${item.kind}`;
      li.dataset.key = item.key;
      const when = document.createElement("time");
      when.dateTime = item.at;
      when.textContent = time.format(new Date(item.at));
      const what = document.createElement("strong");
      what.textContent = `${S[`web.feed.${item.kind}`]} · ${S[`web.desk.severity.${item.severity}`] || item.severity}`;
      const verb = document.createElement("span");
      verb.className = "muted";
      verb.textContent = ` (${S[item.verb]})`;
      const link = document.createElement("a");
      const code = item.alertId && incidentLinks.get(item.alertId);
      link.href = code ? `/incidents/${encodeURIComponent(code)}` : item.href;
      link.textContent = item.title;
      li.append(when, what, verb, document.createElement("br"), link);
      fragment.append(li);
    }
    list.replaceChildren(fragment);
    empty.hidden = shown > 0;
    document.body.dataset.feed = String(shown);
    // Re-cluster only when the incidents or the area changed, not for every feed item.
    const selection = selectedUnits();
    const key = selection ? [...selection].sort().join(",") : "*";
    if (!markersChanged && key === lastSelection) return;
    markersChanged = false;
    lastSelection = key;
    cluster.clearLayers();
    const inside = [...markers.entries()].filter(([code]) => visible(incidents.get(code).unit));
    cluster.addLayers(inside.map(([, marker]) => marker));
    document.body.dataset.incidents = String(inside.length);
  }

  function add(item) {
    const old = items.findIndex((i) => i.key === item.key);
    if (old >= 0) items.splice(old, 1);
    item.t = Date.parse(item.at) || 0;
    let at = 0;
    while (at < items.length && items[at].t > item.t) at += 1;
    items.splice(at, 0, item);
    items.length = Math.min(items.length, MAX_ITEMS);
  }

  function alertItem(type, a) {
    return {
      key: `alert-${a.alert_id ?? a.id}-${type}`,
      kind: "alert",
      alertId: a.alert_id ?? a.id,
      severity: a.severity,
      unit: a.unit_code,
      at: (type === "alerts.alert_opened" ? a.opened_at : a.at) || a.opened_at,
      title: (config.lang === "en" ? a.title_en : a.title_vi) || a.title_vi || a.rule_code,
      verb: ALERT_VERBS[type],
      href: `/entities/${encodeURIComponent(a.entity_id)}`,
    };
  }

  function incidentItem(type, i, at) {
    return {
      key: `incident-${i.code}-${type}-${at}`,
      kind: "incident",
      severity: i.severity,
      unit: i.unit_code,
      at,
      title: `${i.code} — ${i.title}`,
      verb: INCIDENT_VERBS[type],
      href: `/incidents/${encodeURIComponent(i.code)}`,
    };
  }

  const pins = new Map(); // severity → one shared icon
  function pinFor(severity) {
    if (!pins.has(severity)) {
      pins.set(severity, L.divIcon({
        className: "incident-pin",
        html: `<span style="background:${SEVERITY_COLOURS[severity] || "#555"}"></span>`,
        iconSize: [18, 18],
      }));
    }
    return pins.get(severity);
  }

  function place(i) {
    const code = i.code;
    markersChanged = true;
    markers.delete(code);
    incidents.delete(code);
    if (!OPEN.has(i.status)) return;
    incidents.set(code, { unit: i.unit_code, severity: i.severity });
    if (i.alert_id) incidentLinks.set(i.alert_id, code);
    // An incident without a point (as those opened by alerts today) sits at its unit's centre.
    const point = typeof i.lat === "number" && typeof i.lon === "number"
      ? [i.lat, i.lon] : unitCentre(i.unit_code);
    if (!point) return;
    const marker = L.marker(point, {
      icon: pinFor(i.severity), title: `${i.code} — ${i.title}`, keyboard: true,
      severity: i.severity,
    });
    // Built when opened: a thousand incidents never build a thousand popups upfront.
    marker.bindPopup(() => {
      const popup = document.createElement("div");
      const link = document.createElement("a");
      link.href = `/incidents/${encodeURIComponent(code)}`;
      link.textContent = `${code} — ${i.title}`;
      const line = document.createElement("div");
      line.textContent = `${S[`web.desk.severity.${i.severity}`]} · ${S[`web.desk.status.${i.status}`]}`;
      popup.append(link, line);
      return popup;
    });
    markers.set(code, marker);
  }

  async function loadIncidents() {
    // Newest first, every open incident the user may see, as compact rows.
    const layer = await getJson("/api/v1/map/incidents");
    const at = Object.fromEntries(layer.fields.map((name, index) => [name, index]));
    const rows = layer.rows.map((r) => ({
      code: r[at.code], lat: r[at.lat], lon: r[at.lon], unit_code: r[at.unit],
      severity: r[at.severity], status: r[at.status], title: r[at.title],
      alert_id: r[at.alertId], created_at: r[at.createdAt],
    }));
    await boundaries.catch(() => null);
    for (const i of rows) place(i);
    for (const i of rows.slice(0, FIRST_ITEMS)) {
      add(incidentItem("incidents.incident_created", i, i.created_at));
    }
  }

  async function loadAlerts() {
    const page = await getJson("/api/v1/alerts?status=open&limit=30");
    for (const a of page.items) add(alertItem("alerts.alert_opened", a));
  }

  let last = "";
  let source = null;
  let timer = null;

  function onEvent(event) {
    if (event.lastEventId) last = event.lastEventId;
    const data = JSON.parse(event.data);
    if (event.type.startsWith("alerts.")) {
      add(alertItem(event.type, data));
    } else {
      if (event.type === "incidents.incident_created" || event.type === "incidents.incident_changed") {
        place(data);
      }
      add(incidentItem(event.type, data, data.at));
    }
    render();
  }

  function onEntityEvent(event) {
    if (event.lastEventId) last = event.lastEventId;
    onEntity(event.type, JSON.parse(event.data));
  }

  function onResetEvent(event) {
    if (event.lastEventId) last = event.lastEventId;
    const data = JSON.parse(event.data || "{}");
    if (onReset && (data.kinds || []).includes("entities")) onReset();
  }

  function connect() {
    const params = new URLSearchParams({ types: streamKinds.join(",") });
    if (last) params.set("last_event_id", last);
    source = new EventSource(`/api/v1/stream?${params}`);
    for (const type of [...Object.keys(ALERT_VERBS), ...Object.keys(INCIDENT_VERBS)]) {
      source.addEventListener(type, onEvent);
    }
    if (onEntity) {
      for (const type of ENTITY_EVENTS) source.addEventListener(type, onEntityEvent);
    }
    source.addEventListener("reset", onResetEvent);
    source.addEventListener("open", () => {
      state.textContent = S["web.feed.live"];
      document.body.dataset.live = "1";
    });
    source.addEventListener("error", () => {
      state.textContent = S["web.feed.offline"];
      document.body.dataset.live = "0";
      // EventSource retries by itself after a cut; after a refusal it gives up: reopen.
      if (source.readyState === EventSource.CLOSED && !timer) {
        timer = setTimeout(() => { timer = null; connect(); }, 3000);
      }
    });
  }

  async function start() {
    if (!streamKinds.length) {
      render();
      return;
    }
    // Open the stream first, so that nothing happening while the lists load is missed.
    connect();
    const loads = [];
    if (kinds.includes("incidents")) loads.push(loadIncidents());
    if (kinds.includes("alerts")) loads.push(loadAlerts());
    const results = await Promise.allSettled(loads);
    for (const r of results) if (r.status === "rejected") console.warn(r.reason);
    render();
  }

  const ready = start();
  return { render, ready };
}
