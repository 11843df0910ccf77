// The /v1 API as the dashboard uses it. The key (localStorage) goes out as an `Authorization: Bearer`
// header on every request, so everything is fetch()/XHR: never a bare <img src> or EventSource, which
// cannot send headers. Pictures become blob: URLs and the event stream is read with fetch streaming,
// which also keeps keys out of URLs and server logs.

import { h } from "./dom.js";

const KEY_STORAGE = "diggan.apiKey";

// Set by app.js: show / hide the "needs an API key" banner.
export const hooks = { unauthorized: () => {}, authorized: () => {} };

export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

export const apiKey = () => localStorage.getItem(KEY_STORAGE) || "";
export const saveKey = (key) => localStorage.setItem(KEY_STORAGE, key);
export const forgetKey = () => localStorage.removeItem(KEY_STORAGE);

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

export function apiError(status, statusText, body, retryAfter) {
  let detail = body && typeof body.detail === "string" ? body.detail : `${status} ${statusText || "error"}`;
  if (status === 429 && retryAfter && !/retry/i.test(detail)) detail += ` (retry in ${retryAfter} s)`;
  if (status === 401) hooks.unauthorized(detail);
  return new ApiError(status, detail);
}

export async function request(path, { method = "GET", json, body, headers, signal } = {}) {
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
  hooks.authorized();
  return resp;
}

export const getJSON = async (path, opts) => (await request(path, opts)).json();
export const isAbort = (e) => e && e.name === "AbortError";

// <img> elements whose pictures come from authenticated requests, as blob: URLs.
const imgUrls = new WeakMap();
export async function loadImage(img, path, opts) {
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
export async function download(path, fallbackName, onProgress, signal) {
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
export async function readEvents(path, onEvent, signal) {
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

// Dataset id -> name, for the pages that show jobs.
export async function datasetNames(ctx) {
  const list = await getJSON("/v1/datasets", { signal: ctx.signal });
  return new Map(list.data.map((d) => [d.id, d.name]));
}

// XHR rather than fetch: it reports upload progress.
export function uploadDataset(form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/datasets");
    const key = apiKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) { hooks.authorized(); resolve(body); }
      else reject(apiError(xhr.status, xhr.statusText, body, xhr.getResponseHeader("Retry-After")));
    };
    xhr.onerror = () => reject(new ApiError(0, "the upload did not reach the server (connection lost, or a proxy refused the size)"));
    xhr.send(form);
  });
}
