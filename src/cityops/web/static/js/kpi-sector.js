// A sector's indicators across the communes/wards: the ranking chart of the chosen indicator
// and the sortable table.

import { barChart } from "./charts.js";
import { pageConfig, sortableTables } from "./measure-common.js";

const config = pageConfig();
const select = document.getElementById("rank-indicator");
const status = document.getElementById("rank-status");
const element = document.getElementById("rank-chart");

function draw() {
  const ranking = config.rankings[select.value];
  if (!ranking || !ranking.items.length) {
    status.textContent = config.strings["chart.empty"];
    element.hidden = true;
    element.dataset.bars = "0";
    return;
  }
  status.textContent = "";
  element.hidden = false;
  barChart(element, config.lang, ranking.items, `${ranking.name} (${ranking.unit})`);
  element.dataset.bars = String(ranking.items.length);
}

if (select.options.length) {
  select.addEventListener("change", draw);
  draw();
}
sortableTables(config.lang);
document.body.dataset.ready = "1";
