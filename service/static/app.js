// diggan dashboard: plain JS, no build step. Talks to the same /v1 API as any client.
//
// Auth: the API key lives in localStorage and goes out as an `Authorization: Bearer` header,
// so every request is a fetch()/XHR (never a bare <img src> or EventSource, which cannot send
// headers): images become blob: URLs and the job's event stream is read with fetch streaming.
// That also keeps keys out of URLs and server logs. All API text is put in the page with
// textContent, never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "diggan.apiKey";
  const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
  const main = document.getElementById("view");

  // ------------------------------------------------------------------ DOM helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  const card = (title, ...body) => h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...body);

  function field(label, input, hint) {
    const note = hint instanceof Node ? hint : hint ? h("small", { class: "hint" }, hint) : null;
    return h("label", { class: "field" }, h("span", { class: "flabel" }, label), input, note);
  }

  // A box that shows an API error (its `detail`) or any message; hidden when empty.
  function messageBox(kind = "error") {
    const el = h("div", { class: `msg ${kind}`, role: kind === "error" ? "alert" : "status", hidden: true });
    el.show = (what, extra) => {
      const text = what instanceof Error ? what.message : String(what);
      el.replaceChildren(h("div", {}, text), extra || null);
      el.hidden = false;
    };
    el.clear = () => { el.hidden = true; el.replaceChildren(); };
    return el;
  }

  function progressBar() {
    const fill = h("div", { class: "fill" });
    const label = h("span", { class: "plabel" });
    const bar = h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0 }, fill, label);
    bar.set = (fraction, text, status) => {
      const pct = Math.max(0, Math.min(100, 100 * (Number(fraction) || 0)));
      fill.style.width = `${pct}%`;
      bar.setAttribute("aria-valuenow", pct.toFixed(1));
      label.textContent = text;
      label.classList.toggle("onfill", pct > 55); // white text where the fill is behind it
      bar.dataset.status = status || "";
    };
    return bar;
  }

  const badge = (status) => h("span", { class: `badge s-${status}` }, status);

  // ------------------------------------------------------------------ formatting

  function fmtNum(x, digits = 3) {
    if (x === null || x === undefined || !Number.isFinite(Number(x))) return "–";
    x = Number(x);
    if (x === 0) return "0";
    const a = Math.abs(x);
    if (a >= 1e5 || a < 1e-3) return x.toExponential(2);
    return String(Number(x.toPrecision(digits)));
  }
  const fmtKimg = (x) => (x === null || x === undefined ? "–" : String(+Number(x).toFixed(3)));
  function fmtPct(f) {
    const pct = 100 * Math.max(0, Math.min(1, Number(f) || 0));
    return pct > 0 && pct < 10 ? `${pct.toFixed(1)}%` : `${Math.floor(pct)}%`; // never "0%" once it has started
  }

  function fmtDuration(s) {
    if (s === null || s === undefined || !Number.isFinite(Number(s))) return "–";
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    const hr = Math.floor(m / 60);
    if (hr < 48) return `${hr} h ${String(m % 60).padStart(2, "0")} min`;
    return `${Math.floor(hr / 24)} d ${hr % 24} h`;
  }

  function fmtBytes(n) {
    if (!Number.isFinite(Number(n))) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    n = Number(n);
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  const fmtDate = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

  // '0-3,7' -> [0,1,2,3,7], as gan_core.sampling.parse_seeds; throws with a message to show.
  function parseSeeds(spec, max) {
    const seeds = [];
    for (let part of String(spec).split(",")) {
      part = part.trim();
      if (!part) continue;
      const m = /^(\d+)\s*(?:-\s*(\d+))?$/.exec(part);
      if (!m) throw new Error(`"${part}" is not a seed or a range; use e.g. 0-15 or 1,5,9`);
      const a = Number(m[1]);
      const b = m[2] === undefined ? a : Number(m[2]);
      if (b < a) throw new Error(`seed range "${part}" runs backwards`);
      if (seeds.length + (b - a + 1) > max) throw new Error(`at most ${max} seeds at once`);
      for (let s = a; s <= b; s++) seeds.push(s);
    }
    if (!seeds.length) throw new Error("no seeds given; use e.g. 0-15 or 1,5,9");
    return seeds;
  }

  function randomKey() {
    const b = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // ------------------------------------------------------------------ API access

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  const apiKey = () => localStorage.getItem(KEY_STORAGE) || "";

  function authHeaders(extra) {
    const headers = new Headers(extra || {});
    const key = apiKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    return headers;
  }

  function apiError(status, statusText, body, retryAfter) {
    let detail = body && typeof body.detail === "string" ? body.detail : `${status} ${statusText || "error"}`;
    if (status === 429 && retryAfter && !/retry/i.test(detail)) detail += ` (retry in ${retryAfter} s)`;
    if (status === 401) authBanner(detail);
    return new ApiError(status, detail);
  }

  async function request(path, { method = "GET", json, body, headers, signal } = {}) {
    const hdrs = authHeaders(headers);
    if (json !== undefined) {
      hdrs.set("Content-Type", "application/json");
      body = JSON.stringify(json);
    }
    let resp;
    try {
      resp = await fetch(path, { method, headers: hdrs, body, signal, cache: "no-store" });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, `cannot reach the server (${e.message}); is it still running?`);
    }
    if (!resp.ok) {
      let payload = null;
      try { payload = await resp.json(); } catch { /* not JSON: use the status line */ }
      throw apiError(resp.status, resp.statusText, payload, resp.headers.get("Retry-After"));
    }
    clearAuthBanner();
    return resp;
  }

  const getJSON = async (path, opts) => (await request(path, opts)).json();
  const isAbort = (e) => e && e.name === "AbortError";

  // <img> elements whose pictures come from authenticated requests, as blob: URLs.
  const imgUrls = new WeakMap();
  async function loadImage(img, path, opts) {
    const resp = await request(path, opts);
    const url = URL.createObjectURL(await resp.blob());
    const old = imgUrls.get(img);
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the server sent an image the browser cannot show"));
      img.src = url;
    });
    if (old) URL.revokeObjectURL(old);
    imgUrls.set(img, url);
    img.hidden = false;
    return resp;
  }

  // Download an authenticated response as a file, with progress.
  async function download(path, fallbackName, onProgress, signal) {
    const resp = await request(path, { signal });
    const total = Number(resp.headers.get("Content-Length")) || 0;
    const m = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
    const reader = resp.body.getReader();
    const parts = [];
    let got = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      got += value.length;
      if (total) onProgress(got / total);
    }
    const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
    const a = h("a", { href: url, download: m ? m[1] : fallbackName, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  // Server-sent events over fetch (EventSource cannot send the key header).
  async function readEvents(path, onEvent, signal) {
    const resp = await request(path, { signal, headers: { Accept: "text/event-stream" } });
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue; // a comment: keep-alive
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (name === "event") event = val;
          else if (name === "data") data.push(val);
        }
        if (data.length) onEvent(event, JSON.parse(data.join("\n")));
      }
    }
  }

  // ------------------------------------------------------------------ API key box and banner

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
      localStorage.setItem(KEY_STORAGE, key);
      show();
      route(); // reload the page's data with the key
    });
    document.getElementById("forgetkey").addEventListener("click", () => {
      localStorage.removeItem(KEY_STORAGE);
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

  // ------------------------------------------------------------------ jobs list

  async function datasetNames(ctx) {
    const list = await getJSON("/v1/datasets", { signal: ctx.signal });
    return new Map(list.data.map((d) => [d.id, d.name]));
  }

  function jobProgressText(job) {
    const p = job.progress || {};
    return `${fmtPct(p.fraction)} · ${fmtKimg(p.kimg)} / ${fmtKimg(p.total_kimg)} kimg`;
  }

  async function jobsView(ctx) {
    main.append(h("div", { class: "pagehead" }, h("h1", {}, "Jobs"), h("a", { class: "button", href: "#/new" }, "New job")));
    const err = messageBox();
    const body = h("div", { class: "card flush", id: "jobs-table" }, h("p", { class: "muted pad" }, "Loading…"));
    main.append(err, body);
    const refresh = async () => {
      try {
        const [jobs, names] = await Promise.all([getJSON("/v1/jobs?limit=50", { signal: ctx.signal }), datasetNames(ctx)]);
        err.clear();
        body.replaceChildren(jobs.data.length ? jobsTable(jobs.data, names) : h("p", { class: "muted pad" },
          "No jobs yet. ", h("a", { href: "#/datasets" }, "Upload a dataset"), ", then ", h("a", { href: "#/new" }, "start a job"), "."));
      } catch (e) {
        if (!isAbort(e)) err.show(e);
      }
    };
    await refresh();
    ctx.every(2000, refresh);
  }

  function jobsTable(jobs, names) {
    const rows = jobs.map((j) => {
      const bar = progressBar();
      bar.classList.add("small");
      bar.set(j.progress.fraction, fmtPct(j.progress.fraction), j.status);
      const eta = j.status === "running" ? fmtDuration(j.progress.eta_seconds) : "–";
      return h("tr", { "data-job": j.id },
        h("td", {}, h("a", { href: `#/jobs/${j.id}`, class: "mono" }, j.id)),
        h("td", {}, names.get(j.dataset_id) || h("span", { class: "mono muted" }, j.dataset_id)),
        h("td", {}, j.config.preset || "–"),
        h("td", {}, badge(j.status)),
        h("td", { class: "pcell" }, bar),
        h("td", { class: "num" }, `${fmtKimg(j.progress.kimg)} / ${fmtKimg(j.progress.total_kimg)}`),
        h("td", { class: "num" }, eta),
        h("td", {}, fmtDate(j.created_at)));
    });
    return h("table", { class: "table" },
      h("thead", {}, h("tr", {}, ["Job", "Dataset", "Preset", "Status", "Progress", "kimg", "ETA", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows));
  }

  // ------------------------------------------------------------------ datasets

  async function datasetsView(ctx) {
    main.append(h("div", { class: "pagehead" }, h("h1", {}, "Datasets")));
    const fileInput = h("input", { type: "file", id: "dataset-files", multiple: true, accept: ".zip,image/*", class: "visually-hidden" });
    const nameInput = h("input", { type: "text", id: "dataset-name", maxlength: 200, placeholder: "from the file or folder name" });
    const resSelect = h("select", { id: "dataset-resolution" },
      h("option", { value: "" }, "from the images"), [32, 64, 128, 256, 512, 1024].map((r) => h("option", { value: r }, `${r}×${r}`)));
    const zone = h("div", { class: "dropzone", id: "dropzone", tabindex: 0, role: "button",
      "aria-label": "Drop a zip, image files or a folder here, or press Enter to choose files" },
      h("div", { class: "dz-big" }, "Drop a .zip, image files or a folder here"),
      h("div", { class: "muted" }, "or ", h("span", { class: "linkish" }, "choose files"), " — PNG, JPEG, WebP…; about 100 images is plenty"));
    const bar = progressBar();
    bar.hidden = true;
    const result = h("div", { id: "upload-result" });
    const list = h("div", { class: "card flush", id: "datasets-table" }, h("p", { class: "muted pad" }, "Loading…"));
    const listErr = messageBox();

    main.append(card("Upload a dataset", zone, fileInput,
      h("div", { class: "row" }, field("Name (optional)", nameInput), field("Resolution", resSelect, "square, power of two; images are resized")),
      bar, result), h("h2", { class: "section" }, "Your datasets"), listErr, list);

    const refresh = async () => {
      try {
        const ds = await getJSON("/v1/datasets", { signal: ctx.signal });
        listErr.clear();
        list.replaceChildren(ds.data.length ? datasetsTable(ds.data, refresh, listErr) : h("p", { class: "muted pad" }, "No datasets yet: drop some images above."));
      } catch (e) {
        if (!isAbort(e)) listErr.show(e);
      }
    };

    let busy = false;
    const upload = async (files, folderName) => {
      if (busy || !files.length) return;
      result.replaceChildren();
      const zips = files.filter((f) => /\.zip$/i.test(f.name));
      if (zips.length && files.length > 1) {
        result.append(h("div", { class: "msg error", role: "alert" }, "Send one .zip, or image files (or a folder) — not a zip together with other files."));
        return;
      }
      const form = new FormData();
      if (zips.length) form.append("file", zips[0], zips[0].name);
      else files.forEach((f) => form.append("files", f, f.name));
      const name = nameInput.value.trim() || folderName || (zips.length ? zips[0].name.replace(/\.zip$/i, "") : "");
      if (name) form.append("name", name);
      if (resSelect.value) form.append("resolution", resSelect.value);
      busy = true;
      zone.classList.add("busy");
      bar.hidden = false;
      const what = zips.length ? zips[0].name : `${files.length} file(s)`;
      bar.set(0, `Uploading ${what}…`);
      try {
        const ds = await uploadDataset(form, (f) => bar.set(f, f < 1 ? `Uploading ${what}… ${fmtPct(f)}` : "Checking the images…"));
        result.append(uploadSummary(ds));
        nameInput.value = "";
        await refresh();
      } catch (e) {
        result.append(h("div", { class: "msg error", role: "alert" }, h("strong", {}, "Upload refused: "), e.message));
      } finally {
        busy = false;
        zone.classList.remove("busy");
        bar.hidden = true;
        fileInput.value = "";
      }
    };

    zone.addEventListener("click", () => fileInput.click());
    zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); } });
    fileInput.addEventListener("change", () => upload(Array.from(fileInput.files || [])));
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", async (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      try {
        const { files, folder } = await droppedFiles(e.dataTransfer);
        await upload(files, folder);
      } catch (err) {
        result.replaceChildren(h("div", { class: "msg error", role: "alert" }, `Could not read the dropped files: ${err.message}`));
      }
    });
    await refresh();
  }

  // Files of a drop, folders walked recursively (Chrome, Firefox, Safari all have webkitGetAsEntry).
  async function droppedFiles(dt) {
    const entries = Array.from(dt.items || []).map((it) => (it.webkitGetAsEntry ? it.webkitGetAsEntry() : null)).filter(Boolean);
    if (!entries.length) return { files: Array.from(dt.files || []), folder: "" };
    const files = [];
    const walk = async (entry) => {
      if (entry.isFile) {
        files.push(await new Promise((res, rej) => entry.file(res, rej)));
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        for (;;) { // readEntries answers in batches until an empty one
          const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
          if (!batch.length) break;
          for (const child of batch) await walk(child);
        }
      }
    };
    for (const entry of entries) await walk(entry);
    const folder = entries.length === 1 && entries[0].isDirectory ? entries[0].name : "";
    return { files, folder };
  }

  // XHR rather than fetch: it reports upload progress.
  function uploadDataset(form, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/v1/datasets");
      const key = apiKey();
      if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) { clearAuthBanner(); resolve(body); }
        else reject(apiError(xhr.status, xhr.statusText, body, xhr.getResponseHeader("Retry-After")));
      };
      xhr.onerror = () => reject(new ApiError(0, "the upload did not reach the server (connection lost, or a proxy refused the size)"));
      xhr.send(form);
    });
  }

  function warningsList(warnings) {
    return h("ul", { class: "warnings" }, warnings.map((w) => h("li", {}, w)));
  }

  function uploadSummary(ds) {
    return h("div", { class: "msg ok", role: "status", "data-dataset": ds.id },
      h("div", {}, h("strong", {}, `Uploaded “${ds.name}”: `), `${ds.num_images} images at ${ds.resolution}×${ds.resolution}. `,
        h("a", { href: `#/new?dataset=${ds.id}` }, "Train on it →")),
      ds.warnings.length ? h("div", { class: "msg warn inner" }, h("strong", {}, `${ds.warnings.length} warning(s):`), warningsList(ds.warnings)) : null);
  }

  function datasetsTable(datasets, refresh, err) {
    const rows = datasets.map((d) => {
      const del = h("button", { class: "secondary small", type: "button" }, "Delete");
      del.addEventListener("click", async () => {
        if (!confirm(`Delete dataset “${d.name}” (${d.id})? Jobs already trained on it keep their checkpoints.`)) return;
        try { await request(`/v1/datasets/${d.id}`, { method: "DELETE" }); await refresh(); } catch (e) { err.show(e); }
      });
      const warn = d.warnings.length
        ? h("details", { class: "warncell" }, h("summary", {}, `⚠ ${d.warnings.length} warning(s)`), warningsList(d.warnings))
        : h("span", { class: "muted" }, "none");
      return h("tr", { "data-dataset": d.id },
        h("td", {}, h("strong", {}, d.name), h("div", { class: "mono muted" }, d.id)),
        h("td", { class: "num" }, d.num_images),
        h("td", { class: "num" }, `${d.resolution}×${d.resolution}`),
        h("td", { class: "num" }, fmtBytes(d.size_bytes)),
        h("td", {}, fmtDate(d.created_at)),
        h("td", {}, warn),
        h("td", { class: "actions" }, h("a", { class: "button small", href: `#/new?dataset=${d.id}` }, "Train"), del));
    });
    return h("table", { class: "table" },
      h("thead", {}, h("tr", {}, ["Dataset", "Images", "Resolution", "Size", "Uploaded", "Warnings", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows));
  }

  // ------------------------------------------------------------------ new job

  async function newJobView(ctx, params) {
    main.append(h("div", { class: "pagehead" }, h("h1", {}, "New training job")));
    const err = messageBox();
    main.append(err);
    let datasets, presets, regs;
    try {
      [datasets, presets, regs] = await Promise.all(["/v1/datasets", "/v1/presets", "/v1/regularizers"].map((p) => getJSON(p, { signal: ctx.signal })));
    } catch (e) {
      if (!isAbort(e)) err.show(e);
      return;
    }
    if (!datasets.data.length) {
      main.append(card(null, h("p", {}, "You have no dataset yet. ", h("a", { href: "#/datasets" }, "Upload one first."))));
      return;
    }
    const num = (id, attrs) => h("input", { type: "number", id, step: "any", ...attrs });
    const dsSelect = h("select", { id: "job-dataset", required: true },
      datasets.data.map((d) => h("option", { value: d.id, selected: d.id === params.get("dataset") }, `${d.name} — ${d.num_images} images, ${d.resolution}px`)));
    const presetSelect = h("select", { id: "job-preset" },
      Object.keys(presets.data).map((p) => h("option", { value: p, selected: p === presets.default }, p === presets.default ? `${p} (default)` : p)));
    const presetInfo = h("small", { class: "hint" });
    const kimg = num("job-kimg", { min: 0.001 });
    const augment = h("select", { id: "job-augment" }, h("option", { value: "" }, "preset default"),
      h("option", { value: "ada" }, "ADA (adaptive)"), h("option", { value: "diffaugment" }, "DiffAugment"), h("option", { value: "none" }, "none"));
    const seed = num("job-seed", { min: 0, step: 1, value: 0 });
    const kid = h("input", { type: "checkbox", id: "job-kid" });
    const fid = h("input", { type: "checkbox", id: "job-fid" });
    const numGen = num("job-metrics-num-gen", { min: 16, max: 50000, step: 1 });
    const tick = num("job-tick-kimg", { min: 0.001 });
    const snap = num("job-snapshot-kimg", { min: 0.001 });
    const batch = num("job-batch-size", { min: 1, max: 256, step: 1 });

    const regRows = regs.data.map((r) => {
      const on = h("input", { type: "checkbox", id: `reg-${r.name}`, "data-reg": r.name });
      const weight = num(`reg-${r.name}-weight`, { min: 0, "aria-label": `${r.name} weight` });
      on.addEventListener("change", () => { weight.disabled = !on.checked; });
      return { r, on, weight, row: h("div", { class: "reg" }, h("label", { class: "regname" }, on, h("span", { class: "mono" }, r.name)),
        h("label", { class: "regweight" }, "weight ", weight), h("small", { class: "hint regdesc" }, r.description)) };
    });

    const applyPreset = () => {
      const cfg = presets.data[presetSelect.value];
      const net = cfg.network || {};
      presetInfo.textContent = `${net.resolution}×${net.resolution} generator, batch ${cfg.batch_size}, ${fmtKimg(cfg.kimg)} kimg, `
        + `progress every ${fmtKimg(cfg.tick_kimg)} kimg, a checkpoint every ${fmtKimg(cfg.tick_kimg * cfg.snapshot_ticks)} kimg`;
      kimg.placeholder = fmtKimg(cfg.kimg);
      tick.placeholder = fmtKimg(cfg.tick_kimg);
      snap.placeholder = fmtKimg(cfg.tick_kimg * cfg.snapshot_ticks);
      batch.placeholder = cfg.batch_size;
      numGen.placeholder = cfg.metrics_num_gen;
      seed.value = cfg.seed ?? 0;
      kid.checked = (cfg.metrics || []).includes("kid");
      fid.checked = (cfg.metrics || []).includes("fid");
      augment.options[0].textContent = `preset default (${cfg.augment ? cfg.augment.kind : "?"})`;
      for (const { r, on, weight } of regRows) {
        const inPreset = (cfg.regularizers || []).find((x) => x.name === r.name);
        on.checked = Boolean(inPreset);
        weight.value = inPreset ? inPreset.weight : (r.default_weight ?? 1);
        weight.disabled = !on.checked;
      }
    };
    presetSelect.addEventListener("change", applyPreset);
    applyPreset();

    const submit = h("button", { type: "submit", id: "job-submit" }, "Start training");
    const form = h("form", { class: "card jobform", id: "job-form", novalidate: false },
      h("div", { class: "row" }, field("Dataset", dsSelect), field("Preset", presetSelect, presetInfo)),
      h("div", { class: "row" },
        field("Training length (kimg)", kimg, "thousands of real images shown to D; empty = the preset's"),
        field("Augmentation", augment), field("Seed", seed)),
      h("fieldset", {}, h("legend", {}, "Discriminator regularizers"), regRows.map((x) => x.row)),
      h("fieldset", {}, h("legend", {}, "Quality metrics at each checkpoint"),
        h("div", { class: "row" },
          h("label", { class: "check" }, kid, " KID (picks the “best” checkpoint)"),
          h("label", { class: "check" }, fid, " FID"),
          field("Generated images per metric", numGen, "fewer = faster, noisier"))),
      h("details", {}, h("summary", {}, "Schedule"),
        h("div", { class: "row" },
          field("Progress every (kimg)", tick), field("Checkpoint every (kimg)", snap), field("Batch size", batch))),
      h("div", { class: "formactions" }, submit));
    main.append(form);

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      err.clear();
      if (!form.reportValidity()) return;
      const body = { dataset_id: dsSelect.value, preset: presetSelect.value };
      const setNum = (key, input) => { if (input.value.trim() !== "") body[key] = Number(input.value); };
      setNum("kimg", kimg);
      setNum("seed", seed);
      setNum("tick_kimg", tick);
      setNum("snapshot_kimg", snap);
      setNum("batch_size", batch);
      if (augment.value) body.augment = augment.value;
      body.regularizers = regRows.filter((x) => x.on.checked).map(({ r, weight }) => {
        const spec = { name: r.name, weight: Number(weight.value || 0) };
        const inPreset = (presets.data[presetSelect.value].regularizers || []).some((x) => x.name === r.name);
        if (!inPreset && r.default_interval) spec.interval = r.default_interval; // the preset's own interval otherwise
        return spec;
      });
      body.metrics = [kid.checked ? "kid" : null, fid.checked ? "fid" : null].filter(Boolean);
      if (body.metrics.length) setNum("metrics_num_gen", numGen);
      submit.disabled = true;
      submit.textContent = "Starting…";
      try {
        const job = await getJSON("/v1/jobs", { method: "POST", json: body, headers: { "Idempotency-Key": randomKey() } });
        location.hash = `#/jobs/${job.id}`;
      } catch (ex) {
        err.show(ex);
        err.scrollIntoView({ block: "nearest" });
      } finally {
        submit.disabled = false;
        submit.textContent = "Start training";
      }
    });
  }

  // ------------------------------------------------------------------ one job

  function tile(label, id, title) {
    return h("div", { class: "tile", title: title || null }, h("div", { class: "tlabel" }, label), h("div", { class: "tvalue", id }, "–"));
  }

  function imagePanel(id, alt, empty) {
    const img = h("img", { id, alt, hidden: true });
    const note = h("p", { class: "muted", id: `${id}-note` }, empty);
    const err = messageBox();
    const wrap = h("div", { class: "imgwrap" }, img, note, err);
    return { img, note, err, wrap };
  }

  async function jobView(ctx, jobId) {
    const base = `/v1/jobs/${jobId}`;
    const st = { job: null, tick: null, lastTick: 0, ckpt: undefined, etaAt: 0, eta: null, names: new Map() };
    const sig = { signal: ctx.signal };

    // --- skeleton
    const statusBadge = h("span", { id: "job-status" });
    const cancelBtn = h("button", { type: "button", class: "danger", id: "job-cancel", disabled: true }, "Cancel job");
    const meta = h("p", { class: "muted", id: "job-meta" });
    const jobErr = messageBox();
    jobErr.id = "job-error";
    const liveNote = h("p", { class: "muted small", id: "live-note" }, "connecting to the live stream…");
    const bar = progressBar();
    bar.id = "job-progress";
    const progText = h("p", { class: "progtext", id: "job-progress-text" });
    const tiles = h("div", { class: "tiles" },
      tile("loss G", "t-loss-g"), tile("loss D", "t-loss-d"), tile("DIG", "t-dig", "the DigGAN gradient gap (smaller: D treats real and fake alike)"),
      tile("augment p", "t-aug"), tile("KID", "t-kid", "latest checkpoint's KID (lower is better)"), tile("FID", "t-fid", "latest checkpoint's FID (lower is better)"),
      tile("s / kimg", "t-speed"));
    const curves = imagePanel("curves", "training curves", "Curves appear after the first tick.");
    const grid = imagePanel("latest-grid", "latest sample grid", "The first sample grid comes with the first checkpoint.");
    const gridCaption = h("p", { class: "muted small", id: "latest-grid-caption" });
    const curvesRefresh = h("button", { type: "button", class: "secondary small" }, "Refresh");
    const curvesLink = h("a", { class: "small", target: "_blank", rel: "noopener", hidden: true }, "full size");

    // sampler
    const seedsIn = h("input", { type: "text", id: "sampler-seeds", value: "0-15", size: 10, spellcheck: "false" });
    const psiIn = h("input", { type: "number", id: "sampler-psi", value: 0.7, min: -2, max: 2, step: 0.05 });
    const ckptSel = h("select", { id: "sampler-checkpoint" }, h("option", { value: "latest" }, "latest"), h("option", { value: "best" }, "best"));
    const sampleBtn = h("button", { type: "button", id: "sampler-go", disabled: true }, "Generate grid");
    const sampleOut = imagePanel("sampler-grid", "generated samples", "");
    const seedA = h("input", { type: "number", id: "interp-a", value: 0, min: 0, step: 1 });
    const seedB = h("input", { type: "number", id: "interp-b", value: 1, min: 0, step: 1 });
    const frames = h("input", { type: "number", id: "interp-steps", value: 16, min: 2, max: 64, step: 1 });
    const interpBtn = h("button", { type: "button", id: "interp-go", disabled: true }, "Make GIF");
    const interpOut = imagePanel("interp-gif", "interpolation between two seeds", "");
    const interpSave = h("a", { class: "small", id: "interp-save", hidden: true }, "Save GIF");
    const samplerNote = h("p", { class: "muted small" }, "Available once the job has a checkpoint.");

    // memorization
    const memN = h("input", { type: "number", id: "mem-n", value: 8, min: 1, max: 32, step: 1 });
    const memBtn = h("button", { type: "button", id: "mem-go", disabled: true }, "Find nearest training images");
    const memOut = imagePanel("mem-grid", "generated samples beside their nearest training images", "");
    const memSummary = h("p", { id: "mem-summary" });

    const ckptBody = h("div", { id: "checkpoints" }, h("p", { class: "muted pad" }, "No checkpoint yet."));

    main.append(
      h("div", { class: "pagehead" }, h("h1", {}, "Job ", h("span", { class: "mono" }, jobId), " ", statusBadge), cancelBtn),
      meta, jobErr,
      card(null, bar, progText, tiles, liveNote),
      h("div", { class: "cols" },
        card(h("span", {}, "Training curves ", curvesRefresh, " ", curvesLink), curves.wrap),
        card("Latest samples", grid.wrap, gridCaption)),
      card("Sampler", samplerNote,
        h("div", { class: "row tools" }, field("Seeds", seedsIn, "e.g. 0-15 or 3,8,42"), field("ψ (truncation)", psiIn, "1 = full variety, lower = typical"),
          field("Checkpoint", ckptSel), h("div", { class: "field btnfield" }, sampleBtn)),
        sampleOut.wrap,
        h("h3", {}, "Interpolation"),
        h("div", { class: "row tools" }, field("From seed", seedA), field("To seed", seedB), field("Frames", frames), h("div", { class: "field btnfield" }, interpBtn)),
        interpOut.wrap, interpSave),
      card("Memorization check",
        h("p", { class: "muted small" }, "Each row: a generated sample, then its 3 nearest training images (Inception features, cosine distance). "
          + "Rows where a neighbour looks identical mean the generator is copying its training set. Runs Inception on the server: takes a while the first time."),
        h("div", { class: "row tools" }, field("Samples", memN), h("div", { class: "field btnfield" }, memBtn)), memSummary, memOut.wrap),
      card("Checkpoints", ckptBody));

    // --- rendering
    const running = () => st.job && !TERMINAL.has(st.job.status);

    const renderProgress = () => {
      const j = st.job;
      if (!j) return;
      const t = st.tick;
      const kimgDone = t ? t.kimg : j.progress.kimg;
      const total = (t && t.total_kimg) || j.progress.total_kimg;
      const fraction = j.status === "succeeded" ? 1 : total ? Math.min(1, kimgDone / total) : 0;
      let eta = "–";
      if (j.status === "succeeded") eta = "done";
      else if (running() && st.eta !== null) eta = fmtDuration(st.eta - (Date.now() - st.etaAt) / 1000); // counts down between ticks
      bar.set(fraction, `${fmtPct(fraction)}`, j.status);
      progText.replaceChildren(
        h("strong", {}, fmtPct(fraction)), ` · ${fmtKimg(kimgDone)} / ${fmtKimg(total)} kimg`,
        j.status === "queued" ? " · waiting for a worker" : "",
        running() || j.status === "succeeded" ? h("span", { id: "job-eta" }, ` · ETA ${eta}`) : "");
    };

    const renderJob = () => {
      const j = st.job;
      statusBadge.replaceChildren(badge(j.status));
      cancelBtn.disabled = !running() || j.status === "cancelling";
      cancelBtn.hidden = TERMINAL.has(j.status);
      const net = j.config.network || {};
      const ds = st.names.get(j.dataset_id);
      meta.textContent = [`dataset ${ds ? `“${ds}” ` : ""}(${j.dataset_id})`, `preset ${j.config.preset}`,
        `${net.resolution}×${net.resolution}`, `${fmtKimg(j.config.kimg)} kimg`, j.device ? `on ${j.device}` : null,
        `created ${fmtDate(j.created_at)}`, j.finished_at ? `finished ${fmtDate(j.finished_at)}` : null].filter(Boolean).join(" · ");
      if (j.error) jobErr.show(`${j.status === "failed" ? "Training failed: " : ""}${j.error}`);
      else jobErr.clear();
      const ready = Boolean(j.latest_checkpoint);
      sampleBtn.disabled = interpBtn.disabled = memBtn.disabled = !ready;
      samplerNote.hidden = ready;
      renderProgress();
    };

    const renderTick = (t) => {
      st.tick = t;
      if (t.eta_seconds !== undefined && t.eta_seconds !== null) { st.eta = t.eta_seconds; st.etaAt = Date.now(); }
      const set = (id, v) => { document.getElementById(id).textContent = fmtNum(v); };
      set("t-loss-g", t.loss_G);
      set("t-loss-d", t.loss_D);
      set("t-dig", t.dig);
      set("t-aug", t.augment_p);
      set("t-speed", t.sec_per_kimg);
      renderProgress();
    };

    // Checkpoints, the latest grid, snapshot metrics and curves: reloaded per checkpoint and at the end.
    let refreshing = null;
    let again = false;
    const refreshArtifacts = async () => {
      if (refreshing) { again = true; return refreshing; }
      refreshing = (async () => {
        do {
          again = false;
          await Promise.all([loadCheckpoints(), loadCurves(), loadMetrics()]);
        } while (again && ctx.alive());
      })().finally(() => { refreshing = null; });
      return refreshing;
    };

    const loadCurves = async () => {
      if (!st.job || (!st.tick && !st.job.latest_tick)) return;
      try {
        const status = st.job.status;
        await loadImage(curves.img, `${base}/report/curves.png`, sig);
        curves.img.dataset.status = status; // what the picture shows: a finished job's curves are final
        curvesLink.href = curves.img.src;
        curvesLink.hidden = false;
        curves.note.hidden = true;
        curves.err.clear();
      } catch (e) { if (!isAbort(e)) curves.err.show(e); }
    };

    const loadMetrics = async () => {
      try {
        const m = await getJSON(`${base}/metrics`, sig);
        const withMetrics = m.snapshots.filter((s) => s.metrics && Object.keys(s.metrics).length);
        const last = withMetrics[withMetrics.length - 1];
        const wanted = st.job.config.metrics || [];
        for (const k of ["kid", "fid"]) {
          const el = document.getElementById(`t-${k}`);
          el.textContent = !wanted.includes(k) ? "off" : last && last.metrics[k] !== undefined ? fmtNum(last.metrics[k]) : "–";
          el.classList.toggle("muted", !wanted.includes(k));
        }
        if (!st.tick && m.ticks.length) renderTick(m.ticks[m.ticks.length - 1]);
      } catch (e) { if (!isAbort(e)) liveNote.textContent = `metrics: ${e.message}`; }
    };

    const loadCheckpoints = async () => {
      let list;
      try {
        list = (await getJSON(`${base}/checkpoints`, sig)).data;
      } catch (e) {
        if (!isAbort(e)) ckptBody.replaceChildren(h("div", { class: "msg error" }, e.message));
        return;
      }
      if (!list.length) return;
      const keep = ckptSel.value;
      ckptSel.replaceChildren(h("option", { value: "latest" }, "latest"), h("option", { value: "best" }, "best"),
        list.slice().reverse().map((c) => h("option", { value: c.name }, `${c.name} (${fmtKimg(c.kimg)} kimg)`)));
      ckptSel.value = Array.from(ckptSel.options).some((o) => o.value === keep) ? keep : "latest";
      ckptBody.replaceChildren(checkpointsTable(list));
      const latest = list[list.length - 1];
      if (latest.grid) {
        try {
          await loadImage(grid.img, `${base}/checkpoints/${encodeURIComponent(latest.name)}/grid`, sig);
          grid.note.hidden = true;
          grid.err.clear();
          gridCaption.textContent = `fixed seeds, from ${latest.name} at ${fmtKimg(latest.kimg)} kimg${latest.final ? " (final)" : ""}`;
        } catch (e) { if (!isAbort(e)) grid.err.show(e); }
      }
    };

    const checkpointsTable = (list) => h("table", { class: "table" },
      h("thead", {}, h("tr", {}, ["Checkpoint", "kimg", "Metrics", "", "Size", "Saved", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, list.slice().reverse().map((c) => {
        const btn = h("button", { type: "button", class: "small", "data-download": c.name }, "Download");
        const status = h("span", { class: "muted small" });
        btn.addEventListener("click", async () => {
          btn.disabled = true;
          try {
            await download(`${base}/checkpoints/${encodeURIComponent(c.name)}`, `${jobId}-${c.name}`, (f) => { status.textContent = ` ${fmtPct(f)}`; });
            status.textContent = " ✓";
          } catch (e) { status.textContent = ` ${e.message}`; } finally { btn.disabled = false; }
        });
        const m = c.metrics || {};
        const metrics = ["kid", "fid"].filter((k) => m[k] !== undefined)
          .map((k) => `${k.toUpperCase()} ${fmtNum(m[k])}${m[`${k}_std_err`] !== undefined ? ` ± ${fmtNum(m[`${k}_std_err`], 2)}` : ""}`)
          .join(", ") || "–";
        const isBest = st.job && st.job.best_checkpoint === c.name;
        return h("tr", { "data-checkpoint": c.name },
          h("td", { class: "mono nowrap" }, c.name), h("td", { class: "num" }, fmtKimg(c.kimg)), h("td", {}, metrics),
          h("td", {}, isBest ? h("span", { class: "badge s-best" }, "best") : null, c.final ? h("span", { class: "badge s-final" }, "final") : null),
          h("td", { class: "num" }, fmtBytes(c.size)), h("td", { class: "nowrap" }, fmtDate(c.created_at)), h("td", { class: "nowrap" }, btn, status));
      })));

    const applyJob = (job) => {
      const prevCkpt = st.ckpt;
      st.job = job;
      if (job.latest_tick && (!st.tick || job.latest_tick.tick >= st.tick.tick)) renderTick(job.latest_tick);
      renderJob();
      st.ckpt = job.latest_checkpoint;
      if (st.ckpt !== prevCkpt) refreshArtifacts();
    };

    // --- actions
    curvesRefresh.addEventListener("click", () => loadCurves());

    cancelBtn.addEventListener("click", async () => {
      if (!confirm("Cancel this job? It stops at the next tick and keeps a final checkpoint.")) return;
      cancelBtn.disabled = true;
      try { applyJob(await getJSON(`${base}/cancel`, { method: "POST" })); } catch (e) { jobErr.show(e); cancelBtn.disabled = false; }
    });

    const busy = async (btn, label, fn) => {
      const text = btn.textContent;
      btn.disabled = true;
      btn.textContent = label;
      try { await fn(); } finally { btn.disabled = !st.job.latest_checkpoint; btn.textContent = text; }
    };

    sampleBtn.addEventListener("click", () => busy(sampleBtn, "Generating…", async () => {
      sampleOut.err.clear();
      try {
        const seeds = parseSeeds(seedsIn.value, 64);
        const body = { seeds, psi: Number(psiIn.value), checkpoint: ckptSel.value, format: "grid" };
        await loadImage(sampleOut.img, `${base}/samples`, { method: "POST", json: body });
        sampleOut.note.textContent = `seeds ${seedsIn.value}, ψ ${psiIn.value}, ${ckptSel.value}`;
      } catch (e) { sampleOut.err.show(e); }
    }));

    interpBtn.addEventListener("click", () => busy(interpBtn, "Rendering…", async () => {
      interpOut.err.clear();
      try {
        const body = { seed_a: Number(seedA.value), seed_b: Number(seedB.value), steps: Number(frames.value), psi: Number(psiIn.value), checkpoint: ckptSel.value };
        await loadImage(interpOut.img, `${base}/samples/interpolation`, { method: "POST", json: body });
        interpSave.href = interpOut.img.src;
        interpSave.download = `${jobId}-seed${body.seed_a}-seed${body.seed_b}.gif`;
        interpSave.hidden = false;
      } catch (e) { interpOut.err.show(e); }
    }));

    memBtn.addEventListener("click", () => busy(memBtn, "Computing…", async () => {
      memOut.err.clear();
      memSummary.textContent = "";
      try {
        const q = `n=${encodeURIComponent(memN.value)}&checkpoint=${encodeURIComponent(ckptSel.value)}`;
        const report = await getJSON(`${base}/report/memorization?${q}`); // computed once, then stored
        await loadImage(memOut.img, `${base}/report/memorization?${q}&format=png`);
        const copies = report.suspected_copies.length;
        memSummary.className = copies ? "msg warn" : "msg ok";
        memSummary.textContent = copies
          ? `${copies} of ${report.num_generated} samples are much closer to a training image than training images are to each other: possible copies (rows ${report.suspected_copies.join(", ")}).`
          : `None of the ${report.num_generated} samples looks like a copy of a training image (nearest-neighbour distances are normal for this set).`;
      } catch (e) { memOut.err.show(e); }
    }));

    // --- data: the job, then its live event stream
    try {
      const [job, names] = await Promise.all([getJSON(base, sig), datasetNames(ctx).catch(() => new Map())]);
      st.names = names;
      applyJob(job);
    } catch (e) {
      if (isAbort(e)) return;
      jobErr.show(e, e.status === 404 ? h("a", { href: "#/jobs" }, "Back to the jobs") : null);
      liveNote.textContent = "";
      return;
    }
    ctx.every(1000, async () => { if (running()) renderProgress(); }); // the ETA counts down between ticks

    while (ctx.alive()) {
      let ended = false;
      try {
        await readEvents(`${base}/events?since_tick=${st.lastTick}`, (event, data) => {
          if (event === "state") applyJob(data);
          else if (event === "tick") {
            st.lastTick = Math.max(st.lastTick, data.tick || 0);
            renderTick(data);
          } else if (event === "end") ended = true;
          liveNote.textContent = ended ? "" : "live: updates as the job trains";
        }, ctx.signal);
      } catch (e) {
        if (isAbort(e) || !ctx.alive()) return;
        if (e.status === 401 || e.status === 404) { liveNote.textContent = `live updates stopped: ${e.message}`; return; }
        liveNote.textContent = `live updates interrupted (${e.message}); reconnecting…`;
      }
      if (ended) {
        liveNote.textContent = "";
        try { applyJob(await getJSON(base, sig)); } catch (e) { if (!isAbort(e)) jobErr.show(e); }
        await refreshArtifacts(); // the final checkpoint, curves and metrics
        return;
      }
      await ctx.sleep(2000);
    }
  }

  // ------------------------------------------------------------------ start

  setupKeyBox();
  window.addEventListener("hashchange", route);
  if (!location.hash) history.replaceState(null, "", "#/jobs");
  route();
})();
