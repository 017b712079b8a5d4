import { api } from "../api.js";
import { showError, showNotice } from "../app.js";
import { clear, copyText, h } from "../dom.js";
import { t } from "../i18n.js";

function sample(host, service) {
  const url = `${host}${service.url}`;
  return `# curl (access_token from ${host}/oauth/2.0/token)
curl -s -X POST "${url}?access_token=<ACCESS_TOKEN>" -H 'Content-Type: application/json' \\
  -d "{\\"sound\\": \\"$(base64 -w0 clip.wav)\\", \\"top_num\\": 3}"

# Python, the official SDK (pip install baidu-aip)
from aip.easydl import EasyDL
client = EasyDL("<APP_ID>", "<API_KEY>", "<SECRET_KEY>")
client._AipBase__accessTokenUrl = "${host}/oauth/2.0/token"
print(client.predictSound("${url}", open("clip.wav", "rb").read(), {"top_num": 3}))`;
}

export async function render(main, { query }) {
  const [{ models }, { services }] = await Promise.all([api("/v1/sound/models"), api("/v1/sound/services")]);
  const ready = models.filter((m) => m.versions.some((v) => v.status === "ready"));
  const reload = () => (location.hash = `#/sound/services?r=${Date.now()}`);
  const versionsOf = (modelId) => (ready.find((m) => m.id === Number(modelId))?.versions || []).filter((v) => v.status === "ready");

  const suffix = h("input", { placeholder: "farm_sounds", "data-testid": "service-suffix" });
  const name = h("input", { placeholder: "Farm sounds", "data-testid": "service-name" });
  const modelSelect = h("select", { "data-testid": "service-model" }, ready.map((m) => h("option", { value: m.id }, m.name)));
  const versionSelect = h("select", { "data-testid": "service-version" });
  const fill = () => clear(versionSelect, versionsOf(modelSelect.value).slice().reverse().map((v) => h("option", { value: v.version }, v.name)));
  if (query.get("model")) modelSelect.value = query.get("model");
  fill();
  if (query.get("version")) versionSelect.value = query.get("version");
  modelSelect.addEventListener("change", fill);

  const form = h(
    "form",
    {
      class: "card form",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await api(`/v1/sound/services/${encodeURIComponent(suffix.value.trim())}`, { method: "PUT", json: { name: name.value.trim(), model_id: Number(modelSelect.value), version: Number(versionSelect.value) } });
          showNotice(t("published"));
          reload();
        } catch (exc) {
          showError(exc);
        }
      },
    },
    h("h2", {}, t("publish_model")),
    h("p", { class: "muted" }, t("publish_hint")),
    h("label", {}, t("url_suffix"), h("div", { class: "row nowrap" }, h("code", { class: "muted" }, "/rpc/2.0/ai_custom/v1/sound_cls/"), suffix)),
    h("label", {}, t("service_name"), name),
    h("label", {}, t("model"), modelSelect),
    h("label", {}, t("version"), versionSelect),
    h("button", { type: "submit", class: "primary", "data-testid": "publish", disabled: !ready.length }, t("publish")),
  );

  const host = location.origin;
  const list = services.map((s) => {
    const model = models.find((m) => m.id === s.model_id);
    const swap = h("select", { "data-testid": "swap-version" }, versionsOf(s.model_id).map((v) => h("option", { value: v.version, selected: v.version === s.version }, v.name)));
    const code = sample(host, s);
    return h(
      "section",
      { class: "card", "data-service": s.suffix },
      h("h3", {}, s.name, " ", h("span", { class: "tag good" }, t("online"))),
      h("p", {}, h("code", { "data-testid": "service-url" }, `${host}${s.url}`), " · ", model ? model.name : "", ` V${s.version}`),
      h(
        "div",
        { class: "row" },
        h("label", { class: "inline" }, t("swap_version"), " ", swap),
        h("button", {
          class: "small",
          "data-testid": "swap",
          onclick: async () => {
            try {
              await api(`/v1/sound/services/${s.suffix}`, { method: "PUT", json: { name: s.name, model_id: s.model_id, version: Number(swap.value) } });
              reload();
            } catch (exc) {
              showError(exc);
            }
          },
        }, t("swap")),
        h("button", {
          class: "small danger",
          "data-testid": `unpublish-${s.suffix}`,
          onclick: async () => {
            if (!confirm(t("confirm_unpublish"))) return;
            try {
              await api(`/v1/sound/services/${s.suffix}`, { method: "DELETE" });
              reload();
            } catch (exc) {
              showError(exc);
            }
          },
        }, t("unpublish")),
        model && h("a", { class: "button small", href: `/v1/sound/models/${s.model_id}/versions/${s.version}/export`, download: "" }, t("export")),
      ),
      h("details", {}, h("summary", {}, t("sample_code")), h("div", { class: "code" }, h("button", { class: "small copy", onclick: () => copyText(code) }, t("copy")), h("pre", {}, code))),
    );
  });
  main.append(h("h1", {}, t("nav_services")), form, h("h2", {}, t("online_services")), ...(list.length ? list : [h("p", { class: "muted" }, t("no_services"))]));
}
