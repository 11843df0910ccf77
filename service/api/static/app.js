// diggan dashboard: plain JS modules, no build step. Talks to the same /v1 API as any client.
// This file: the API key box, the banner, and hash routing to the views (view-*.js).
// All API text is put in the page with textContent, never as HTML.

import { apiKey, forgetKey, hooks, isAbort, saveKey } from "./api.js";
import { card, h } from "./dom.js";
import { datasetsView } from "./view-datasets.js";
import { jobView } from "./view-job.js";
import { jobsView } from "./view-jobs.js";
import { newJobView } from "./view-new-job.js";

const main = document.getElementById("view");
const banner = document.getElementById("banner");
let bannerIsAuth = false;

function authBanner(detail) {
  bannerIsAuth = true;
  banner.replaceChildren(
    h("strong", {}, apiKey() ? "The API key was refused. " : "This server needs an API key. "),
    `${detail} — paste your key (dgk.…) in the box at the top right and press Save.`,
  );
  banner.hidden = false;
  document.getElementById("keyform").classList.add("attention");
}

function clearAuthBanner() {
  if (!bannerIsAuth) return;
  bannerIsAuth = false;
  banner.hidden = true;
  document.getElementById("keyform").classList.remove("attention");
}

hooks.unauthorized = authBanner;
hooks.authorized = clearAuthBanner;

function setupKeyBox() {
  const input = document.getElementById("apikey");
  const state = document.getElementById("keystate");
  const show = () => {
    input.value = "";
    input.placeholder = apiKey() ? "a key is saved in this browser" : "not needed on a local server";
    state.textContent = apiKey() ? "✓ key saved" : "";
  };
  document.getElementById("keyform").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) { input.focus(); return; }
    saveKey(key);
    show();
    route(); // reload the page's data with the key
  });
  document.getElementById("forgetkey").addEventListener("click", () => {
    forgetKey();
    show();
    route();
  });
  show();
}

// ------------------------------------------------------------------ views and routing

// Each view gets a context whose signal/timers end when the user navigates away.
function newContext() {
  const ctrl = new AbortController();
  const timers = new Set();
  const ctx = {
    main,
    signal: ctrl.signal,
    alive: () => !ctrl.signal.aborted,
    // Run fn every `ms` after the previous run finished (never overlapping).
    every(ms, fn) {
      const tick = async () => {
        if (!ctx.alive()) return;
        try { await fn(); } finally {
          if (ctx.alive()) timers.add(setTimeout(tick, ms));
        }
      };
      timers.add(setTimeout(tick, ms));
    },
    sleep: (ms) => new Promise((resolve) => timers.add(setTimeout(resolve, ms))),
    end() { ctrl.abort(); timers.forEach(clearTimeout); timers.clear(); },
  };
  return ctx;
}

let current = null;

const ROUTES = [
  [/^#\/jobs\/(job_[A-Za-z0-9]+)$/, (ctx, m) => jobView(ctx, m[1]), "jobs"],
  [/^#\/jobs\/?$/, (ctx) => jobsView(ctx), "jobs"],
  [/^#\/datasets\/?$/, (ctx) => datasetsView(ctx), "datasets"],
  [/^#\/new\/?(?:\?(.*))?$/, (ctx, m) => newJobView(ctx, new URLSearchParams(m[1] || "")), "new"],
];

function route() {
  if (current) current.end();
  current = newContext();
  const hash = location.hash || "#/jobs";
  main.replaceChildren();
  for (const [re, view, nav] of ROUTES) {
    const m = re.exec(hash);
    if (!m) continue;
    document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
    const ctx = current;
    Promise.resolve(view(ctx, m)).catch((e) => {
      if (!isAbort(e) && ctx.alive()) main.append(h("div", { class: "msg error", role: "alert" }, e.message));
    });
    return;
  }
  main.append(card("Page not found", h("p", {}, "Nothing here. ", h("a", { href: "#/jobs" }, "Back to the jobs."))));
}

setupKeyBox();
window.addEventListener("hashchange", route);
if (!location.hash) history.replaceState(null, "", "#/jobs");
route();
