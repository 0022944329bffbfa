// One trace as a waterfall: every segment and subsegment a row, indented under what
// called it, its bar placed on the trace's timeline (GET /_nimbus/traces/{id}'s Tree).

import { fmtMs, h } from "./dom.js";

function num(v) {
  return typeof v === "number" ? v : null;
}

/** Rows in call order: a segment, its subsegments (nested), then the segments it called. */
function flatten(tree) {
  const rows = [];
  const visitSub = (doc, depth) => {
    rows.push(rowOf(doc, depth, "subsegment"));
    for (const sub of doc.subsegments || []) visitSub(sub, depth + 1);
  };
  const visit = (segment, depth) => {
    rows.push(rowOf(segment, depth, "segment"));
    for (const sub of segment.subsegments || []) visitSub(sub, depth + 1);
    for (const child of segment.children || []) visit(child, depth + 1);
  };
  for (const top of tree) visit(top, 0);
  return rows;
}

function rowOf(doc, depth, kind) {
  const start = num(doc.start_time);
  const end = num(doc.end_time) ?? start;
  return {
    name: String(doc.name ?? "?"),
    origin: doc.origin || (doc.namespace ? doc.namespace : ""),
    start,
    end,
    depth,
    kind,
    failed: Boolean(doc.error || doc.fault || doc.throttle),
    inProgress: Boolean(doc.in_progress),
    cold: doc.annotations && doc.annotations.cold_start === true,
  };
}

/** The waterfall of `trace` (one element of GetTrace's Traces). */
export function waterfall(trace) {
  const rows = flatten(trace.Tree || []).filter((r) => r.start !== null);
  const box = h("div", { class: "waterfall", id: "trace-waterfall", "data-trace": trace.Id });
  if (!rows.length) {
    box.append(h("p", { class: "notice empty" }, "This trace has no timed segments."));
    return box;
  }
  const t0 = Math.min(...rows.map((r) => r.start));
  const t1 = Math.max(...rows.map((r) => r.end));
  const span = Math.max(t1 - t0, 1e-6);
  box.append(h("div", { class: "wf-head" },
    h("span", {}, `Trace ${trace.Id}`),
    h("span", {}, `${rows.length} spans, ${fmtMs(span * 1000)}`)));
  for (const r of rows) {
    const bar = h("div", {
      class: `wf-bar ${r.kind}${r.failed ? " failed" : ""}`,
      title: `${r.name}: ${fmtMs((r.end - r.start) * 1000)}`
        + ` from +${fmtMs((r.start - t0) * 1000)}${r.inProgress ? " (in progress)" : ""}`,
    });
    bar.style.left = `${((r.start - t0) / span) * 100}%`;
    bar.style.width = `max(2px, ${((r.end - r.start) / span) * 100}%)`;
    const label = h("div", { class: "wf-label" },
      h("span", { class: "wf-name" }, r.name),
      r.origin ? h("span", { class: "wf-origin" }, r.origin) : null,
      r.cold ? h("span", { class: "tag cold" }, "cold") : null);
    label.style.paddingLeft = `${r.depth * 14 + 4}px`;
    box.append(h("div", { class: "wf-row" + (r.failed ? " failed" : "") },
      label,
      h("div", { class: "wf-track" }, bar),
      h("div", { class: "wf-dur" }, fmtMs((r.end - r.start) * 1000))));
  }
  return box;
}
