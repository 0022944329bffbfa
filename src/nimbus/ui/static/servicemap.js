// The service map of the traces active in the chosen range: callers on the left, what
// they call to their right, each node and edge with its count, errors and p50 latency.

import { api, fmtMs, h, notice, s } from "./dom.js";

const NODE_W = 200;
const NODE_H = 58;
const COL_GAP = 170;
const ROW_GAP = 34;
const ARC = 50; // how far above its nodes an edge that skips a column arcs
const TOP = 30 + ARC;
const FUNCTION = "AWS::Lambda::Function";

/** Columns by the longest path from a node nobody calls (cycles cut at the node count). */
function layout(nodes, edges) {
  const depth = new Map(nodes.map((n) => [n.Id, 0]));
  for (let pass = 0; pass < nodes.length; pass++) {
    let changed = false;
    for (const e of edges) {
      const next = Math.min((depth.get(e.From) ?? 0) + 1, nodes.length - 1);
      if (e.From !== e.To && next > (depth.get(e.To) ?? 0)) {
        depth.set(e.To, next);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = [];
  for (const n of [...nodes].sort((a, b) => a.Name.localeCompare(b.Name))) {
    const d = depth.get(n.Id);
    (columns[d] = columns[d] || []).push(n);
  }
  const place = new Map();
  columns.filter(Boolean).forEach((col, ci) => col.forEach((n, ri) => place.set(n.Id, {
    x: 20 + ci * (NODE_W + COL_GAP), y: TOP + ri * (NODE_H + ROW_GAP),
  })));
  const width = 40 + columns.length * (NODE_W + COL_GAP) - COL_GAP;
  const height = TOP + 20 + Math.max(...columns.filter(Boolean).map((c) => c.length)) * (NODE_H + ROW_GAP);
  return { place, width, height };
}

function stats(item) {
  const err = item.Errors ? ` · ${item.Errors} err` : "";
  return `${item.Count} · p50 ${fmtMs(item.P50Ms)}${err}`;
}

function truncate(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

export function drawMap(map, ctx) {
  const { place, width, height } = layout(map.Nodes, map.Edges);
  const svg = s("svg", { class: "service-map", id: "service-map-svg", width, height,
                         viewBox: `0 0 ${width} ${height}` });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#64748b" }))));
  for (const e of map.Edges) {
    const a = place.get(e.From);
    const b = place.get(e.To);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x;
    const y2 = b.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    let d;
    let labelY;
    if (x2 > x1 && x2 - x1 <= COL_GAP + 1) { // the next column: an S-curve between the two
      d = `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`;
      labelY = (y1 + y2) / 2 - 20;
    } else { // further, or backwards: an arc over the nodes in between
      const top = Math.min(a.y, b.y) - ARC;
      d = `M ${x1} ${y1} C ${x1 + 80} ${top}, ${x2 - 80} ${top}, ${x2} ${y2}`;
      labelY = 0.25 * (y1 + y2) / 2 + 0.75 * top - 16;
    }
    svg.append(s("g", { class: "edge" + (e.Errors ? " failed" : ""), "data-from": e.From,
                        "data-to": e.To },
      s("path", { d, fill: "none", "marker-end": "url(#arrow)" }),
      s("text", { x: mid, y: labelY, "text-anchor": "middle" },
        s("tspan", { x: mid }, `${e.Count} call${e.Count === 1 ? "" : "s"}`
          + (e.Errors ? ` · ${e.Errors} err` : "")),
        s("tspan", { x: mid, dy: 13 }, `p50 ${fmtMs(e.P50Ms)}`))));
  }
  for (const n of map.Nodes) {
    const p = place.get(n.Id);
    const ratio = n.Count ? n.Errors / n.Count : 0;
    const health = ratio === 0 ? "ok" : ratio < 0.1 ? "warn" : "bad";
    const isFunction = n.Type === FUNCTION;
    const group = s("g", { class: `node ${health}${isFunction ? " function" : ""}`,
                           "data-node": n.Id, transform: `translate(${p.x},${p.y})` },
      s("title", {}, `${n.Name} (${n.Type})`),
      s("rect", { width: NODE_W, height: NODE_H, rx: 8 }),
      s("text", { x: 12, y: 20, class: "name" }, truncate(n.Name, 26)),
      s("text", { x: 12, y: 36, class: "type" }, truncate(n.Type, 30)),
      s("text", { x: 12, y: 51, class: "stats" }, n.Count ? stats(n) : ""));
    if (isFunction) {
      group.addEventListener("click", () => ctx.navigate(ctx.link("function", n.Name)));
    }
    svg.append(group);
  }
  return svg;
}

export function mount(root, ctx) {
  const holder = h("div", { class: "card map-holder", id: "service-map" });
  const caption = h("p", { class: "summary" });
  root.append(h("h1", {}, "Service map"), caption, holder);

  async function refresh() {
    const map = await api("/_nimbus/service-map", { Minutes: ctx.minutes() });
    caption.textContent = `${map.Nodes.length} nodes and ${map.Edges.length} edges from the `
      + `traces of the last ${ctx.rangeLabel()}. Click a function to open it.`;
    holder.replaceChildren(map.Nodes.length ? drawMap(map, ctx) : notice(
      "No traces in this range. Traces are recorded for functions with TracingConfig Mode "
      + "Active, and for calls that carry a sampled X-Amzn-Trace-Id."));
  }

  return { refresh, destroy() {} };
}
