// KPI overview, unit and area pages: a trend line per indicator and the place selector's unit
// list narrowed to the chosen area.

import { pageConfig, sparkline } from "./measure-common.js";

const config = pageConfig();

function narrowUnits() {
  const areaSelect = document.getElementById("area");
  const unitSelect = document.getElementById("unit");
  if (!areaSelect || !unitSelect || !config.selector) return;
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

let drawn = 0;
for (const element of document.querySelectorAll(".spark")) {
  const trend = config.trends[element.dataset.code];
  if (!trend || !trend.points.some((p) => p[1] != null)) {
    element.textContent = config.strings["chart.empty"];
    element.classList.add("muted", "small");
    continue;
  }
  sparkline(element, config.lang, trend.points, trend.target, config.strings);
  element.dataset.points = String(trend.points.length);
  drawn += 1;
}
document.body.dataset.trends = String(drawn);
const areaSelect = document.getElementById("area");
if (areaSelect) {
  areaSelect.addEventListener("change", narrowUnits);
  narrowUnits();
}
document.body.dataset.ready = "1";
