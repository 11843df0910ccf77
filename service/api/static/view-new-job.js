// The new-job form, built from GET /v1/presets and /v1/regularizers; "start from" lists uploaded models
// (GET /v1/models) and the checkpoints of your other jobs (init_from), with Freeze-D for such fine-tuning.

import { getJSON, isAbort } from "./api.js";
import { card, field, h, messageBox } from "./dom.js";
import { fmtKimg, randomKey } from "./format.js";

export async function newJobView(ctx, params) {
  const main = ctx.main;
  main.append(h("div", { class: "pagehead" }, h("h1", {}, "New training job")));
  const err = messageBox();
  main.append(err);
  let datasets, presets, regs, models, jobs;
  try {
    [datasets, presets, regs, models, jobs] = await Promise.all(["/v1/datasets", "/v1/presets", "/v1/regularizers", "/v1/models",
      "/v1/jobs?limit=100"].map((p) => getJSON(p, { signal: ctx.signal })));
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

  // Start from pretrained weights: an uploaded model, or a checkpoint of another job.
  const withCkpt = jobs.data.filter((j) => j.latest_checkpoint);
  const initSel = h("select", { id: "job-init" }, h("option", { value: "" }, "scratch (random weights)"),
    models.data.length ? h("optgroup", { label: "Uploaded models" },
      models.data.map((m) => h("option", { value: `model:${m.id}` }, `${m.name} — ${m.resolution}px (${m.id})`))) : null,
    withCkpt.length ? h("optgroup", { label: "Another job's checkpoint" },
      withCkpt.flatMap((j) => ["latest", "best"].map((c) => h("option", { value: `job:${j.id}:${c}` },
        `${j.name || j.id} — ${c} (${c === "latest" ? j.latest_checkpoint : j.best_checkpoint || j.latest_checkpoint})`)))) : null);
  const freezeD = num("job-freeze-d", { min: 0, max: 64, step: 1, placeholder: "0", disabled: true });
  initSel.addEventListener("change", () => { freezeD.disabled = !initSel.value; if (!initSel.value) freezeD.value = ""; });

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
    h("fieldset", {}, h("legend", {}, "Start from"),
      h("div", { class: "row" },
        field("Weights", initSel, "fine-tuning a pretrained generator beats random weights with ~100 images; the job then takes its network (resolution, widths)"),
        field("Freeze-D layers", freezeD, "keep the discriminator's first N layers fixed while fine-tuning (Mo et al. 2020; the ADA paper uses 10 at 256px); 0 = off"))),
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
    if (initSel.value.startsWith("model:")) body.init_from = { model: initSel.value.slice(6) };
    else if (initSel.value.startsWith("job:")) {
      const [, id, checkpoint] = initSel.value.split(":");
      body.init_from = { job: id, checkpoint };
    }
    if (body.init_from && freezeD.value.trim() !== "" && Number(freezeD.value) > 0) body.freeze_d_layers = Number(freezeD.value);
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
