import { api } from "../api.js";
import { go, showError } from "../app.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";

export function statusTag(status) {
  const cls = { ready: "good", failed: "bad", cancelled: "muted", training: "busy", queued: "busy", running: "busy", succeeded: "good" }[status] || "";
  return h("span", { class: `tag ${cls}`, "data-status": status }, t(`status_${status}`));
}

export async function render(main) {
  const { models } = await api("/v1/sound/models");
  const name = h("input", { name: "name", required: true, "data-testid": "model-name", placeholder: "dog_detector" });
  const type = h("select", { name: "type", "data-testid": "model-type" }, h("option", { value: "sound_classification" }, t("type_sound")), h("option", { value: "music_tagging" }, t("type_music")));
  const description = h("textarea", { name: "description", rows: 2, "data-testid": "model-description" });
  const contact = h("input", { name: "contact" });
  const form = h(
    "form",
    {
      class: "card form",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const model = await api("/v1/sound/models", { method: "POST", json: { name: name.value.trim(), type: type.value, description: description.value, contact: contact.value } });
          go(`/sound/models/${model.id}`);
        } catch (exc) {
          showError(exc);
        }
      },
    },
    h("h2", {}, t("create_model")),
    h("label", {}, t("model_type"), type),
    h("label", {}, t("model_name"), name),
    h("label", {}, t("description"), description),
    h("label", {}, t("contact"), contact),
    h("button", { type: "submit", class: "primary", "data-testid": "create-model" }, t("create")),
  );
  const rows = models.map((m) => {
    const last = m.versions[m.versions.length - 1];
    const best = m.versions.filter((v) => v.report).map((v) => v.report.accuracy);
    return h(
      "tr",
      { "data-model": m.name },
      h("td", {}, h("a", { href: `#/sound/models/${m.id}` }, m.name)),
      h("td", {}, m.type === "music_tagging" ? t("type_music") : t("type_sound")),
      h("td", {}, m.versions.length ? `V${last.version}` : "—", " ", last ? statusTag(last.status) : ""),
      h("td", { class: "num" }, best.length ? `${(Math.max(...best) * 100).toFixed(1)}%` : "—"),
      h("td", { class: "muted" }, m.description),
    );
  });
  main.append(
    h("h1", {}, t("nav_models")),
    h("p", { class: "muted" }, t("models_hint")),
    h(
      "section",
      { class: "card" },
      models.length
        ? h("table", { class: "grid", "data-testid": "models" }, h("thead", {}, h("tr", {}, h("th", {}, t("model_name")), h("th", {}, t("model_type")), h("th", {}, t("latest_version")), h("th", {}, t("best_accuracy")), h("th", {}, t("description")))), h("tbody", {}, rows))
        : h("p", { class: "muted" }, t("no_models")),
    ),
    form,
  );
}
