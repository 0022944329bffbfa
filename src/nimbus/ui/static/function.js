// One function: its metrics over the chosen range, its recent invocations, and for the
// one selected (the newest, until another is clicked) its log lines and trace waterfall.

import { COLORS, timeChart } from "./charts.js";
import { api, ApiError, fmtCost, fmtCount, fmtDateTime, fmtMs, h, notice, sum } from "./dom.js";
import { waterfall } from "./waterfall.js";

const CHARTS = [
  {
    id: "invocations", title: "Invocations", yLabel: "per minute",
    series: [
      { key: "Invocations", label: "Invocations", color: COLORS.invocations, fill: true },
      { key: "Errors", label: "Errors", color: COLORS.errors },
      { key: "Throttles", label: "Throttles", color: COLORS.throttles },
    ],
    totals: (pts) => [["Invocations", sum(pts.map((p) => p.Invocations)), fmtCount],
                      ["Errors", sum(pts.map((p) => p.Errors)), fmtCount],
                      ["Throttles", sum(pts.map((p) => p.Throttles)), fmtCount]],
  },
  {
    id: "duration", title: "Duration", yLabel: "ms",
    series: [
      { key: "DurationP50", label: "p50", color: COLORS.p50, fmt: fmtMs, points: true },
      { key: "DurationP99", label: "p99", color: COLORS.p99, fmt: fmtMs, points: true },
    ],
    // The range's percentiles (one distribution, from the server), not a minute's.
    totals: (pts, fn) => [["p50", fn.DurationP50 ?? null, fmtMs],
                          ["p99", fn.DurationP99 ?? null, fmtMs]],
  },
  {
    id: "cost", title: "Cost", hint: "What these invocations would cost on Lambda, at the "
      + "server's [pricing] table (Lambda's us-east-1 prices by default)",
    yLabel: "USD", yFmt: (v) => (!v ? "0" : v < 0.001 ? v.toExponential(1) : v.toPrecision(2)),
    series: [{ key: "Cost", label: "Cost", color: COLORS.cost, fill: true, fmt: (v) => fmtCost(v) }],
    totals: (pts) => [["Cost", sum(pts.map((p) => p.Cost)), fmtCost],
                      ["GB-s", sum(pts.map((p) => p.GBSeconds)), (v) => v.toFixed(3)]],
  },
];

export function mount(root, ctx, name, params) {
  const enc = encodeURIComponent(name);
  let selected = params.get("request");
  let shownDetail = null; // what the detail panel shows: "<request>|<trace or ''>"
  const config = h("p", { class: "summary", id: "function-config" }, "Loading…");
  const charts = CHARTS.map((spec) => {
    const totals = h("span", { class: "totals" });
    const card = h("section", { class: "card chart", id: `chart-${spec.id}` },
      h("h2", { title: spec.hint || null }, spec.title, totals));
    return { spec, card, totals, chart: timeChart(card, spec) };
  });
  const rows = h("tbody");
  const invocations = h("section", { class: "card" },
    h("h2", {}, "Recent invocations"),
    h("table", { class: "grid", id: "invocations-table" },
      h("thead", {}, h("tr", {}, ["Time", "Request id", "Status", "Duration", "Billed",
        "Memory used", "Start", "Trace"].map((t) => h("th", {}, t)))),
      rows));
  const logs = h("div", { class: "logs", id: "invocation-logs" });
  const trace = h("div", { id: "invocation-trace" });
  const detailTitle = h("h2", {}, "Invocation");
  root.append(
    h("p", { class: "crumbs" }, h("a", { href: ctx.link("functions") }, "Functions"), " / "),
    h("h1", {}, name),
    config,
    h("div", { class: "charts" }, charts.map((c) => c.card)),
    invocations,
    h("section", { class: "card", id: "invocation-detail" }, detailTitle,
      h("div", { class: "detail" }, h("div", {}, h("h3", {}, "Log"), logs),
        h("div", {}, h("h3", {}, "Trace"), trace))),
  );

  async function refresh() {
    const [conf, metrics, recent] = await Promise.all([
      api(`/2015-03-31/functions/${enc}/configuration`),
      api("/_nimbus/metrics", { FunctionName: name, Minutes: ctx.minutes() }),
      api(`/functions/${enc}/invocations`, { Limit: 50 }),
    ]);
    config.textContent = [conf.Runtime || conf.PackageType, `${conf.MemorySize} MB`,
      `timeout ${conf.Timeout} s`, `tracing ${conf.TracingConfig ? conf.TracingConfig.Mode : "PassThrough"}`,
      conf.Architectures ? conf.Architectures.join(", ") : null, `state ${conf.State || "Active"}`,
      `last modified ${conf.LastModified}`].filter(Boolean).join(" · ");
    const summary = metrics.Functions.length ? metrics.Functions[0] : {};
    const points = summary.Points || [];
    for (const c of charts) {
      c.chart.update(points);
      c.totals.replaceChildren(...c.spec.totals(points, summary).map(([label, value, fmt]) =>
        h("span", { class: "total", "data-total": label, "data-value": value ?? "" },
          `${label} ${value === null ? "–" : fmt(value)}`)));
    }
    const items = recent.Invocations;
    if (!selected && items.length) selected = items[0].RequestId;
    rows.replaceChildren(...items.map((inv) => invocationRow(inv, inv.RequestId === selected)));
    if (!items.length) {
      rows.append(h("tr", {}, h("td", { colspan: 8 }, notice("No invocations in the logs yet."))));
    }
    const current = items.find((i) => i.RequestId === selected);
    if (current) await showDetail(current);
  }

  function invocationRow(inv, isSelected) {
    const ok = inv.Status === "Success";
    const tr = h("tr", { class: "clickable" + (isSelected ? " selected" : ""),
                         "data-request": inv.RequestId, "data-status": ok ? "ok" : "error",
                         onclick: () => select(inv.RequestId) },
      h("td", {}, fmtDateTime(inv.Timestamp)),
      h("td", { class: "mono" }, inv.RequestId),
      h("td", {}, h("span", { class: "tag " + (ok ? "ok" : "bad") }, ok ? "OK" : inv.Status)),
      h("td", { class: "num" }, fmtMs(inv.DurationMs)),
      h("td", { class: "num" }, `${inv.BilledMs} ms`),
      h("td", { class: "num" }, `${inv.MaxMemoryUsed} / ${inv.MemorySize} MB`),
      h("td", {}, inv.Cold ? h("span", { class: "tag cold", title: `Init ${fmtMs(inv.InitMs)}` },
        `cold (${fmtMs(inv.InitMs)})`) : h("span", { class: "tag warm" }, "warm")),
      h("td", {}, inv.TraceId ? h("span", { class: "mono small" }, inv.TraceId.slice(0, 12) + "…")
        : "–"));
    return tr;
  }

  async function select(requestId) {
    selected = requestId;
    ctx.replaceParams({ request: requestId });
    for (const tr of rows.querySelectorAll("tr[data-request]")) {
      tr.classList.toggle("selected", tr.dataset.request === requestId);
    }
    await refresh();
  }

  async function showDetail(inv) {
    const key = `${inv.RequestId}|${inv.TraceId || ""}`;
    if (key === shownDetail) return;
    detailTitle.textContent = `Invocation ${inv.RequestId}`;
    const found = await api(`/_nimbus/functions/${enc}/logs`,
      { RequestId: inv.RequestId, Events: "true", Limit: 1 });
    logs.replaceChildren(...(found.Events || []).map((e) =>
      h("div", { class: `line level-${String(e.level).toLowerCase()}` },
        h("span", { class: "level" }, e.level), h("span", { class: "msg" }, e.message))));
    if (!(found.Events || []).length) logs.append(notice("This invocation logged nothing."));
    if (!inv.TraceId) {
      trace.replaceChildren(notice("No trace was recorded for this invocation: set the "
        + "function's TracingConfig Mode to Active, or call it with a sampled trace header."));
    } else {
      try {
        const got = await api(`/_nimbus/traces/${encodeURIComponent(inv.TraceId)}`);
        trace.replaceChildren(waterfall(got.Traces[0]));
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        trace.replaceChildren(notice(err.message, "error"));
      }
    }
    shownDetail = key;
  }

  return { refresh, destroy() { charts.forEach((c) => c.chart.destroy()); } };
}
