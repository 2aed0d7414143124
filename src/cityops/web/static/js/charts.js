// ECharts helpers shared by the entity, sector and wall pages. ECharts and its Vietnamese locale
// are classic scripts from /static/vendor (global `echarts`); numbers and times are formatted
// with Intl for the page's language, in the province's time zone.

const resizers = new Set();
window.addEventListener("resize", () => resizers.forEach((chart) => chart.resize()));

/** Return Intl formatters for a language and time zone. */
export function formats(lang, timeZone) {
  const locale = lang === "en" ? "en-GB" : "vi-VN";
  return {
    number: new Intl.NumberFormat(locale, { maximumFractionDigits: 2 }),
    time: new Intl.DateTimeFormat(locale, { timeZone, hour: "2-digit", minute: "2-digit" }),
    dateTime: new Intl.DateTimeFormat(locale, {
      timeZone, day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit",
    }),
  };
}

function init(element, lang) {
  // "VI" is registered by langVI.js; English is built in.
  const chart = echarts.init(element, null, { locale: lang === "en" ? "EN" : "VI", renderer: "canvas" });
  resizers.add(chart);
  return chart;
}

/** Draw (or redraw) a time series: `series` is [{name, points: [[ms, value], ...]}]. */
export function timeChart(element, lang, timeZone, series, unit) {
  const f = formats(lang, timeZone);
  const chart = echarts.getInstanceByDom(element) || init(element, lang);
  chart.setOption({
    animation: false,
    grid: { left: 56, right: 24, top: 36, bottom: 48 },
    legend: { top: 0 },
    tooltip: {
      trigger: "axis",
      valueFormatter: (v) => (v == null ? "–" : `${f.number.format(v)}${unit ? " " + unit : ""}`),
    },
    xAxis: {
      type: "time",
      axisLabel: { formatter: (ms) => f.dateTime.format(new Date(ms)), hideOverlap: true },
    },
    yAxis: { type: "value", scale: true, axisLabel: { formatter: (v) => f.number.format(v) } },
    series: series.map((s) => ({
      name: s.name, type: "line", showSymbol: s.points.length < 60, data: s.points,
      areaStyle: s.band ? { opacity: 0.15 } : undefined, lineStyle: s.dashed ? { type: "dashed" } : undefined,
    })),
  }, true);
  return chart;
}

/** Draw a horizontal bar chart of [[label, value], ...] (largest first). */
export function barChart(element, lang, pairs, name) {
  const f = formats(lang, "UTC");
  const chart = echarts.getInstanceByDom(element) || init(element, lang);
  const rows = [...pairs].reverse();
  chart.setOption({
    animation: false,
    grid: { left: 8, right: 48, top: 8, bottom: 24, containLabel: true },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: (v) => f.number.format(v) },
    xAxis: { type: "value", axisLabel: { formatter: (v) => f.number.format(v) } },
    yAxis: { type: "category", data: rows.map((r) => r[0]), axisLabel: { width: 220, overflow: "truncate" } },
    series: [{
      name, type: "bar", data: rows.map((r) => r[1]), itemStyle: { color: "#0b5394" },
      label: { show: true, position: "right", formatter: (p) => f.number.format(p.value) },
    }],
  }, true);
  element.style.height = `${Math.max(160, rows.length * 22 + 40)}px`;
  chart.resize();
  return chart;
}

/** Fetch JSON with the session cookie; a lost session goes to the login page. */
export async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new Error("unauthenticated");
  }
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}
