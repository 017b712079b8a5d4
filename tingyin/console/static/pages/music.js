import { sendWithProgress } from "../api.js";
import { showError } from "../app.js";
import { bar, clear, download, h } from "../dom.js";
import { t } from "../i18n.js";

export async function render(main) {
  const file = h("input", { type: "file", accept: "audio/*", "data-testid": "music-file" });
  const out = h("div", { "data-testid": "music-result" });
  const player = h("audio", { controls: true, hidden: true });
  const button = h("button", {
    class: "primary",
    "data-testid": "tag-music",
    onclick: async () => {
      const chosen = file.files[0];
      if (!chosen) return showError(new Error(t("choose_file")));
      player.src = URL.createObjectURL(chosen);
      player.hidden = false;
      button.disabled = true;
      clear(out, h("p", { class: "muted" }, t("analysing")));
      try {
        const answer = await sendWithProgress("POST", "/v1/music/tags?embed=true&top_num=8", chosen, null, { "Content-Type": "application/octet-stream" });
        show(answer, chosen.name);
      } catch (exc) {
        clear(out);
        if (exc.code === "not_music") out.append(h("div", { class: "warning big", "data-testid": "not-music" }, t("not_music"), h("div", { class: "muted small" }, exc.message)));
        else showError(exc);
      } finally {
        button.disabled = false;
      }
    },
  }, t("tag_track"));

  function show(answer, name) {
    clear(
      out,
      h(
        "div",
        { class: "stats" },
        h("div", { class: "stat" }, h("b", { "data-testid": "vocal" }, answer.vocal ? t("vocal") : t("instrumental")), `${t("vocal_probability")} ${(answer.vocal_probability * 100).toFixed(0)}%`),
        h("div", { class: "stat" }, h("b", {}, answer.language || "—"), t("language")),
        h("div", { class: "stat" }, h("b", {}, `${answer.duration_s.toFixed(1)} s`), t("duration")),
      ),
      h(
        "div",
        { class: "dimensions" },
        answer.dimensions.map((d) =>
          h(
            "div",
            { class: "card dimension", "data-dimension": d.task_type },
            h("h3", {}, t(`dim_${d.task_type}`)),
            h("div", { class: "bars" }, d.tags.map((tag) => h("div", { class: "bar-row" }, h("span", { class: "bar-label" }, tag.name), bar(tag.probability), h("span", { class: "bar-value" }, tag.probability.toFixed(3))))),
          ),
        ),
      ),
      answer.embedding &&
        h("button", { "data-testid": "download-embedding", onclick: () => download(`${name}.embedding.json`, JSON.stringify(answer.embedding), "application/json") }, `${t("download_embedding")} (${answer.embedding.length})`),
    );
  }

  main.append(h("h1", {}, t("nav_music")), h("p", { class: "muted" }, t("music_hint")), h("section", { class: "card" }, h("div", { class: "row" }, file, button), player), out);
}
