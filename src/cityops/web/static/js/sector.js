// A sector centre: bar charts of the live values rendered by the server, the area selector's
// unit list narrowed to the chosen area, and (e-government) the Decision 766 scorecard summary.

import { barChart, formats, getJson } from "./charts.js";

const config = JSON.parse(document.getElementById("sector-config").textContent);
const S = config.strings;
const f = formats(config.lang, "Asia/Ho_Chi_Minh");

function narrowUnits() {
  const areaSelect = document.getElementById("area");
  const unitSelect = document.getElementById("unit");
  const area = config.selector.areas.find((a) => a.code === areaSelect.value);
  const allowed = area ? new Set(area.units) : null;
  const keep = unitSelect.value;
  unitSelect.replaceChildren(unitSelect.options[0]);
  for (const u of config.selector.units) {
    if (allowed && !allowed.has(u.code)) continue;
    unitSelect.add(new Option(`${u.name} (${u.code})`, u.code));
  }
  unitSelect.value = [...unitSelect.options].some((o) => o.value === keep) ? keep : "";
}

function charts() {
  for (const view of config.views) {
    const element = document.getElementById(`chart-${view.key}`);
    if (!element || !view.series.length) continue;
    barChart(element, config.lang, view.series, view.label);
    element.dataset.bars = String(view.series.length);
  }
}

async function egov() {
  const status = document.getElementById("egov-status");
  const table = document.getElementById("egov-table");
  try {
    const body = await getJson("/api/v1/egov/indicators?group_by=agency");
    const items = body.items
      .filter((i) => typeof i.total === "number")
      .sort((a, b) => (a.rank ?? 1e9) - (b.rank ?? 1e9) || b.total - a.total);
    if (!items.length) {
      status.textContent = S["egov.none"];
      return;
    }
    status.textContent = `${S["egov.period"]}: ${body.period.label}`;
    const tbody = table.tBodies[0];
    for (const item of items) {
      const row = tbody.insertRow();
      const cells = [
        item.rank ?? "–", item.name, f.number.format(item.total),
        item.band ? item.band.name || item.band.code || "" : "–", f.number.format(item.dossiers),
      ];
      cells.forEach((text, i) => {
        const cell = row.insertCell();
        cell.textContent = String(text);
        if (i === 0 || i === 2 || i === 4) cell.className = "num";
      });
    }
    table.hidden = false;
    barChart(document.getElementById("egov-chart"), config.lang,
      items.slice(0, 15).map((i) => [i.name, Math.round(i.total * 10) / 10]), S["egov.total"]);
    document.body.dataset.egov = String(items.length);
  } catch (error) {
    status.textContent = S["egov.failed"];
    console.error(error);
  }
}

document.getElementById("area").addEventListener("change", narrowUnits);
narrowUnits();
charts();
(config.egov ? egov() : Promise.resolve()).finally(() => { document.body.dataset.ready = "1"; });
