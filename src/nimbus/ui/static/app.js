// The dashboard's shell: the views by URL fragment (#/functions, #/functions/NAME,
// #/map, #/queues), the time range and auto-refresh pickers (kept in localStorage), and
// the refresh loop (skipped while a refresh runs or the tab is hidden).

import { api, fmtTime, h, notice } from "./dom.js";
import * as functionView from "./function.js";
import * as functionsView from "./functions.js";
import * as queuesView from "./queues.js";
import * as mapView from "./servicemap.js";

const RANGES = [[15, "15 minutes"], [60, "hour"], [180, "3 hours"], [360, "6 hours"],
                [720, "12 hours"], [1440, "24 hours"]];
const REFRESHES = [[0, "off"], [5, "5 s"], [10, "10 s"], [30, "30 s"], [60, "1 min"]];

const state = {
  minutes: Number(localStorage.getItem("nimbus.minutes")) || 60,
  refresh: Number(localStorage.getItem("nimbus.refresh") ?? 10),
};
if (!RANGES.some(([m]) => m === state.minutes)) state.minutes = 60;
if (!REFRESHES.some(([r]) => r === state.refresh)) state.refresh = 10;

const main = document.getElementById("view");
const status = document.getElementById("status");
let current = null;
let running = false;
let timer = null;

const ctx = {
  minutes: () => state.minutes,
  rangeLabel: () => RANGES.find(([m]) => m === state.minutes)[1],
  link(kind, name) {
    if (kind === "function") return "#/functions/" + encodeURIComponent(name);
    return "#/" + kind;
  },
  navigate(hash) {
    location.hash = hash;
  },
  replaceParams(params) {
    const [path] = location.hash.split("?");
    history.replaceState(null, "", path + "?" + new URLSearchParams(params));
  },
};

function route() {
  const [path, query] = (location.hash.slice(1) || "/functions").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  if (parts[0] === "functions" && parts[1]) {
    return { nav: "functions", mount: (el) => functionView.mount(el, ctx, parts[1], params) };
  }
  if (parts[0] === "map") return { nav: "map", mount: (el) => mapView.mount(el, ctx) };
  if (parts[0] === "queues") return { nav: "queues", mount: (el) => queuesView.mount(el, ctx) };
  return { nav: "functions", mount: (el) => functionsView.mount(el, ctx) };
}

async function refresh() {
  if (!current || running) return;
  running = true;
  const view = current;
  status.textContent = "refreshing…";
  try {
    await view.refresh();
    if (view === current) {
      status.textContent = "updated " + fmtTime(Date.now());
      status.className = "";
      document.body.dataset.loaded = "true";
    }
  } catch (err) {
    status.textContent = "refresh failed: " + err.message;
    status.className = "bad";
    if (view === current && !main.querySelector(".notice.error")) {
      main.prepend(notice(err.message, "error"));
    }
  } finally {
    running = false;
  }
}

function show() {
  if (current) current.destroy();
  const r = route();
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === r.nav);
  }
  main.replaceChildren();
  delete document.body.dataset.loaded;
  current = r.mount(main);
  refresh();
}

function schedule() {
  clearInterval(timer);
  if (state.refresh > 0) {
    timer = setInterval(() => document.hidden || refresh(), state.refresh * 1000);
  }
}

function picker(id, options, value, onChange) {
  const select = h("select", { id }, options.map(([v, label]) =>
    h("option", { value: v, selected: v === value }, label)));
  select.addEventListener("change", () => onChange(Number(select.value)));
  return select;
}

function controls() {
  const box = document.getElementById("controls");
  box.append(
    h("label", {}, "Last ", picker("range", RANGES, state.minutes, (m) => {
      state.minutes = m;
      localStorage.setItem("nimbus.minutes", String(m));
      show();
    })),
    h("label", {}, "Refresh ", picker("refresh", REFRESHES, state.refresh, (r) => {
      state.refresh = r;
      localStorage.setItem("nimbus.refresh", String(r));
      schedule();
    })),
    h("button", { type: "button", onclick: refresh, title: "Refresh now" }, "↻"),
  );
  api("/session").then((session) => {
    if (session.Auth === "sigv4") {
      box.append(h("form", { method: "post", action: "/ui/logout" },
        h("button", { type: "submit" }, "Log out")));
    }
  }).catch(() => {});
}

controls();
window.addEventListener("hashchange", show);
document.addEventListener("visibilitychange", () => document.hidden || refresh());
schedule();
show();
