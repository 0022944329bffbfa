// Charts: uPlot time series for the function page, and tiny SVG sparklines for the
// functions table (dozens of rows: an SVG polyline each is lighter than a canvas each).

import { h, s } from "./dom.js";

export const COLORS = {
  invocations: "#2563eb",
  errors: "#dc2626",
  throttles: "#d97706",
  p50: "#0d9488",
  p99: "#7c3aed",
  cost: "#059669",
  gbs: "#64748b",
};

/**
 * A uPlot chart of 1-minute points in `el`.
 * series: [{label, key, color, fmt}] read from each point by key.
 */
export function timeChart(el, { series, yLabel, yFmt }) {
  let plot = null;
  let last = null;
  const holder = h("div", { class: "plot" });
  el.append(holder);

  function options(width) {
    return {
      width,
      height: 180,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: "#475569", grid: { stroke: "#e2e8f0" } },
        { stroke: "#475569", grid: { stroke: "#e2e8f0" }, label: yLabel, size: 70,
          values: (u, ticks) => ticks.map((v) => (yFmt ? yFmt(v) : v)) },
      ],
      series: [
        {},
        ...series.map((sr) => ({
          label: sr.label,
          stroke: sr.color,
          width: 2,
          fill: sr.fill ? sr.color + "22" : undefined,
          spanGaps: false,
          // Percentiles have gaps (minutes without invocations): dots keep a lone minute seen.
          points: sr.points ? { show: true, size: 5, fill: sr.color } : { show: false },
          value: (u, v) => (v === null || v === undefined ? "–" : sr.fmt ? sr.fmt(v) : v),
        })),
      ],
    };
  }

  function dataOf(points) {
    return [
      points.map((p) => p.Timestamp / 1000),
      ...series.map((sr) => points.map((p) => p[sr.key])),
    ];
  }

  const resize = new ResizeObserver(() => {
    if (plot && holder.clientWidth && Math.abs(holder.clientWidth - plot.width) > 4) {
      plot.setSize({ width: holder.clientWidth, height: 180 });
    }
  });
  resize.observe(holder);

  return {
    update(points) {
      last = dataOf(points);
      if (!plot) {
        plot = new uPlot(options(holder.clientWidth || 400), last, holder);
      } else {
        plot.setData(last);
      }
    },
    destroy() {
      resize.disconnect();
      if (plot) plot.destroy();
    },
  };
}

/** A sparkline of `values` (nulls break the line), 120 x 28, with a title. */
export function sparkline(values, color, title) {
  const width = 120;
  const height = 28;
  const present = values.filter((v) => v !== null && v !== undefined);
  const top = present.length ? Math.max(...present) : 0;
  const svg = s("svg", {
    class: "spark",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": title,
  });
  svg.append(s("title", {}, title));
  if (!values.length) return svg;
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const y = (v) => (top > 0 ? height - 2 - (v / top) * (height - 4) : height - 2);
  let segment = [];
  const flush = () => {
    if (segment.length) {
      svg.append(s("polyline", { points: segment.join(" "), fill: "none", stroke: color,
                                 "stroke-width": 1.5, "stroke-linejoin": "round" }));
    }
    segment = [];
  };
  values.forEach((v, i) => {
    if (v === null || v === undefined) flush();
    else segment.push(`${(i * step).toFixed(1)},${y(v).toFixed(1)}`);
  });
  flush();
  return svg;
}
