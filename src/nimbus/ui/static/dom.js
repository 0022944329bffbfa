// Small helpers shared by the dashboard's views: building elements (text is always set
// as text, never parsed as HTML: log lines and names are data), formatting, and calling
// the dashboard's API.

const SVG = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.setAttribute("class", value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An HTML element: h("a", {href: "#/"}, "text", otherElement). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

export function fmtCount(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n));
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms >= 60000) return (ms / 60000).toFixed(1) + " min";
  if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
  if (ms >= 10) return ms.toFixed(0) + " ms";
  return ms.toFixed(2) + " ms";
}

export function fmtCost(amount, currency = "USD") {
  if (amount === null || amount === undefined) return "–";
  const sign = currency === "USD" ? "$" : currency + " ";
  if (amount === 0) return sign + "0";
  if (amount < 0.01) return sign + amount.toPrecision(2);
  return sign + amount.toFixed(2);
}

export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return Math.round(seconds) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}

export function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

export function fmtDateTime(ms) {
  const d = new Date(ms);
  return d.toLocaleDateString() + " " + d.toLocaleTimeString([], { hour12: false });
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET /ui/api<path>?params as JSON; a lost session goes back to the login page. */
export async function api(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined) query.set(k, String(v));
  }
  const url = "/ui/api" + path + (query.size ? "?" + query : "");
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) {
    location.href = "/ui/login";
    throw new ApiError(401, "Your dashboard session ended: log in again.");
  }
  if (!response.ok) {
    const message = body && (body.Message || body.message);
    throw new ApiError(response.status, message || `${url} answered ${response.status}`);
  }
  return body;
}

/** Every function, following ListFunctions' pages. */
export async function listFunctions() {
  const out = [];
  let marker = null;
  do {
    const page = await api("/2015-03-31/functions", { MaxItems: 50, Marker: marker });
    out.push(...page.Functions);
    marker = page.NextMarker || null;
  } while (marker);
  return out;
}

export function sum(values) {
  return values.reduce((acc, v) => acc + (v || 0), 0);
}

/** A message block for an empty table or a failed load; `backquoted` parts as code. */
export function notice(text, kind = "empty") {
  const parts = String(text).split("`").map((part, i) => (i % 2 ? h("code", {}, part) : part));
  return h("p", { class: "notice " + kind }, parts);
}
