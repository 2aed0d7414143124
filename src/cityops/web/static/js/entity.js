// Entity detail: the history chart of one attribute over an hour, a day, a week or a month,
// drawn from the NGSI-LD temporal API. Short ranges show every observation; a week and a month
// are aggregated on the server (hourly and six-hourly average, minimum and maximum).

import { getJson, timeChart } from "./charts.js";

const config = JSON.parse(document.getElementById("entity-config").textContent);
const S = config.strings;
const HOUR = 3600 * 1000;
const RANGES = {
  hour: { span: HOUR },
  day: { span: 24 * HOUR },
  week: { span: 7 * 24 * HOUR, period: "PT1H" },
  month: { span: 30 * 24 * HOUR, period: "PT6H" },
};

const element = document.getElementById("chart");
const status = document.getElementById("chart-status");
const select = document.getElementById("attribute");
const buttons = [...document.querySelectorAll("button.range")];
let range = "day";
let request = 0;

function url(attribute, spec) {
  const end = new Date(config.now).getTime() + 1000;
  const params = new URLSearchParams({
    attrs: attribute, timerel: "between",
    timeAt: new Date(end - spec.span).toISOString(), endTimeAt: new Date(end).toISOString(),
  });
  if (spec.period) {
    params.set("aggrMethods", "avg,min,max");
    params.set("aggrPeriodDuration", spec.period);
  } else {
    params.set("options", "temporalValues");
  }
  return `/ngsi-ld/v1/temporal/entities/${encodeURIComponent(config.entityId)}?${params}`;
}

function seriesOf(body, attribute, spec) {
  const attr = body[attribute];
  if (!attr) return [];
  if (!spec.period) {
    const points = (attr.values || [])
      .filter(([v]) => typeof v === "number")
      .map(([v, t]) => [new Date(t).getTime(), v])
      .sort((a, b) => a[0] - b[0]);
    return points.length ? [{ name: S["chart.value"], points }] : [];
  }
  // A bucket is [value, start, end]: plot it at its middle; empty buckets are left out.
  const pick = (method) => (attr[method] || [])
    .filter(([v]) => typeof v === "number")
    .map(([v, start, stop]) => [(new Date(start).getTime() + new Date(stop).getTime()) / 2, v]);
  const avg = pick("avg");
  if (!avg.length) return [];
  return [
    { name: S["chart.avg"], points: avg },
    { name: S["chart.min"], points: pick("min"), dashed: true },
    { name: S["chart.max"], points: pick("max"), dashed: true },
  ];
}

async function draw() {
  const mine = ++request;
  const attribute = select.value;
  const spec = RANGES[range];
  for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.range === range));
  document.body.dataset.chart = "loading";
  let series;
  try {
    series = seriesOf(await getJson(url(attribute, spec)), attribute, spec);
  } catch (error) {
    if (mine !== request) return;
    status.textContent = S["chart.failed"];
    document.body.dataset.chart = "failed";
    console.error(error);
    return;
  }
  if (mine !== request) return; // a later choice won the race
  const points = series.reduce((n, s) => n + s.points.length, 0);
  timeChart(element, config.lang, config.timeZone, series, config.units[attribute] || "");
  status.textContent = points ? "" : S["chart.empty"];
  element.dataset.points = String(series.length ? series[0].points.length : 0);
  element.dataset.range = range;
  element.dataset.attribute = attribute;
  document.body.dataset.chart = "drawn";
}

for (const button of buttons) {
  button.addEventListener("click", () => {
    range = button.dataset.range;
    draw();
  });
}
select.addEventListener("change", draw);
draw().finally(() => { document.body.dataset.ready = "1"; });
