// Decision 766 scorecard: every agency's (or unit's) points, band and rank, or one agency's
// indicators, groups and procedures. Read from the egov API, so the page shows exactly what the
// API shows this user.

import { barChart, formats, getJson } from "./charts.js";
import { pageConfig } from "./measure-common.js";

const config = pageConfig();
const S = config.strings;
const f = formats(config.lang, "Asia/Ho_Chi_Minh");
const status = document.getElementById("score-status");
const num = (v) => (v == null ? "–" : f.number.format(v));

function cell(row, text, numeric = false, header = false) {
  const element = document.createElement(header ? "th" : "td");
  if (header) element.scope = "row";
  if (numeric) element.className = "num";
  if (text instanceof Node) element.append(text); else element.textContent = String(text);
  row.append(element);
  return element;
}

function band(item) {
  return item.band ? item.band.name || item.band.code : "–";
}

async function list() {
  const body = await getJson(config.api);
  const table = document.getElementById("score-table");
  const items = [...body.items].sort(
    (a, b) => (a.rank ?? 1e9) - (b.rank ?? 1e9) || (b.total ?? -1) - (a.total ?? -1),
  );
  status.textContent = `${S["score.period"]}: ${body.period.label} · ${S["score.ranked"]}: ${body.ranked}`;
  if (!items.length) {
    status.textContent = S["score.none"];
    return;
  }
  const indicators = items[0].indicators.map((i) => ({ id: i.id, name: i.name }));
  const head = table.tHead.rows[0];
  for (const [text, numeric] of [[S["score.rank"], true], [S["score.name"], false], [S["score.total"], true],
    [S["score.band"], false], [S["score.dossiers"], true]]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = text;
    if (numeric) th.className = "num";
    head.append(th);
  }
  for (const i of indicators) {
    const th = document.createElement("th");
    th.scope = "col";
    th.className = "num";
    th.title = i.name;
    th.textContent = i.id;
    head.append(th);
  }
  const tbody = table.tBodies[0];
  for (const item of items) {
    const row = tbody.insertRow();
    row.dataset.code = item.code;
    cell(row, item.rank ?? "–", true).dataset.cell = "rank";
    const link = document.createElement("a");
    const query = new URLSearchParams({ group_by: config.group_by });
    if (config.period) query.set("period", config.period);
    link.href = `/egov/scorecard/${encodeURIComponent(item.code)}?${query}`;
    link.textContent = item.name;
    cell(row, link, false, true);
    cell(row, num(item.total), true);
    cell(row, band(item));
    cell(row, num(item.dossiers), true);
    const points = new Map(item.indicators.map((i) => [i.id, i.points]));
    for (const i of indicators) cell(row, num(points.get(i.id)), true);
  }
  table.hidden = false;
  const ranked = items.filter((i) => typeof i.total === "number").slice(0, 25);
  const chart = document.getElementById("score-chart");
  if (ranked.length) barChart(chart, config.lang, ranked.map((i) => [i.name, i.total]), S["score.total"]);
  else chart.hidden = true;
  document.body.dataset.scores = String(items.length);
}

async function detail() {
  const response = await fetch(config.api, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 404) {
    status.textContent = S["score.not_found"];
    return;
  }
  if (!response.ok) throw new Error(`${config.api}: ${response.status}`);
  const body = await response.json();
  const item = body.item;
  status.textContent = `${S["score.period"]}: ${body.period.label}`;
  document.getElementById("fig-total").textContent = num(item.total);
  document.getElementById("fig-band").textContent = band(item);
  document.getElementById("fig-rank").textContent = item.rank == null
    ? S["score.unranked"] : `${item.rank}/${body.ranked}`;
  document.getElementById("fig-dossiers").textContent = num(item.dossiers);
  document.getElementById("score-figures").hidden = false;
  const table = document.getElementById("score-indicators");
  for (const i of item.indicators) {
    const row = table.tBodies[0].insertRow();
    row.dataset.indicator = i.id;
    cell(row, i.id);
    cell(row, i.name, false, true);
    cell(row, num(i.numerator), true);
    cell(row, num(i.denominator), true);
    cell(row, i.value == null ? "–" : `${num(i.value)} ${i.unit === "day" ? "" : i.unit}`.trim(), true);
    cell(row, `${num(i.points)} / ${num(i.max_points)}`, true);
  }
  table.hidden = !item.indicators.length;
  const procedures = document.getElementById("score-procedures");
  for (const p of body.procedures) {
    const row = procedures.tBodies[0].insertRow();
    cell(row, `${p.procedure_code} · ${p.name}`, false, true);
    cell(row, num(p.dossiers), true);
    cell(row, p.on_time_percent == null ? "–" : `${num(p.on_time_percent)} %`, true);
    cell(row, num(p.average_days), true);
    cell(row, p.online_percent == null ? "–" : `${num(p.online_percent)} %`, true);
  }
  procedures.hidden = !body.procedures.length;
  const chart = document.getElementById("score-chart");
  if (item.groups.length) {
    barChart(chart, config.lang, item.groups.map((g) => [g.name, g.points]), S["score.points"]);
  } else chart.hidden = true;
  document.body.dataset.scores = "1";
}

(config.code ? detail() : list())
  .catch((error) => {
    status.textContent = S["score.failed"];
    console.warn(error);
  })
  .finally(() => { document.body.dataset.ready = "1"; });
