import { api } from "../api.js";
import { go, showError } from "../app.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";

export async function render(main) {
  const { datasets } = await api("/v1/sound/datasets");
  const name = h("input", { name: "name", required: true, "data-testid": "dataset-name", placeholder: "farm_sounds" });
  main.append(
    h("h1", {}, t("nav_datasets")),
    h("p", { class: "muted" }, t("datasets_hint")),
    h(
      "section",
      { class: "card" },
      datasets.length
        ? h(
            "table",
            { class: "grid", "data-testid": "datasets" },
            h("thead", {}, h("tr", {}, h("th", {}, t("dataset_name")), h("th", {}, t("classes")), h("th", {}, t("clips")), h("th", {}))),
            h(
              "tbody",
              {},
              datasets.map((d) =>
                h(
                  "tr",
                  { "data-dataset": d.name },
                  h("td", {}, h("a", { href: `#/sound/datasets/${d.id}` }, d.name)),
                  h("td", { class: "num" }, Object.keys(d.classes).length),
                  h("td", { class: "num" }, d.total),
                  h(
                    "td",
                    { class: "actions" },
                    h("button", {
                      class: "small danger",
                      onclick: async () => {
                        if (!confirm(t("confirm_delete_dataset"))) return;
                        try {
                          await api(`/v1/sound/datasets/${d.id}`, { method: "DELETE" });
                          go("/sound/datasets?r=" + Date.now());
                        } catch (exc) {
                          showError(exc);
                        }
                      },
                    }, t("delete")),
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, t("no_datasets")),
    ),
    h(
      "form",
      {
        class: "card form",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            const d = await api("/v1/sound/datasets", { method: "POST", json: { name: name.value.trim() } });
            go(`/sound/datasets/${d.id}`);
          } catch (exc) {
            showError(exc);
          }
        },
      },
      h("h2", {}, t("create_dataset")),
      h("label", {}, t("dataset_name"), name),
      h("button", { type: "submit", class: "primary", "data-testid": "create-dataset" }, t("create")),
    ),
  );
}
