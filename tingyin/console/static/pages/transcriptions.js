import { api, sendWithProgress } from "../api.js";
import { go, showError } from "../app.js";
import { bar, fmtDuration, h } from "../dom.js";
import { t } from "../i18n.js";
import { statusTag } from "./models.js";

const LANGUAGES = ["auto", "zh", "en", "yue", "zh-en"];

// "phrase:weight" per line (or comma-separated) → the API's hot_words parameter.
export function hotWordsParam(text) {
  return text
    .split(/[\n,，]/)
    .map((s) => s.trim())
    .filter(Boolean)
    .join(",");
}

export async function render(main, _params, ctx) {
  const file = h("input", { type: "file", accept: "audio/*,video/*", "data-testid": "audio-file" });
  const url = h("input", { type: "url", placeholder: "https://…/meeting.wav", "data-testid": "audio-url" });
  const language = h("select", { "data-testid": "language" }, LANGUAGES.map((l) => h("option", { value: l }, t(`lang_${l}`))));
  const itn = h("input", { type: "checkbox", checked: true });
  const punctuation = h("input", { type: "checkbox", checked: true });
  const speakers = h("select", { "data-testid": "speakers" }, h("option", { value: "" }, t("speakers_off")), h("option", { value: "auto" }, t("speakers_auto")), [2, 3, 4, 5, 6].map((n) => h("option", { value: n }, `${n}`)));
  const roles = h("input", { type: "checkbox", "data-testid": "roles" });
  const hotWords = h("textarea", { rows: 3, placeholder: t("hot_words_placeholder"), "data-testid": "hot-words" });
  const progress = h("div", { class: "progress-wrap", hidden: true }, bar(0, { cls: "upload" }), h("span", { class: "progress-text" }));
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "transcribe" }, t("transcribe"));

  const form = h(
    "form",
    {
      class: "card form",
      onsubmit: async (e) => {
        e.preventDefault();
        const chosen = file.files[0];
        if (!chosen && !url.value.trim()) return showError(new Error(t("choose_file_or_url")));
        const query = new URLSearchParams({ language: language.value, itn: itn.checked, punctuation: punctuation.checked });
        const hot = hotWordsParam(hotWords.value);
        if (hot) query.set("hot_words", hot);
        if (speakers.value) query.set("diarize", "true");
        if (speakers.value && speakers.value !== "auto") query.set("num_speakers", speakers.value);
        if (roles.checked) query.set("roles", "true");
        submit.disabled = true;
        try {
          let job;
          if (chosen) {
            query.set("filename", chosen.name);
            progress.hidden = false;
            job = await sendWithProgress("POST", `/v1/transcriptions?${query}`, chosen, (done, total) => {
              progress.querySelector(".bar-fill").style.width = `${Math.round((done / total) * 100)}%`;
              progress.querySelector(".progress-text").textContent = `${t("uploading")} ${Math.round((done / total) * 100)}%`;
            }, { "Content-Type": "application/octet-stream" });
          } else {
            query.set("url", url.value.trim());
            job = await api(`/v1/transcriptions?${query}`, { method: "POST" });
          }
          go(`/transcriptions/${job.id}`);
        } catch (exc) {
          showError(exc);
        } finally {
          submit.disabled = false;
          progress.hidden = true;
        }
      },
    },
    h("h2", {}, t("new_transcription")),
    h("div", { class: "row" }, h("label", {}, t("audio_file"), file), h("span", { class: "muted" }, t("or")), h("label", { class: "grow" }, t("audio_url"), url)),
    h("div", { class: "row" }, h("label", {}, t("language"), language), h("label", {}, t("speakers"), speakers)),
    h("div", { class: "row" }, h("label", { class: "check" }, itn, ` ${t("itn")}`), h("label", { class: "check" }, punctuation, ` ${t("punctuation")}`), h("label", { class: "check" }, roles, ` ${t("roles")}`)),
    h("label", {}, t("hot_words"), hotWords),
    progress,
    submit,
  );

  const body = h("tbody");
  const fill = (items) =>
    body.replaceChildren(
      ...items.map((j) =>
        h(
          "tr",
          { "data-job": j.id },
          h("td", {}, h("a", { href: `#/transcriptions/${j.id}` }, j.filename || j.id.slice(0, 8))),
          h("td", {}, j.source),
          h("td", {}, statusTag(j.status), ["queued", "running"].includes(j.status) ? h("span", { class: "muted" }, ` ${Math.round(j.progress * 100)}%`) : "", j.error ? h("div", { class: "error small" }, j.error) : ""),
          h("td", { class: "num" }, fmtDuration(j.duration_ms)),
          h("td", { class: "num" }, j.speakers ?? "—"),
          h("td", {}, j.language || "—"),
          h("td", { class: "muted" }, new Date(j.created_at).toLocaleString()),
        ),
      ),
    );
  const { transcriptions } = await api("/v1/transcriptions");
  fill(transcriptions);
  const timer = ctx.every(2000, async () => {
    const { transcriptions: fresh } = await api("/v1/transcriptions");
    fill(fresh);
    if (!fresh.some((j) => ["queued", "running"].includes(j.status))) ctx.stop(timer);
  });
  main.append(
    h("h1", {}, t("nav_transcriptions")),
    form,
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("jobs")),
      h("table", { class: "grid", "data-testid": "jobs" }, h("thead", {}, h("tr", {}, [t("file"), t("source"), t("status"), t("duration"), t("speakers"), t("language"), t("created")].map((x) => h("th", {}, x)))), body),
    ),
  );
}
