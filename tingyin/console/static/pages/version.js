import { api } from "../api.js";
import { h, pct } from "../dom.js";
import { t } from "../i18n.js";
import { statusTag } from "./models.js";

function macro(report) {
  const withSupport = report.per_class.filter((c) => c.support > 0);
  const mean = (key) => (withSupport.length ? withSupport.reduce((s, c) => s + c[key], 0) / withSupport.length : 0);
  return { precision: mean("precision"), recall: mean("recall"), f1: report.macro_f1 };
}

// Confusion matrix as a heat map: row = true class, column = predicted; colour ∝ share of the row.
function heatmap(report) {
  const { classes, confusion_matrix: m } = report;
  return h(
    "table",
    { class: "heatmap", "data-testid": "confusion-matrix" },
    h("thead", {}, h("tr", {}, h("th", { class: "corner" }, t("true_vs_predicted")), classes.map((c) => h("th", { class: "col" }, c)))),
    h(
      "tbody",
      {},
      m.map((row, i) => {
        const total = row.reduce((a, b) => a + b, 0) || 1;
        return h(
          "tr",
          {},
          h("th", {}, classes[i]),
          row.map((n, j) => {
            const share = n / total;
            const hue = i === j ? "37, 99, 235" : "220, 38, 38";
            return h("td", { class: "cell", style: { background: n ? `rgba(${hue}, ${0.12 + 0.88 * share})` : "transparent", color: share > 0.55 ? "#fff" : "inherit" }, title: `${classes[i]} → ${classes[j]}: ${n}` }, n);
          }),
        );
      }),
    ),
  );
}

function summary(v) {
  const r = v.report;
  const m = macro(r);
  return h(
    "div",
    { class: "stats" },
    h("div", { class: "stat" }, h("b", { "data-testid": "accuracy" }, pct(r.accuracy)), t("accuracy")),
    h("div", { class: "stat" }, h("b", {}, pct(m.precision)), t("macro_p")),
    h("div", { class: "stat" }, h("b", {}, pct(m.recall)), t("macro_r")),
    h("div", { class: "stat" }, h("b", {}, pct(m.f1)), t("macro_f1")),
    h("div", { class: "stat" }, h("b", {}, `${r.train_count} / ${r.held_out_count}`), t("train_held_out")),
  );
}

function perClass(r) {
  return h(
    "table",
    { class: "grid", "data-testid": "per-class" },
    h("thead", {}, h("tr", {}, [t("class_name"), t("precision"), t("recall"), "F1", t("held_out"), t("clips")].map((x) => h("th", {}, x)))),
    h("tbody", {}, r.per_class.map((c) => h("tr", {}, h("td", {}, c.name), h("td", { class: "num" }, pct(c.precision)), h("td", { class: "num" }, pct(c.recall)), h("td", { class: "num" }, c.f1.toFixed(3)), h("td", { class: "num" }, c.support), h("td", { class: "num" }, c.clips)))),
  );
}

export async function render(main, { model: modelId, version, query }) {
  const [model, v] = await Promise.all([api(`/v1/sound/models/${modelId}`), api(`/v1/sound/models/${modelId}/versions/${version}`)]);
  main.append(
    h("div", { class: "crumbs" }, h("a", { href: "#/sound/models" }, t("nav_models")), " / ", h("a", { href: `#/sound/models/${modelId}` }, model.name), ` / ${v.name}`),
    h("h1", {}, `${model.name} ${v.name} `, statusTag(v.status)),
  );
  if (!v.report) {
    main.append(h("p", { class: "card" }, v.error || t("no_report_yet")));
    return;
  }
  const r = v.report;
  const { clips: wrong } = await api(`/v1/sound/models/${modelId}/versions/${version}/misclassified`);
  const others = model.versions.filter((o) => o.report && o.version !== v.version);
  const compareWith = query.get("with");
  const compareSelect = h(
    "select",
    { "data-testid": "compare", onchange: (e) => (location.hash = `#/sound/models/${modelId}/versions/${version}${e.target.value ? "?with=" + e.target.value : ""}`) },
    h("option", { value: "" }, t("compare_none")),
    others.map((o) => h("option", { value: o.version, selected: String(o.version) === compareWith }, o.name)),
  );
  main.append(
    h(
      "div",
      { class: "row" },
      h("a", { class: "button", href: `#/sound/validate?model=${modelId}&version=${version}` }, t("nav_validate")),
      h("a", { class: "button", href: `#/sound/services?model=${modelId}&version=${version}` }, t("publish")),
      h("a", { class: "button", href: `/v1/sound/models/${modelId}/versions/${version}/export`, download: "" }, t("export")),
      h("label", { class: "inline" }, t("compare_with"), " ", compareSelect),
    ),
    r.caution ? h("div", { class: "warning" }, document.documentElement.lang === "en" ? r.caution_en : r.caution) : "",
  );
  const compared = compareWith ? model.versions.find((o) => String(o.version) === compareWith && o.report) : null;
  const column = (ver) =>
    h(
      "section",
      { class: "card", "data-testid": `report-V${ver.version}` },
      h("h2", {}, `${ver.name} · ${t("evaluation_report")}`),
      summary(ver),
      h("h3", {}, t("per_class")),
      perClass(ver.report),
      h("h3", {}, t("confusion_matrix")),
      heatmap(ver.report),
    );
  main.append(compared ? h("div", { class: "side-by-side" }, column(v), column(compared)) : column(v));
  main.append(
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("misclassified"), ` (${wrong.length})`),
      wrong.length
        ? h(
            "table",
            { class: "grid", "data-testid": "misclassified" },
            h("thead", {}, h("tr", {}, [t("file"), t("true_class"), t("predicted"), t("score"), t("play")].map((x) => h("th", {}, x)))),
            h(
              "tbody",
              {},
              wrong.map((w) =>
                h(
                  "tr",
                  {},
                  h("td", {}, w.source_name || h("span", { class: "muted" }, t("clip_deleted"))),
                  h("td", {}, w.label),
                  h("td", {}, w.predicted),
                  h("td", { class: "num" }, w.score === null ? "—" : w.score.toFixed(3)),
                  h("td", {}, w.clip_id ? h("audio", { controls: true, preload: "none", src: `/v1/sound/datasets/${w.dataset_id}/clips/${w.clip_id}/audio` }) : ""),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, t("none_misclassified")),
    ),
  );
}
