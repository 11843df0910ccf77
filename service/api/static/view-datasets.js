// Datasets: upload by drag and drop or file picker (showing the server's warnings and refusals), and the list.

import { getJSON, isAbort, request, uploadDataset } from "./api.js";
import { card, field, h, messageBox, progressBar } from "./dom.js";
import { fmtBytes, fmtDate, fmtPct } from "./format.js";

export async function datasetsView(ctx) {
  const main = ctx.main;
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
