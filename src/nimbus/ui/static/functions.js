// The functions view: every function with its activity over the chosen range, each
// figure a total and a sparkline of its 1-minute points.

import { COLORS, sparkline } from "./charts.js";
import { api, fmtCost, fmtCount, fmtMs, h, listFunctions, notice, sum } from "./dom.js";

const COLUMNS = [
  { key: "Invocations", label: "Invocations", color: COLORS.invocations, total: sum, fmt: fmtCount },
  { key: "Errors", label: "Errors", color: COLORS.errors, total: sum, fmt: fmtCount },
  // The range's p99, from the server (one distribution), not the highest minute's.
  { key: "DurationP99", label: "p99 duration", color: COLORS.p99, total: null, fmt: fmtMs },
  { key: "Throttles", label: "Throttles", color: COLORS.throttles, total: sum, fmt: fmtCount },
];

export function mount(root, ctx) {
  const body = h("tbody");
  const summary = h("p", { class: "summary", id: "functions-summary" });
  const empty = h("div");
  root.append(
    h("h1", {}, "Functions"),
    summary,
    h("table", { class: "grid", id: "functions-table" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Function"), h("th", {}, "Runtime"), h("th", { class: "num" }, "Memory"),
        COLUMNS.map((c) => h("th", { class: "num" }, c.label)),
        h("th", { class: "num" }, "Cost"))),
      body),
    empty,
  );

  async function refresh() {
    const minutes = ctx.minutes();
    // The start of the first of the minutes the points cover: cost over the same minutes.
    const since = (Math.floor(Date.now() / 60000) - minutes + 1) * 60;
    const [functions, metrics, cost] = await Promise.all([
      listFunctions(),
      api("/_nimbus/metrics", { Minutes: minutes }),
      api("/_nimbus/cost", { Since: since }),
    ]);
    const points = new Map(metrics.Functions.map((f) => [f.FunctionName, f.Points]));
    const p99s = new Map(metrics.Functions.map((f) => [f.FunctionName, f.DurationP99]));
    const costs = new Map(cost.Functions.map((f) => [f.FunctionName, f]));
    functions.sort((a, b) => a.FunctionName.localeCompare(b.FunctionName));
    body.replaceChildren(...functions.map((fn) => row(fn, points.get(fn.FunctionName) || [],
                                                      costs.get(fn.FunctionName),
                                                      p99s.get(fn.FunctionName), ctx)));
    const total = sum(metrics.Functions.flatMap((f) => f.Points.map((p) => p.Invocations)));
    summary.textContent = `${functions.length} function${functions.length === 1 ? "" : "s"}, `
      + `${fmtCount(total)} invocations and ${fmtCost(cost.Total.TotalCost, cost.Total.Currency)} `
      + `(as priced on Lambda) in the last ${ctx.rangeLabel()}.`;
    empty.replaceChildren(functions.length ? "" : notice(
      "No functions yet. Create one with `aws lambda create-function` or `nimbus deploy`, "
      + "invoke it, and it shows up here."));
  }

  return { refresh, destroy() {} };
}

function row(fn, points, cost, p99, ctx) {
  const name = fn.FunctionName;
  const cells = COLUMNS.map((c) => {
    const values = points.map((p) => p[c.key]);
    const total = c.total ? c.total(values) : p99;
    const strong = c.key === "Errors" && total > 0 ? "bad" : "";
    return h("td", { class: "num metric", "data-metric": c.key },
      h("span", { class: "figure " + strong }, c.fmt(total)),
      sparkline(values, c.color, `${c.label} per minute, ${name}`));
  });
  const costValues = points.map((p) => p.Cost);
  return h("tr", { "data-function": name },
    h("td", {}, h("a", { href: ctx.link("function", name) }, name)),
    h("td", {}, fn.Runtime || fn.PackageType || "–"),
    h("td", { class: "num" }, `${fn.MemorySize} MB`),
    cells,
    h("td", { class: "num metric", "data-metric": "Cost" },
      h("span", { class: "figure" }, cost ? fmtCost(cost.TotalCost, cost.Currency) : fmtCost(0)),
      sparkline(costValues, COLORS.cost, `Cost per minute, ${name}`)));
}
