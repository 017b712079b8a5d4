import { api } from "../api.js";
import { go, showError } from "../app.js";
import { bar, fmtClock, h } from "../dom.js";
import { t } from "../i18n.js";

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
const CJK = /^(zh|yue|ja|ko)/;

export function speakerColour(speakers, speaker) {
  const index = speakers.indexOf(speaker);
  return index < 0 ? "#6b7280" : COLOURS[index % COLOURS.length];
}

function speakerName(u, roles) {
  if (u.speaker === null || u.speaker === undefined) return null;
  const role = u.role || roles[String(u.speaker)];
  return `${t("speaker")} ${u.speaker}${role ? ` (${role === "S" ? t("role_agent") : role === "C" ? t("role_customer") : role})` : ""}`;
}

function render_transcript(main, job, id) {
  const result = job.result;
  const speakers = result.speakers || [];
  const roles = result.roles || {};
  const cjk = CJK.test(result.language || "");
  const audio = h("audio", { controls: true, preload: "auto", src: `/v1/transcriptions/${id}/audio`, "data-testid": "player", class: "player" });
  const words = [];
  const duration = result.duration_ms || Math.max(1, ...result.utterances.map((u) => u.end_ms));

  const timeline = h(
    "div",
    { class: "timeline", "data-testid": "timeline" },
    result.utterances.map((u) =>
      h("div", {
        class: "turn",
        title: `${speakerName(u, roles) || ""} ${fmtClock(u.start_ms)}–${fmtClock(u.end_ms)}`,
        style: { left: `${(u.start_ms / duration) * 100}%`, width: `${Math.max(0.3, ((u.end_ms - u.start_ms) / duration) * 100)}%`, background: speakerColour(speakers, u.speaker) },
        onclick: () => { audio.currentTime = u.start_ms / 1000; audio.play().catch(() => {}); },
      }),
    ),
    h("div", { class: "cursor" }),
  );
  const cursor = timeline.querySelector(".cursor");

  const legend = speakers.length
    ? h("div", { class: "legend", "data-testid": "speakers" }, speakers.map((s) => h("span", { class: "speaker-chip", "data-speaker": s, style: { borderColor: speakerColour(speakers, s), color: speakerColour(speakers, s) } }, speakerName({ speaker: s }, roles))))
    : null;

  const lines = result.utterances.map((u) => {
    const colour = speakerColour(speakers, u.speaker);
    const content = u.words && u.words.length
      ? u.words.map((w, i) => {
          const span = h("span", { class: "word", "data-start": w.start_ms, "data-end": w.end_ms, onclick: () => { audio.currentTime = w.start_ms / 1000 + 0.001; audio.play().catch(() => {}); } }, w.text);
          words.push(span);
          const gap = !cjk && i > 0 && !/^\s/.test(w.text) ? " " : "";
          return [gap, span];
        })
      : u.text;
    return h(
      "div",
      { class: "utterance", style: { borderLeftColor: colour } },
      h("div", { class: "utt-head" }, speakerName(u, roles) && h("b", { style: { color: colour } }, speakerName(u, roles)), h("button", { class: "link time", onclick: () => { audio.currentTime = u.start_ms / 1000; } }, `${fmtClock(u.start_ms)} – ${fmtClock(u.end_ms)}`)),
      h("div", { class: "utt-text" }, content),
    );
  });

  let active = null;
  audio.addEventListener("timeupdate", () => {
    const ms = audio.currentTime * 1000;
    cursor.style.left = `${Math.min(100, (ms / duration) * 100)}%`;
    const current = words.find((w) => ms >= Number(w.dataset.start) && ms < Number(w.dataset.end));
    if (current !== active) {
      if (active) active.classList.remove("current");
      if (current) current.classList.add("current");
      active = current || null;
    }
  });

  const downloads = h(
    "div",
    { class: "row", "data-testid": "downloads" },
    ["txt", "srt", "vtt", "json"].map((f) => h("a", { class: "button small", href: `/v1/transcriptions/${id}/transcript?format=${f}`, download: `transcript-${id.slice(0, 8)}.${f}`, "data-format": f }, f.toUpperCase())),
    deleteButton(id),
  );
  main.append(
    h("section", { class: "card sticky" }, audio, timeline, legend, downloads),
    h("section", { class: "card transcript", "data-testid": "transcript" }, lines),
  );
}

// A finished transcription (its text, its audio) is deleted at once, on the server too: nothing is kept that
// the user asked to remove.
function deleteButton(id) {
  return h("button", {
    class: "small danger",
    "data-testid": "delete-transcription",
    onclick: async () => {
      if (!confirm(t("confirm_delete_transcription"))) return;
      try {
        await api(`/v1/transcriptions/${id}`, { method: "DELETE" });
        go("/transcriptions?r=" + Date.now());
      } catch (exc) {
        showError(exc);
      }
    },
  }, t("delete"));
}

export async function render(main, { job: id }, ctx) {
  const job = await api(`/v1/transcriptions/${id}`);
  main.append(h("div", { class: "crumbs" }, h("a", { href: "#/transcriptions" }, t("nav_transcriptions")), ` / ${id.slice(0, 8)}`), h("h1", {}, t("transcript")));
  if (job.status === "succeeded") return render_transcript(main, job, id);
  if (job.status === "failed" || job.status === "cancelled") {
    main.append(h("div", { class: "error", "data-testid": "error" }, job.error ? job.error.message : t(`status_${job.status}`)), deleteButton(id));
    return;
  }
  const progress = bar(job.progress, { cls: "train" });
  const label = h("span", {}, `${Math.round(job.progress * 100)}%`);
  const waiting = h("section", { class: "card", "data-testid": "job-progress" }, h("p", {}, t("transcribing")), progress, label, h("button", {
    class: "small danger",
    onclick: async () => {
      try {
        await api(`/v1/transcriptions/${id}`, { method: "DELETE" });
      } catch (exc) {
        showError(exc);
      }
    },
  }, t("cancel")));
  main.append(waiting);
  const timer = ctx.every(1500, async () => {
    const fresh = await api(`/v1/transcriptions/${id}`);
    progress.querySelector(".bar-fill").style.width = `${Math.round(fresh.progress * 100)}%`;
    label.textContent = `${Math.round(fresh.progress * 100)}% ${fresh.message || ""}`;
    if (["succeeded", "failed", "cancelled"].includes(fresh.status)) {
      ctx.stop(timer);
      waiting.remove();
      if (fresh.status === "succeeded") render_transcript(main, fresh, id);
      else main.append(h("div", { class: "error", "data-testid": "error" }, fresh.error ? fresh.error.message : t(`status_${fresh.status}`)), deleteButton(id));
    }
  });
}
