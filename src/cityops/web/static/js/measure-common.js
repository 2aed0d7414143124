// Helpers of the measuring pages: the page config, sortable tables and small trend lines.

import { formats } from "./charts.js";

/** Return the page's JSON config (rendered by the server). */
export function pageConfig() {
  return JSON.parse(document.getElementById("measure-config").textContent);
}

/** Make every `table.sortable` sortable by its header buttons (keyboard: Enter / Space). */
export function sortableTables(lang) {
  const collator = new Intl.Collator(lang === "en" ? "en" : "vi", { numeric: true });
  for (const table of document.querySelectorAll("table.sortable")) {
    for (const button of table.querySelectorAll("button.sort")) {
      button.addEventListener("click", () => {
        const th = button.closest("th");
        const col = Number(button.dataset.col);
        const numeric = button.dataset.type === "number";
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        for (const other of table.querySelectorAll("thead th")) other.removeAttribute("aria-sort");
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = [...body.rows];
        const key = (row) => row.cells[col].dataset.value ?? row.cells[col].textContent;
        rows.sort((a, b) => {
          const x = key(a);
          const y = key(b);
          let order;
          if (numeric) {
            // Empty cells (no data) go last whatever the direction.
            if (x === "" || y === "") return (x === "") - (y === "");
            order = Number(x) - Number(y);
          } else {
            order = collator.compare(x, y);
          }
          return ascending ? order : -order;
        });
        body.append(...rows);
        table.dataset.sorted = `${col}:${ascending ? "asc" : "desc"}`;
      });
    }
  }
}

/** Draw a small line of [[label, value], ...] with the target as a dashed line. */
export function sparkline(element, lang, points, target, strings) {
  const f = formats(lang, "Asia/Ho_Chi_Minh");
  const chart = echarts.init(element, null, { locale: lang === "en" ? "EN" : "VI", renderer: "canvas" });
  const series = [{
    name: strings["chart.value"], type: "line", data: points.map((p) => p[1]), showSymbol: points.length < 2,
    symbolSize: 4, lineStyle: { width: 2, color: "#0b5394" }, itemStyle: { color: "#0b5394" }, connectNulls: false,
  }];
  if (target != null) {
    series.push({
      name: strings["chart.target"], type: "line", data: points.map(() => target), showSymbol: false,
      lineStyle: { width: 1, type: "dashed", color: "#b45309" }, tooltip: { show: false },
    });
  }
  chart.setOption({
    animation: false,
    grid: { left: 2, right: 2, top: 4, bottom: 4 },
    tooltip: { trigger: "axis", confine: true, valueFormatter: (v) => (v == null ? "–" : f.number.format(v)) },
    xAxis: { type: "category", show: false, data: points.map((p) => p[0]) },
    yAxis: { type: "value", show: false, scale: true },
    series,
  });
  return chart;
}
