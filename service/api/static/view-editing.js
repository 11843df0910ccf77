// After training, on a job's page (StyleGAN2 jobs): project a photo (a background job: progress from its event
// stream), move the result (or any latent, or a seed) along a SeFa direction with a slider, a style-mixing
// grid, and the job's saved latents. Everything goes through the same /v1 API as any client.

import { download, getJSON, isAbort, loadImage, readEvents, request } from "./api.js";
import { card, field, h, messageBox, progressBar } from "./dom.js";
import { fmtDate, fmtDuration, fmtNum, fmtPct } from "./format.js";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

function panel(id, alt) {
  const img = h("img", { id, alt, hidden: true });
  const err = messageBox();
  return { img, err, wrap: h("div", { class: "imgwrap" }, img, err) };
}

// Seeds ("1-3,7") and latent ids ("lat_...") in one comma list, as the mixing endpoints take them.
export function parseRefs(spec) {
  const refs = [];
  for (let part of String(spec).split(",")) {
    part = part.trim();
    if (!part) continue;
    if (/^lat_[0-9a-f]+$/.test(part)) { refs.push(part); continue; }
    const m = /^(\d+)\s*(?:-\s*(\d+))?$/.exec(part);
    if (!m) throw new Error(`"${part}" is not a seed, a seed range or a latent id`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b - a > 16) throw new Error(`seed range "${part}" must run forwards, at most 8 sources`);
    for (let s = a; s <= b; s++) refs.push(s);
  }
  if (!refs.length) throw new Error("give seeds (1-3) or latent ids (lat_…)");
  if (refs.length > 8) throw new Error("at most 8 rows and 8 columns");
  return refs;
}

// Returns { cards, enable(job) }: the cards to put on the page, and a hook to call whenever the job changes.
export function editingSection(ctx, base, checkpoint) {
  const sig = { signal: ctx.signal };
  let ready = false;

  // ---------------------------------------------------------------- projection
  const projFile = h("input", { type: "file", id: "proj-file", accept: "image/*" });
  const projSteps = h("input", { type: "number", id: "proj-steps", min: 1, max: 5000, step: 1, placeholder: "1000" });
  const projDistance = h("select", { id: "proj-distance" },
    h("option", { value: "inception+pixel" }, "inception+pixel (best, slower)"),
    h("option", { value: "pixel" }, "pixel (fast on a CPU)"),
    h("option", { value: "inception" }, "inception"),
    h("option", { value: "discriminator" }, "the job's discriminator"));
  const projWplus = h("input", { type: "checkbox", id: "proj-wplus" });
  const projGo = h("button", { type: "button", id: "proj-go", disabled: true }, "Project");
  const projCancel = h("button", { type: "button", class: "secondary", id: "proj-cancel", hidden: true }, "Stop");
  const projBar = progressBar();
  projBar.id = "proj-progress";
  projBar.hidden = true;
  const projText = h("p", { class: "progtext", id: "proj-progress-text" });
  const projErr = messageBox();
  const projTarget = panel("proj-target", "the uploaded photo, cropped and resized");
  const projRecon = panel("proj-recon", "the projection: the generator's closest image");
  const projGif = panel("proj-gif", "the optimisation, step by step");
  const projResult = h("p", { id: "proj-result", class: "small" });
  const projImages = h("div", { class: "triptych", hidden: true },
    h("figure", {}, projTarget.wrap, h("figcaption", {}, "target")),
    h("figure", {}, projRecon.wrap, h("figcaption", {}, "projection")),
    h("figure", {}, projGif.wrap, h("figcaption", {}, "optimisation")));
  const projCard = card("Project a photo",
    h("p", { class: "muted small" }, "Finds the latent whose image is closest to your photo (it is centre-cropped to a square and "
      + "resized to the generator's resolution). Runs in the background on a worker; the result is saved as a latent you can edit below."),
    h("div", { class: "row tools" }, field("Photo", projFile), field("Steps", projSteps, "empty: 1000"), field("Distance", projDistance),
      h("label", { class: "check" }, projWplus, " W+ (one w per layer)"), h("div", { class: "field btnfield" }, h("div", { class: "row" }, projGo, projCancel))),
    projErr, projBar, projText, projImages, projResult);
  projCard.id = "card-projection";

  // ---------------------------------------------------------------- SeFa edit
  const editSource = h("select", { id: "edit-source" }, h("option", { value: "seed" }, "a seed"));
  const editSeed = h("input", { type: "number", id: "edit-seed", min: 0, step: 1, value: 0 });
  const editDirection = h("select", { id: "edit-direction", disabled: true });
  const editStrength = h("input", { type: "range", id: "edit-strength", min: -6, max: 6, step: 0.5, value: 0, disabled: true,
    "aria-label": "edit strength" });
  const editValue = h("output", { id: "edit-strength-value", for: "edit-strength" }, "0");
  const editOut = panel("edit-image", "the source moved along the direction");
  const editBase = panel("edit-base", "the source, unedited");
  const editNote = h("p", { class: "muted small", id: "edit-note" }, "Pick a source and a direction, then drag the slider.");
  const editSave = h("button", { type: "button", class: "secondary", id: "edit-save", disabled: true }, "Save as a new latent");
  const seedField = field("Seed", editSeed);
  const editCard = card("Edit along a direction (SeFa)",
    h("p", { class: "muted small" }, "Directions in the generator's latent space that change its images most (closed-form factorisation "
      + "of its style layers: no training, no labels). Strength 0 is the source itself."),
    h("div", { class: "row tools" }, field("Source", editSource), seedField, field("Direction", editDirection),
      field(h("span", {}, "Strength ", editValue), editStrength)),
    h("div", { class: "editview" },
      h("figure", {}, editBase.wrap, h("figcaption", {}, "source")),
      h("figure", {}, editOut.wrap, h("figcaption", {}, "edited")),
      h("div", {}, editNote, editSave)));
  editCard.id = "card-edit";

  // ---------------------------------------------------------------- style mixing
  const mixRows = h("input", { type: "text", id: "mix-rows", value: "1-3", size: 16, spellcheck: "false" });
  const mixCols = h("input", { type: "text", id: "mix-cols", value: "10-13", size: 16, spellcheck: "false" });
  const mixStyles = h("input", { type: "text", id: "mix-styles", value: "0-6", size: 6, spellcheck: "false" });
  const mixPsi = h("input", { type: "number", id: "mix-psi", value: 1, min: -2, max: 2, step: 0.05 });
  const mixGo = h("button", { type: "button", id: "mix-go", disabled: true }, "Mix");
  const mixOut = panel("mix-grid", "style-mixing grid");
  const mixCard = card("Style mixing",
    h("p", { class: "muted small" }, "Each cell is its row's image with the column's styles in the chosen layers (low layers: pose and shape; "
      + "high layers: colour and texture). Rows and columns are seeds or latent ids."),
    h("div", { class: "row tools" }, field("Rows", mixRows, "seeds or lat_… ids"), field("Columns", mixCols), field("Layers from the column", mixStyles, "e.g. 0-3 coarse, 4-9 fine"),
      field("ψ", mixPsi), h("div", { class: "field btnfield" }, mixGo)),
    mixOut.wrap);
  mixCard.id = "card-mixing";

  // ---------------------------------------------------------------- latents
  const latBody = h("div", { id: "latents" }, h("p", { class: "muted pad" }, "No saved latents yet."));
  const latCard = card("Saved latents", latBody);
  latCard.id = "card-latents";
  let latents = [];

  const sourceLabel = (l) => {
    const s = l.source || {};
    if (s.type === "projection") return `projected ${s.filename || ""}`.trim();
    if (s.type === "seed") return `seed ${s.seed}, ψ ${s.psi}`;
    if (s.type === "edit") return `edit of ${s.latent_id} (direction ${s.direction}, ${s.strength})`;
    return s.type || "";
  };

  const renderLatents = () => {
    const keep = editSource.value;
    editSource.replaceChildren(h("option", { value: "seed" }, "a seed"),
      ...latents.map((l) => h("option", { value: l.id }, `${l.name || l.id} (${l.kind})`)));
    editSource.value = [...editSource.options].some((o) => o.value === keep) ? keep : "seed";
    syncSource();
    if (!latents.length) { latBody.replaceChildren(h("p", { class: "muted pad" }, "No saved latents yet.")); return; }
    latBody.replaceChildren(h("table", { class: "table" },
      h("thead", {}, h("tr", {}, ["Latent", "Kind", "From", "Saved", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, latents.map((l) => {
        const use = h("button", { type: "button", class: "small", "data-use": l.id }, "Edit");
        use.addEventListener("click", () => { editSource.value = l.id; syncSource(); renderEdit(); editCard.scrollIntoView({ block: "nearest" }); });
        const npy = h("button", { type: "button", class: "small secondary", "data-npy": l.id }, ".npy");
        npy.addEventListener("click", () => download(`${base}/latents/${l.id}/w.npy`, `${l.id}.npy`, () => {}).catch(() => {}));
        const del = h("button", { type: "button", class: "small secondary", "data-delete": l.id }, "Delete");
        del.addEventListener("click", async () => {
          try { await request(`${base}/latents/${l.id}`, { method: "DELETE" }); await loadLatents(); } catch (e) { editOut.err.show(e); }
        });
        return h("tr", { "data-latent": l.id }, h("td", {}, h("div", {}, l.name || ""), h("div", { class: "mono muted small" }, l.id)),
          h("td", {}, l.kind), h("td", { class: "small" }, sourceLabel(l)), h("td", { class: "nowrap small" }, fmtDate(l.created_at)),
          h("td", { class: "actions" }, use, npy, del));
      }))));
  };

  const loadLatents = async () => {
    try { latents = (await getJSON(`${base}/latents`, sig)).data; renderLatents(); } catch (e) { if (!isAbort(e)) latBody.replaceChildren(h("div", { class: "msg error" }, e.message)); }
  };

  // --- the slider: one request at a time, always ending on the slider's latest value
  let rendering = false;
  let pending = false;
  const source = () => (editSource.value === "seed" ? Number(editSeed.value) : editSource.value);
  let baseOf = "";
  function syncSource() {
    seedField.hidden = editSource.value !== "seed";
    editSave.disabled = !ready || editSource.value === "seed";
  }
  const renderEdit = async () => {
    if (!ready || editDirection.disabled) return;
    if (rendering) { pending = true; return; }
    rendering = true;
    try {
      do {
        pending = false;
        const key = `${source()}|${editDirection.value}|${checkpoint()}`;
        if (key !== baseOf) { // the unedited source, beside the edit (one request at a time: heavy-request slots)
          baseOf = key;
          editBase.err.clear();
          const body = { source: source(), direction: Number(editDirection.value), strength: 0, checkpoint: checkpoint() };
          try { await loadImage(editBase.img, `${base}/edits/image`, { method: "POST", json: body }); } catch (e) {
            baseOf = "";
            if (!isAbort(e)) editBase.err.show(e);
          }
        }
        const strength = Number(editStrength.value);
        const body = { source: source(), direction: Number(editDirection.value), strength, checkpoint: checkpoint() };
        editOut.err.clear();
        try {
          await loadImage(editOut.img, `${base}/edits/image`, { method: "POST", json: body });
          editOut.img.dataset.strength = String(strength);
          editOut.img.dataset.source = String(body.source);
          editOut.img.dataset.direction = String(body.direction);
          editNote.textContent = `direction ${body.direction}, strength ${strength}`;
        } catch (e) { if (!isAbort(e)) editOut.err.show(e); }
      } while (pending && ctx.alive());
    } finally { rendering = false; }
  };
  editStrength.addEventListener("input", () => { editValue.textContent = editStrength.value; renderEdit(); });
  editDirection.addEventListener("change", renderEdit);
  editSource.addEventListener("change", () => { syncSource(); renderEdit(); });
  editSeed.addEventListener("change", renderEdit);
  editSave.addEventListener("click", async () => {
    editSave.disabled = true;
    try {
      const body = { direction: Number(editDirection.value), strength: Number(editStrength.value), checkpoint: checkpoint() };
      const lat = await getJSON(`${base}/latents/${editSource.value}/edit`, { method: "POST", json: body });
      editNote.textContent = `saved as ${lat.id}`;
      await loadLatents();
    } catch (e) { editOut.err.show(e); } finally { syncSource(); }
  });

  const loadDirections = async () => {
    try {
      const d = await getJSON(`${base}/directions?k=5&checkpoint=${encodeURIComponent(checkpoint())}`, sig);
      const keep = editDirection.value;
      editDirection.replaceChildren(...d.directions.map((x) => h("option", { value: x.index }, `${x.index} (eigenvalue ${fmtNum(x.eigenvalue)})`)));
      if ([...editDirection.options].some((o) => o.value === keep)) editDirection.value = keep;
      editDirection.disabled = editStrength.disabled = false;
      renderEdit();
    } catch (e) { if (!isAbort(e)) editOut.err.show(e); }
  };

  // --- projection: start, then follow its event stream (re-opened if it drops) to the end
  const renderProjection = (p) => {
    const prog = p.progress;
    projBar.hidden = false;
    projBar.set(prog.fraction, fmtPct(prog.fraction), p.status === "succeeded" ? "succeeded" : p.status);
    const parts = [`${prog.steps_done} / ${prog.total_steps} steps`, p.status];
    if (p.status === "running" && prog.eta_seconds !== null) parts.push(`ETA ${fmtDuration(prog.eta_seconds)}`);
    if (p.status === "queued") parts.push("waiting for a worker");
    if (prog.distance !== null && p.status === "running") parts.push(`distance ${fmtNum(prog.distance)}`);
    projText.textContent = parts.join(" · ");
    projText.dataset.status = p.status;
    projCancel.hidden = TERMINAL.has(p.status);
    if (p.error) projErr.show(`Projection ${p.status}: ${p.error}`);
  };

  const showResult = async (p) => {
    const im = p.images[0];
    const q = `?index=${im.index}`;
    projImages.hidden = false;
    await loadImage(projTarget.img, `${base}/projections/${p.id}/target.png${q}`, sig);
    if (im.status !== "done") return;
    await Promise.all([loadImage(projRecon.img, `${base}/projections/${p.id}/reconstruction.png${q}`, sig),
      loadImage(projGif.img, `${base}/projections/${p.id}/progress.gif${q}`, sig)]);
    projResult.replaceChildren(`${im.distance_name || p.config.distance} distance ${fmtNum(im.distance)} (from ${fmtNum(im.initial_distance)}), `
      + `pixel MSE ${fmtNum(im.pixel_mse)}; saved as latent `, h("span", { class: "mono", id: "proj-latent" }, im.latent_id), ".");
    await loadLatents();
    editSource.value = im.latent_id; // edit the projection next
    syncSource();
    editStrength.value = 0;
    editValue.textContent = "0";
    renderEdit();
  };

  let current = null;
  const follow = async (p) => {
    current = p;
    renderProjection(p);
    while (ctx.alive() && !TERMINAL.has(p.status)) {
      try {
        await readEvents(`${base}/projections/${p.id}/events`, (event, data) => {
          if (event === "state") { p = data; current = p; renderProjection(p); }
        }, ctx.signal);
      } catch (e) {
        if (isAbort(e) || !ctx.alive()) return;
        projText.textContent = `live updates interrupted (${e.message}); reconnecting…`;
        await ctx.sleep(1000);
      }
      if (!TERMINAL.has(p.status)) { try { p = await getJSON(`${base}/projections/${p.id}`, sig); renderProjection(p); } catch (e) { if (isAbort(e)) return; } }
    }
    projGo.disabled = !ready;
    if (p.status === "succeeded") await showResult(p).catch((e) => { if (!isAbort(e)) projErr.show(e); });
  };

  projGo.addEventListener("click", async () => {
    projErr.clear();
    projResult.textContent = "";
    const file = projFile.files && projFile.files[0];
    if (!file) { projErr.show("Choose a photo first."); return; }
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("checkpoint", checkpoint());
    form.append("distance", projDistance.value);
    form.append("w_plus", projWplus.checked ? "true" : "false");
    if (projSteps.value.trim()) form.append("steps", projSteps.value.trim());
    projGo.disabled = true;
    [projRecon, projGif].forEach((x) => { x.img.hidden = true; });
    try {
      const p = await getJSON(`${base}/projections`, { method: "POST", body: form });
      await follow(p);
    } catch (e) {
      if (!isAbort(e)) projErr.show(e);
    } finally { projGo.disabled = !ready || (current && !TERMINAL.has(current.status)); }
  });
  projCancel.addEventListener("click", async () => {
    if (!current) return;
    try { renderProjection(await getJSON(`${base}/projections/${current.id}/cancel`, { method: "POST" })); } catch (e) { projErr.show(e); }
  });

  mixGo.addEventListener("click", async () => {
    mixOut.err.clear();
    mixGo.disabled = true;
    try {
      const body = { rows: parseRefs(mixRows.value), cols: parseRefs(mixCols.value), styles: mixStyles.value.trim(),
        psi: Number(mixPsi.value), checkpoint: checkpoint() };
      await loadImage(mixOut.img, `${base}/mixing/grid`, { method: "POST", json: body });
    } catch (e) { if (!isAbort(e)) mixOut.err.show(e); } finally { mixGo.disabled = !ready; }
  });

  // Called on every job update: the tools need a checkpoint.
  const enable = (job) => {
    const has = Boolean(job.latest_checkpoint);
    if (has && !ready) {
      ready = true;
      projGo.disabled = mixGo.disabled = false;
      syncSource();
      loadDirections();
      loadLatents();
      getJSON(`${base}/projections?limit=1`, sig).then((list) => { // show the newest projection, or follow it
        const p = list.data[0];
        if (p && !current) follow(p).catch(() => {});
      }).catch(() => {});
    }
  };
  return { cards: [projCard, editCard, mixCard, latCard], enable };
}
