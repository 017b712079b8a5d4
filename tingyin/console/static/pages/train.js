import { api } from "../api.js";
import { showError } from "../app.js";
import { bar, clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { statusTag } from "./models.js";

export async function render(main, { query }, ctx) {
  const [{ models }, { datasets }] = await Promise.all([api("/v1/sound/models"), api("/v1/sound/datasets")]);
  if (!models.length || !datasets.length) {
    main.append(h("h1", {}, t("nav_train")), h("p", { class: "card" }, t("train_needs"), " ", h("a", { href: "#/sound/models" }, t("nav_models")), " · ", h("a", { href: "#/sound/datasets" }, t("nav_datasets"))));
    return;
  }
  const modelSelect = h("select", { "data-testid": "train-model" }, models.map((m) => h("option", { value: m.id }, m.name)));
  const datasetSelect = h("select", { "data-testid": "train-dataset" }, datasets.map((d) => h("option", { value: d.id }, `${d.name} (${d.total})`)));
  if (query.get("model")) modelSelect.value = query.get("model");
  if (query.get("dataset")) datasetSelect.value = query.get("dataset");
  const baseSelect = h("select", { "data-testid": "train-base" });
  const classBox = h("div", { class: "checks", "data-testid": "train-classes" });
  const status = h("div", { "data-testid": "train-status" });

  function fillBase() {
    const model = models.find((m) => String(m.id) === modelSelect.value);
    clear(baseSelect, h("option", { value: "" }, t("from_scratch")), model.versions.filter((v) => v.status === "ready").map((v) => h("option", { value: v.version }, `V${v.version}`)));
  }
  function fillClasses() {
    const dataset = datasets.find((d) => String(d.id) === datasetSelect.value);
    clear(classBox, Object.entries(dataset.classes).map(([name, count]) => h("label", { class: "check" }, h("input", { type: "checkbox", value: name, checked: true }), ` ${name} (${count})`)));
  }
  modelSelect.addEventListener("change", fillBase);
  datasetSelect.addEventListener("change", fillClasses);
  fillBase();
  fillClasses();

  async function follow(modelId, version) {
    const cancel = h("button", {
      class: "danger small",
      "data-testid": "cancel-training",
      onclick: async () => {
        try {
          await api(`/v1/sound/models/${modelId}/versions/${version}/cancel`, { method: "POST" });
        } catch (exc) {
          showError(exc);
        }
      },
    }, t("cancel"));
    const progress = bar(0, { cls: "train" });
    const label = h("span");
    clear(status, h("h3", {}, `V${version}`), progress, label, cancel);
    const timer = ctx.every(1500, async () => {
      try {
        const v = await api(`/v1/sound/models/${modelId}/versions/${version}`);
        const job = v.job_id ? await api(`/v1/jobs/${v.job_id}`) : null;
        const fraction = job ? job.progress : 0;
        progress.querySelector(".bar-fill").style.width = `${Math.round(fraction * 100)}%`;
        clear(label, statusTag(v.status), ` ${Math.round(fraction * 100)}% `, job && job.message ? h("span", { class: "muted" }, job.message) : "");
        if (!["queued", "training"].includes(v.status)) {
          ctx.stop(timer);
          cancel.remove();
          if (v.status === "ready") status.append(h("a", { class: "button primary", href: `#/sound/models/${modelId}/versions/${version}`, "data-testid": "see-report" }, t("see_report")));
          if (v.error) status.append(h("div", { class: "error" }, v.error));
        }
      } catch (exc) {
        ctx.stop(timer);
        showError(exc);
      }
    });
  }

  const form = h(
    "form",
    {
      class: "card form",
      onsubmit: async (e) => {
        e.preventDefault();
        const classes = [...classBox.querySelectorAll("input:checked")].map((i) => i.value);
        const body = { dataset_id: Number(datasetSelect.value), classes };
        if (baseSelect.value) body.base_version = Number(baseSelect.value);
        try {
          const v = await api(`/v1/sound/models/${modelSelect.value}/versions`, { method: "POST", json: body });
          follow(modelSelect.value, v.version);
        } catch (exc) {
          showError(exc);
        }
      },
    },
    h("label", {}, t("model"), modelSelect),
    h("label", {}, t("dataset"), datasetSelect),
    h("div", { class: "field" }, h("span", {}, t("classes_min2")), classBox),
    h("label", {}, t("base_version"), baseSelect),
    h("button", { type: "submit", class: "primary", "data-testid": "start-training" }, t("start_training")),
  );
  main.append(h("h1", {}, t("nav_train")), h("p", { class: "muted" }, t("train_hint")), form, h("section", { class: "card" }, status));
}
