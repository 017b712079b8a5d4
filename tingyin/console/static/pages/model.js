import { api } from "../api.js";
import { go, showError } from "../app.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { statusTag } from "./models.js";

export async function render(main, { model: modelId }, ctx) {
  const model = await api(`/v1/sound/models/${modelId}`);
  const { services } = await api("/v1/sound/services");
  const mine = services.filter((s) => s.model_id === model.id);
  const body = h("tbody");
  const fill = (versions) =>
    body.replaceChildren(
      ...versions
        .slice()
        .reverse()
        .map((v) =>
          h(
            "tr",
            { "data-version": v.version },
            h("td", {}, h("a", { href: `#/sound/models/${model.id}/versions/${v.version}` }, v.name)),
            h("td", {}, statusTag(v.status), v.error ? h("div", { class: "error small" }, v.error) : ""),
            h("td", { class: "num" }, v.report ? `${(v.report.accuracy * 100).toFixed(1)}%` : "—"),
            h("td", { class: "num" }, v.report ? v.report.macro_f1.toFixed(3) : "—"),
            h("td", {}, v.classes.join(", ")),
            h("td", {}, v.base_version ? `V${v.base_version}` : "—"),
            h("td", {}, mine.filter((s) => s.version === v.version).map((s) => h("span", { class: "tag good" }, `${t("online")}: ${s.suffix}`))),
            h(
              "td",
              { class: "actions" },
              v.status === "ready" && h("a", { class: "button small", href: `#/sound/services?model=${model.id}&version=${v.version}` }, t("publish")),
              v.status === "ready" && h("a", { class: "button small", href: `#/sound/validate?model=${model.id}&version=${v.version}` }, t("nav_validate")),
              v.status === "ready" && h("a", { class: "button small", href: `/v1/sound/models/${model.id}/versions/${v.version}/export`, download: "" }, t("export")),
            ),
          ),
        ),
    );
  fill(model.versions);
  if (model.versions.some((v) => ["queued", "training"].includes(v.status))) {
    const timer = ctx.every(2000, async () => {
      const fresh = await api(`/v1/sound/models/${modelId}`);
      fill(fresh.versions);
      if (!fresh.versions.some((v) => ["queued", "training"].includes(v.status))) ctx.stop(timer);
    });
  }
  main.append(
    h("div", { class: "crumbs" }, h("a", { href: "#/sound/models" }, t("nav_models")), " / ", model.name),
    h("h1", {}, model.name, " ", h("span", { class: "muted small" }, model.type === "music_tagging" ? t("type_music") : t("type_sound"))),
    model.description ? h("p", {}, model.description) : "",
    h(
      "div",
      { class: "row" },
      h("a", { class: "button primary", href: `#/sound/train?model=${model.id}`, "data-testid": "train-link" }, t("train_new_version")),
      h("button", {
        class: "danger",
        onclick: async () => {
          if (!confirm(t("confirm_delete_model"))) return;
          try {
            await api(`/v1/sound/models/${model.id}`, { method: "DELETE" });
            go("/sound/models");
          } catch (exc) {
            showError(exc);
          }
        },
      }, t("delete_model")),
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("versions")),
      model.versions.length
        ? h("table", { class: "grid", "data-testid": "versions" }, h("thead", {}, h("tr", {}, [t("version"), t("status"), t("accuracy"), "macro F1", t("classes"), t("base_version"), t("service"), ""].map((x) => h("th", {}, x)))), body)
        : h("p", { class: "muted" }, t("no_versions")),
    ),
  );
}
