// Pilot evaluation: a grouped bar chart of the chosen indicator's four numbers (pilot and the
// rest of the province, before and after the go-live).

import { formats } from "./charts.js";
import { pageConfig } from "./measure-common.js";

const config = pageConfig();
const S = config.strings;
const f = formats(config.lang, "Asia/Ho_Chi_Minh");
const select = document.getElementById("eval-indicator");
const element = document.getElementById("eval-chart");
const status = document.getElementById("eval-status");

function draw() {
  const row = config.rows.find((r) => r.code === select.value);
  if (!row) return;
  const chart = echarts.getInstanceByDom(element)
    || echarts.init(element, null, { locale: config.lang === "en" ? "EN" : "VI" });
  const [pb, pa, cb, ca] = row.values;
  chart.setOption({
    animation: false,
    legend: { top: 0 },
    grid: { left: 56, right: 24, top: 36, bottom: 32 },
    tooltip: { trigger: "axis", valueFormatter: (v) => (v == null ? "–" : f.number.format(v)) },
    xAxis: { type: "category", data: [S["eval.before"], S["eval.after"]] },
    yAxis: { type: "value", scale: true, axisLabel: { formatter: (v) => f.number.format(v) } },
    series: [
      { name: S["eval.pilot"], type: "bar", data: [pb, pa], itemStyle: { color: "#0b5394" } },
      { name: S["eval.control"], type: "bar", data: [cb, ca], itemStyle: { color: "#b45309" } },
    ],
  }, true);
  element.dataset.indicator = row.code;
}

if (config.rows.length) {
  for (const row of config.rows) select.add(new Option(`${row.code} · ${row.name}`, row.code));
  select.addEventListener("change", draw);
  draw();
} else {
  status.textContent = S["chart.empty"];
  element.hidden = true;
  select.disabled = true;
}
document.body.dataset.ready = "1";
