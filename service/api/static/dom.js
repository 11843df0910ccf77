// DOM helpers: elements built from data, text always set as text (never parsed as HTML).

export function h(tag, attrs, ...children) {
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

export const card = (title, ...body) => h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...body);

export function field(label, input, hint) {
  const note = hint instanceof Node ? hint : hint ? h("small", { class: "hint" }, hint) : null;
  return h("label", { class: "field" }, h("span", { class: "flabel" }, label), input, note);
}

// A box that shows an API error (its `detail`) or any message; hidden when empty.
export function messageBox(kind = "error") {
  const el = h("div", { class: `msg ${kind}`, role: kind === "error" ? "alert" : "status", hidden: true });
  el.show = (what, extra) => {
    const text = what instanceof Error ? what.message : String(what);
    el.replaceChildren(h("div", {}, text));
    if (extra) el.append(extra);
    el.hidden = false;
  };
  el.clear = () => { el.hidden = true; el.replaceChildren(); };
  return el;
}

export function progressBar() {
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

export const badge = (status) => h("span", { class: `badge s-${status}` }, status);
