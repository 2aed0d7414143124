// Programme board: the roadmap as a Gantt chart (ECharts custom series: one bar per item with its
// progress and milestones, a line for today), the budget by source against the planned split,
// and the sortable item table.

import { formats } from "./charts.js";
import { pageConfig, sortableTables } from "./measure-common.js";

const config = pageConfig();
const S = config.strings;
const f = formats(config.lang, "Asia/Ho_Chi_Minh");
const day = new Intl.DateTimeFormat(config.lang === "en" ? "en-GB" : "vi-VN", { dateStyle: "short" });
const STATUS_COLOURS = {
  planned: "#78909c", in_progress: "#0b5394", done: "#2e7d32", delayed: "#c62828", cancelled: "#9e9e9e",
};

function init(element) {
  return echarts.init(element, null, { locale: config.lang === "en" ? "EN" : "VI", renderer: "canvas" });
}

function gantt() {
  const element = document.getElementById("gantt");
  const rows = config.gantt;
  if (!rows.length) {
    element.textContent = S["chart.empty"];
    return;
  }
  element.style.height = `${Math.max(320, rows.length * 26 + 80)}px`;
  const chart = init(element);
  const labels = rows.map((r) => `${r.code}`);
  const data = rows.map((r, i) => ({
    value: [i, Date.parse(r.start), Date.parse(r.end), r.progress],
    itemStyle: { color: STATUS_COLOURS[r.status] || "#0b5394" },
    name: r.name,
  }));
  const milestones = rows.flatMap((r, i) => r.milestones.map((m) => ({
    value: [Date.parse(m.due), i], name: m.name, done: m.done,
    itemStyle: { color: m.done ? "#2e7d32" : "#b45309" },
  })));
  chart.setOption({
    animation: false,
    grid: { left: 8, right: 24, top: 24, bottom: 40, containLabel: true },
    tooltip: {
      formatter: (p) => (p.seriesType === "custom"
        ? `${p.name}<br>${day.format(p.value[1])} – ${day.format(p.value[2])}<br>${S["gantt.progress"]}: ${p.value[3]} %`
        : `${S["gantt.milestone"]}: ${p.name}<br>${day.format(p.value[0])}`),
    },
    xAxis: { type: "time", position: "top", axisLabel: { formatter: (v) => String(new Date(v).getFullYear()) } },
    yAxis: { type: "category", data: labels, inverse: true, axisLabel: { width: 90 } },
    dataZoom: [{ type: "inside", xAxisIndex: 0 }],
    series: [
      {
        type: "custom",
        name: S["gantt.progress"],
        encode: { x: [1, 2], y: 0 },
        data,
        renderItem: (params, api) => {
          const start = api.coord([api.value(1), api.value(0)]);
          const end = api.coord([api.value(2), api.value(0)]);
          const height = api.size([0, 1])[1] * 0.6;
          const width = Math.max(2, end[0] - start[0]);
          const done = width * (api.value(3) / 100);
          const style = api.style();
          return {
            type: "group",
            children: [
              { type: "rect", shape: { x: start[0], y: start[1] - height / 2, width, height },
                style: { fill: style.fill, opacity: 0.35 } },
              { type: "rect", shape: { x: start[0], y: start[1] - height / 2, width: done, height },
                style: { fill: style.fill } },
            ],
          };
        },
        markLine: {
          symbol: "none", silent: true, label: { formatter: S["gantt.today"] },
          lineStyle: { color: "#b45309", type: "dashed" },
          data: [{ xAxis: Date.parse(config.today) }],
        },
      },
      { type: "scatter", name: S["gantt.milestone"], symbol: "diamond", symbolSize: 10, data: milestones },
    ],
  });
  element.dataset.bars = String(rows.length);
}

function budget() {
  const element = document.getElementById("budget-chart");
  const rows = config.budget;
  if (!rows.length) {
    element.textContent = S["chart.empty"];
    return;
  }
  const chart = init(element);
  const billions = (v) => Math.round(v / 1e7) / 100;
  chart.setOption({
    animation: false,
    legend: { top: 0 },
    grid: { left: 56, right: 56, top: 40, bottom: 32 },
    tooltip: { trigger: "axis", valueFormatter: (v) => (v == null ? "–" : f.number.format(v)) },
    xAxis: { type: "category", data: rows.map((r) => String(r.year)) },
    yAxis: [
      { type: "value", name: S["budget.axis"], axisLabel: { formatter: (v) => f.number.format(v) } },
      { type: "value", min: 0, max: 100, axisLabel: { formatter: (v) => `${v} %` } },
    ],
    series: [
      { name: S["budget.recurrent"], type: "bar", stack: "money", data: rows.map((r) => billions(r.recurrent)), itemStyle: { color: "#0b5394" } },
      { name: S["budget.investment"], type: "bar", stack: "money", data: rows.map((r) => billions(r.investment)), itemStyle: { color: "#7fa7d0" } },
      { name: S["budget.share"], type: "line", yAxisIndex: 1, data: rows.map((r) => r.recurrent_share), itemStyle: { color: "#b45309" } },
      { name: S["budget.planned"], type: "line", yAxisIndex: 1, data: rows.map((r) => r.planned), showSymbol: false,
        lineStyle: { type: "dashed", color: "#37474f" }, itemStyle: { color: "#37474f" } },
    ],
  });
  element.dataset.years = String(rows.length);
}

gantt();
budget();
sortableTables(config.lang);
document.body.dataset.ready = "1";
