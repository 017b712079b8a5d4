import { api, chunkedUpload, sendWithProgress } from "../api.js";
import { showError, showNotice } from "../app.js";
import { bar, clear, fmtBytes, fmtDuration, h } from "../dom.js";
import { t } from "../i18n.js";

const PAGE = 50;

async function waitJob(id, onProgress, ctx) {
  return new Promise((resolve, reject) => {
    const timer = ctx.every(1000, async () => {
      try {
        const job = await api(`/v1/jobs/${id}`);
        onProgress(job);
        if (["succeeded", "failed", "cancelled"].includes(job.status)) {
          ctx.stop(timer);
          resolve(job);
        }
      } catch (exc) {
        ctx.stop(timer);
        reject(exc);
      }
    });
  });
}

function importReport(result) {
  const rejected = result.rejected || [];
  const duplicates = result.duplicates || [];
  return h(
    "div",
    { class: "report", "data-testid": "import-report" },
    h(
      "div",
      { class: "stats" },
      h("div", { class: "stat good" }, h("b", { "data-testid": "accepted-count" }, (result.accepted || []).length), t("accepted")),
      h("div", { class: "stat" }, h("b", {}, duplicates.length), t("duplicates")),
      h("div", { class: "stat bad" }, h("b", { "data-testid": "rejected-count" }, rejected.length), t("rejected")),
    ),
    (result.warnings || []).map((w) => h("div", { class: "warning" }, w)),
    rejected.length > 0 &&
      h("details", { open: rejected.length <= 20 }, h("summary", {}, t("rejected_files")), h("table", { class: "grid small" }, h("tbody", {}, rejected.map((r) => h("tr", {}, h("td", {}, h("code", {}, r.name)), h("td", {}, r.reason)))))),
    duplicates.length > 0 &&
      h("details", {}, h("summary", {}, t("duplicate_files")), h("ul", {}, duplicates.map((d) => h("li", {}, h("code", {}, d.source_name), d.first_label ? ` = ${d.first_label}` : ` (${t("already_in_dataset")})`)))),
  );
}

export async function render(main, { dataset: datasetId, query }, ctx) {
  const dataset = await api(`/v1/sound/datasets/${datasetId}`);
  const base = `/v1/sound/datasets/${datasetId}`;
  const classesBody = h("tbody");
  const clipsArea = h("div", { "data-testid": "clips" });
  const selected = new Set();
  let current = query.get("class");

  async function refreshClasses() {
    const { classes } = await api(`${base}/classes`);
    selected.clear();
    classesBody.replaceChildren(
      ...classes.map((c) =>
        h(
          "tr",
          { "data-class": c.name },
          h("td", {}, h("input", { type: "checkbox", "aria-label": c.name, onchange: (e) => (e.target.checked ? selected.add(c.name) : selected.delete(c.name)) })),
          h("td", {}, h("button", { class: "link", onclick: () => showClips(c.name, 0) }, c.name)),
          h("td", { class: "num", "data-testid": `count-${c.name}` }, c.clips),
          h("td", { class: "num" }, fmtDuration(c.duration_ms), c.clips_without_duration ? "+" : ""),
          h(
            "td",
            { class: "actions" },
            h("button", {
              class: "small",
              onclick: async () => {
                const name = prompt(t("rename_to"), c.name);
                if (!name || name === c.name) return;
                try {
                  await api(`${base}/classes/${encodeURIComponent(c.name)}`, { method: "PATCH", json: { name } });
                  await refreshClasses();
                } catch (exc) {
                  showError(exc);
                }
              },
            }, t("rename")),
            h("button", {
              class: "small danger",
              onclick: async () => {
                if (!confirm(t("confirm_delete_class").replace("{name}", c.name))) return;
                try {
                  await api(`${base}/classes/${encodeURIComponent(c.name)}`, { method: "DELETE" });
                  await refreshClasses();
                  if (current === c.name) clear(clipsArea);
                } catch (exc) {
                  showError(exc);
                }
              },
            }, t("delete")),
          ),
        ),
      ),
    );
    return classes;
  }

  async function showClips(label, offset) {
    current = label;
    const page = await api(`${base}/clips`, { query: { label, offset, limit: PAGE } });
    const chosen = new Set();
    clear(
      clipsArea,
      h("h3", {}, t("clips_of"), " ", h("code", {}, label), ` (${page.total})`),
      h(
        "table",
        { class: "grid" },
        h("thead", {}, h("tr", {}, h("th", {}), h("th", {}, t("file")), h("th", {}, t("duration")), h("th", {}, t("size")), h("th", {}, t("play")))),
        h(
          "tbody",
          {},
          page.clips.map((clip) =>
            h(
              "tr",
              { "data-clip": clip.id },
              h("td", {}, h("input", { type: "checkbox", onchange: (e) => (e.target.checked ? chosen.add(clip.id) : chosen.delete(clip.id)) })),
              h("td", {}, clip.source_name),
              h("td", { class: "num" }, fmtDuration(clip.duration_ms)),
              h("td", { class: "num" }, fmtBytes(clip.size_bytes)),
              h("td", {}, h("audio", { controls: true, preload: "none", src: `${base}/clips/${clip.id}/audio` })),
            ),
          ),
        ),
      ),
      h(
        "div",
        { class: "row" },
        h("button", {
          class: "danger small",
          "data-testid": "delete-clips",
          onclick: async () => {
            if (!chosen.size) return;
            try {
              await api(`${base}/clips/delete`, { method: "POST", json: { ids: [...chosen] } });
              await refreshClasses();
              await showClips(label, offset);
            } catch (exc) {
              showError(exc);
            }
          },
        }, t("delete_selected")),
        offset > 0 && h("button", { class: "small", onclick: () => showClips(label, Math.max(0, offset - PAGE)) }, "‹"),
        offset + PAGE < page.total && h("button", { class: "small", onclick: () => showClips(label, offset + PAGE) }, "›"),
      ),
    );
  }

  // Zip upload: resumable chunks with a progress bar, then the import job and its report.
  const zipInput = h("input", { type: "file", accept: ".zip,application/zip", "data-testid": "zip-file" });
  const progress = h("div", { class: "progress-wrap", hidden: true }, bar(0, { cls: "upload" }), h("span", { class: "progress-text" }));
  const reportArea = h("div");
  const setProgress = (fraction, text) => {
    progress.hidden = false;
    progress.querySelector(".bar-fill").style.width = `${Math.round(fraction * 100)}%`;
    progress.querySelector(".progress-text").textContent = text;
  };
  const uploadButton = h("button", {
    class: "primary",
    "data-testid": "upload-zip",
    onclick: async () => {
      const file = zipInput.files[0];
      if (!file) return showError(new Error(t("choose_file")));
      uploadButton.disabled = true;
      clear(reportArea);
      try {
        const upload = await chunkedUpload(file, (done, total) => setProgress(done / total, `${t("uploading")} ${fmtBytes(done)} / ${fmtBytes(total)}`));
        setProgress(1, t("importing"));
        const job = await api(`${base}/imports/from-upload`, { method: "POST", json: { upload_id: upload.id } });
        const finished = await waitJob(job.id, (j) => setProgress(j.progress, `${t("importing")} ${Math.round(j.progress * 100)}%`), ctx);
        if (finished.status !== "succeeded") throw new Error(finished.error ? finished.error.message : finished.status);
        setProgress(1, t("import_done"));
        reportArea.append(importReport(finished.result));
        await refreshClasses();
      } catch (exc) {
        progress.hidden = true;
        showError(exc);
      } finally {
        uploadButton.disabled = false;
      }
    },
  }, t("upload_zip"));

  // One file into one class.
  const singleLabel = h("input", { placeholder: "dog_bark", "data-testid": "single-class" });
  const singleFile = h("input", { type: "file", accept: "audio/*,.wav,.mp3,.m4a,.flac,.ogg", "data-testid": "single-file" });
  const addButton = h("button", {
    "data-testid": "add-clip",
    onclick: async () => {
      const file = singleFile.files[0];
      if (!file) return showError(new Error(t("choose_file")));
      try {
        const url = `${base}/clips?label=${encodeURIComponent(singleLabel.value.trim())}&filename=${encodeURIComponent(file.name)}`;
        await sendWithProgress("POST", url, file, null, { "Content-Type": "application/octet-stream" });
        showNotice(t("clip_added"));
        await refreshClasses();
      } catch (exc) {
        showError(exc);
      }
    },
  }, t("add_file"));

  const mergeInto = h("input", { placeholder: t("merge_target"), "data-testid": "merge-into" });
  const classes = await refreshClasses();
  main.append(
    h("div", { class: "crumbs" }, h("a", { href: "#/sound/datasets" }, t("nav_datasets")), " / ", dataset.name),
    h("h1", {}, dataset.name),
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("upload_zip")),
      h("p", { class: "muted" }, t("zip_hint")),
      h("div", { class: "row" }, zipInput, uploadButton),
      progress,
      reportArea,
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("classes")),
      h("table", { class: "grid", "data-testid": "class-table" }, h("thead", {}, h("tr", {}, h("th", {}), h("th", {}, t("class_name")), h("th", {}, t("clips")), h("th", {}, t("total_duration")), h("th", {}))), classesBody),
      h(
        "div",
        { class: "row" },
        mergeInto,
        h("button", {
          class: "small",
          "data-testid": "merge",
          onclick: async () => {
            try {
              await api(`${base}/classes/merge`, { method: "POST", json: { sources: [...selected], into: mergeInto.value.trim() } });
              await refreshClasses();
            } catch (exc) {
              showError(exc);
            }
          },
        }, t("merge_selected")),
        h("a", { class: "button small", href: `#/sound/train?dataset=${datasetId}` }, t("train_with_dataset")),
      ),
      clipsArea,
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("add_file")),
      h("div", { class: "row" }, h("label", {}, t("class_name"), singleLabel), singleFile, addButton),
    ),
  );
  if (current && classes.some((c) => c.name === current)) await showClips(current, 0);
}
