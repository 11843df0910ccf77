// One job: progress and ETA from its event stream, live numbers, curves, grids, sampler (by class for
// class-conditional jobs), interpolation GIF, memorization check, checkpoint and generator downloads, cancel,
// and for StyleGAN2 jobs the after-training tools (view-editing.js).

import { datasetNames, download, getJSON, isAbort, loadImage, readEvents } from "./api.js";
import { badge, card, field, h, messageBox, progressBar } from "./dom.js";
import { editingSection } from "./view-editing.js";
import { fmtBytes, fmtDate, fmtDuration, fmtKimg, fmtNum, fmtPct, parseSeeds } from "./format.js";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

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

export async function jobView(ctx, jobId) {
  const main = ctx.main;
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
  const classSel = h("select", { id: "sampler-class" }, h("option", { value: "" }, "each seed's own class"));
  const classField = field("Class", classSel, "class-conditional model");
  classField.hidden = true;
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

  // export: the generator of the sampler's checkpoint, in three formats
  const exportBtns = [["safetensors", "safetensors (weights + config, zip)"], ["torchscript", "TorchScript (.pt, needs only torch)"],
    ["onnx", "ONNX (.onnx, onnxruntime)"]].map(([fmt, label]) => {
    const btn = h("button", { type: "button", class: "secondary", id: `export-${fmt}`, "data-format": fmt, disabled: true }, label);
    return btn;
  });
  const exportStatus = h("p", { class: "muted small", id: "export-status" });
  const exportCard = card("Download the generator",
    h("p", { class: "muted small" }, "The EMA generator of the checkpoint chosen in the sampler. Made once per checkpoint and format, "
      + "then kept (ONNX takes a while the first time)."),
    h("div", { class: "row" }, exportBtns), exportStatus);
  exportCard.id = "card-export";
  const after = h("div", { id: "after-training" });
  let editing = null;

  main.append(
    h("div", { class: "pagehead" }, h("h1", {}, "Job ", h("span", { class: "mono" }, jobId), " ", statusBadge), cancelBtn),
    meta, jobErr,
    card(null, bar, progText, tiles, liveNote),
    h("div", { class: "cols" },
      card(h("span", {}, "Training curves ", curvesRefresh, " ", curvesLink), curves.wrap),
      card("Latest samples", grid.wrap, gridCaption)),
    card("Sampler", samplerNote,
      h("div", { class: "row tools" }, field("Seeds", seedsIn, "e.g. 0-15 or 3,8,42"), field("ψ (truncation)", psiIn, "1 = full variety, lower = typical"),
        field("Checkpoint", ckptSel), classField, h("div", { class: "field btnfield" }, sampleBtn)),
      sampleOut.wrap,
      h("h3", {}, "Interpolation"),
      h("div", { class: "row tools" }, field("From seed", seedA), field("To seed", seedB), field("Frames", frames), h("div", { class: "field btnfield" }, interpBtn)),
      interpOut.wrap, interpSave),
    card("Memorization check",
      h("p", { class: "muted small" }, "Each row: a generated sample, then its 3 nearest training images (Inception features, cosine distance). "
        + "Rows where a neighbour looks identical mean the generator is copying its training set. Runs Inception on the server: takes a while the first time."),
      h("div", { class: "row tools" }, field("Samples", memN), h("div", { class: "field btnfield" }, memBtn)), memSummary, memOut.wrap),
    card("Checkpoints", ckptBody), exportCard, after);

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
    exportBtns.forEach((b) => { b.disabled = !ready || b.dataset.busy === "1"; });
    const arch = (j.config.network || {}).arch || "stylegan2";
    if (arch === "stylegan2" && !editing) {
      editing = editingSection(ctx, base, () => ckptSel.value);
      after.replaceChildren(...editing.cards);
    }
    if (editing) editing.enable(j);
    samplerNote.hidden = ready;
    samplerNote.textContent = TERMINAL.has(j.status) ? `This job ended ${j.status} without storing a checkpoint: nothing to sample.`
      : "Available once the job has a checkpoint.";
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
      ...list.slice().reverse().map((c) => h("option", { value: c.name }, `${c.name} (${fmtKimg(c.kimg)} kimg)`)));
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
      if (classSel.value !== "") body.class_index = Number(classSel.value);
      await loadImage(sampleOut.img, `${base}/samples`, { method: "POST", json: body });
      const cls = classSel.value !== "" ? `, class ${classSel.selectedOptions[0].textContent}` : "";
      sampleOut.note.textContent = `seeds ${seedsIn.value}, ψ ${psiIn.value}, ${ckptSel.value}${cls}`;
    } catch (e) { sampleOut.err.show(e); }
  }));

  interpBtn.addEventListener("click", () => busy(interpBtn, "Rendering…", async () => {
    interpOut.err.clear();
    try {
      const body = { seed_a: Number(seedA.value), seed_b: Number(seedB.value), steps: Number(frames.value), psi: Number(psiIn.value), checkpoint: ckptSel.value };
      if (classSel.value !== "") body.class_index = Number(classSel.value);
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

  exportBtns.forEach((btn) => btn.addEventListener("click", async () => {
    const fmt = btn.dataset.format;
    const ext = { safetensors: "safetensors.zip", torchscript: "torchscript.pt", onnx: "generator.onnx" }[fmt];
    btn.dataset.busy = "1";
    btn.disabled = true;
    exportStatus.textContent = `making the ${fmt} export of ${ckptSel.value}…`;
    try {
      await download(`${base}/export?format=${fmt}&checkpoint=${encodeURIComponent(ckptSel.value)}`, `${jobId}-${ext}`,
        (f) => { exportStatus.textContent = `${fmt}: ${fmtPct(f)}`; });
      exportStatus.textContent = `${fmt} ✓`;
      exportStatus.dataset.done = fmt;
    } catch (e) { exportStatus.textContent = `${fmt}: ${e.message}`; } finally { btn.dataset.busy = ""; btn.disabled = !st.job.latest_checkpoint; }
  }));

  // Class-conditional jobs (biggan): the sampler offers the dataset's classes.
  const loadClasses = async (job) => {
    const net = job.config.network || {};
    if (net.arch !== "biggan" || !net.num_classes) return;
    let names = [];
    try { names = (await getJSON(`/v1/datasets/${job.dataset_id}`, sig)).class_names || []; } catch (e) { if (isAbort(e)) return; }
    classSel.append(...Array.from({ length: net.num_classes }, (_, k) => h("option", { value: k }, names[k] ? `${k}: ${names[k]}` : String(k))));
    classField.hidden = false;
  };

  // --- data: the job, then its live event stream
  try {
    const [job, names] = await Promise.all([getJSON(base, sig), datasetNames(ctx).catch(() => new Map())]);
    st.names = names;
    applyJob(job);
    loadClasses(job);
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
