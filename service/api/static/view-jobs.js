// The job list: status, progress and ETA of each job, refreshed every 2 s.

import { datasetNames, getJSON, isAbort } from "./api.js";
import { badge, h, messageBox, progressBar } from "./dom.js";
import { fmtDate, fmtDuration, fmtKimg, fmtPct } from "./format.js";

export async function jobsView(ctx) {
  const main = ctx.main;
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
