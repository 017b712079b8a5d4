import { api, sendWithProgress } from "../api.js";
import { showError } from "../app.js";
import { bar, clear, h } from "../dom.js";
import { t } from "../i18n.js";

export function resultBars(results, threshold) {
  return h(
    "div",
    { class: "bars", "data-testid": "results" },
    results.map((r) =>
      h(
        "div",
        { class: r.score >= threshold ? "bar-row" : "bar-row below", "data-name": r.name },
        h("span", { class: "bar-label" }, r.name),
        bar(r.score),
        h("span", { class: "bar-value" }, r.score.toFixed(3)),
      ),
    ),
  );
}

export async function render(main, { query }) {
  const { models } = await api("/v1/sound/models");
  const ready = models.filter((m) => m.versions.some((v) => v.status === "ready"));
  main.append(h("h1", {}, t("nav_validate")), h("p", { class: "muted" }, t("validate_hint")));
  if (!ready.length) {
    main.append(h("p", { class: "card" }, t("no_ready_versions")));
    return;
  }
  const modelSelect = h("select", { "data-testid": "validate-model" }, ready.map((m) => h("option", { value: m.id }, m.name)));
  const versionSelect = h("select", { "data-testid": "validate-version" });
  const fillVersions = () => {
    const m = ready.find((x) => String(x.id) === modelSelect.value);
    clear(versionSelect, m.versions.filter((v) => v.status === "ready").reverse().map((v) => h("option", { value: v.version }, v.name)));
  };
  if (query.get("model") && ready.some((m) => String(m.id) === query.get("model"))) modelSelect.value = query.get("model");
  fillVersions();
  if (query.get("version")) versionSelect.value = query.get("version");
  modelSelect.addEventListener("change", fillVersions);

  const fileInput = h("input", { type: "file", accept: "audio/*,.wav,.mp3,.m4a,.flac,.ogg", "data-testid": "validate-file" });
  const threshold = h("input", { type: "range", min: 0, max: 1, step: 0.01, value: 0.1, "data-testid": "threshold" });
  const thresholdValue = h("span", {}, "0.10");
  const out = h("div");
  const player = h("audio", { controls: true, hidden: true });
  let last = null;
  const draw = () => {
    thresholdValue.textContent = Number(threshold.value).toFixed(2);
    if (last) clear(out, resultBars(last, Number(threshold.value)));
  };
  threshold.addEventListener("input", draw);

  async function classify(blob) {
    player.src = URL.createObjectURL(blob);
    player.hidden = false;
    const model = ready.find((m) => String(m.id) === modelSelect.value);
    const version = model.versions.find((v) => String(v.version) === versionSelect.value);
    try {
      const answer = await sendWithProgress("POST", `/v1/sound/models/${model.id}/versions/${versionSelect.value}/predict?top_num=${version.classes.length}`, blob, null, { "Content-Type": "application/octet-stream" });
      last = answer.results;
      draw();
    } catch (exc) {
      clear(out);
      showError(exc);
    }
  }

  let recorder = null;
  const recordButton = h("button", {
    type: "button",
    onclick: async () => {
      if (recorder) {
        recorder.stop();
        return;
      }
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        const chunks = [];
        recorder = new MediaRecorder(stream);
        recorder.ondataavailable = (e) => chunks.push(e.data);
        recorder.onstop = () => {
          stream.getTracks().forEach((tr) => tr.stop());
          recorder = null;
          recordButton.textContent = t("record");
          classify(new Blob(chunks, { type: chunks[0] ? chunks[0].type : "audio/webm" }));
        };
        recorder.start();
        recordButton.textContent = t("stop_recording");
      } catch (exc) {
        showError(new Error(`${t("mic_unavailable")}: ${exc.message || exc}`));
      }
    },
  }, t("record"));

  main.append(
    h(
      "section",
      { class: "card form" },
      h("label", {}, t("model"), modelSelect),
      h("label", {}, t("version"), versionSelect),
      h("div", { class: "row" }, fileInput, h("button", { type: "button", class: "primary", "data-testid": "validate", onclick: () => (fileInput.files[0] ? classify(fileInput.files[0]) : showError(new Error(t("choose_file")))) }, t("classify")), recordButton),
      h("label", { class: "inline" }, t("threshold"), " ", threshold, " ", thresholdValue),
      player,
      out,
    ),
  );
}
