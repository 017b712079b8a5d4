import { api } from "../api.js";
import { copyText, h } from "../dom.js";
import { t } from "../i18n.js";

function mask(value) {
  return value.length <= 8 ? "••••••••" : `${value.slice(0, 4)}${"•".repeat(12)}${value.slice(-4)}`;
}

function credentialRow(label, value, { secret = false, testid } = {}) {
  const shown = h("code", { "data-testid": testid }, secret ? mask(value) : value);
  let revealed = !secret;
  return h(
    "tr",
    {},
    h("th", {}, label),
    h("td", {}, shown),
    h(
      "td",
      { class: "actions" },
      secret &&
        h("button", {
          class: "small",
          onclick: (e) => {
            revealed = !revealed;
            shown.textContent = revealed ? value : mask(value);
            e.target.textContent = revealed ? t("hide") : t("show");
          },
        }, t("show")),
      h("button", {
        class: "small",
        "data-testid": `copy-${testid}`,
        onclick: async (e) => {
          await copyText(value);
          e.target.textContent = t("copied");
          setTimeout(() => (e.target.textContent = t("copy")), 1500);
        },
      }, t("copy")),
    ),
  );
}

function codeBlock(text) {
  return h(
    "div",
    { class: "code" },
    h("button", { class: "small copy", onclick: async (e) => { await copyText(text); e.target.textContent = t("copied"); } }, t("copy")),
    h("pre", {}, text),
  );
}

function examples(host, creds) {
  const { app_id: appId, api_key: key } = creds;
  const baiduCurl = `# 1. access_token (OAuth client credentials)
curl -s "${host}/oauth/2.0/token?grant_type=client_credentials&client_id=${key}&client_secret=<SECRET_KEY>"
# 2. short speech (16 kHz PCM, base64 in JSON)
curl -s -X POST "${host}/server_api" -H 'Content-Type: application/json' \\
  -d "{\\"format\\":\\"pcm\\",\\"rate\\":16000,\\"channel\\":1,\\"cuid\\":\\"demo\\",\\"dev_pid\\":1537,\\"token\\":\\"<ACCESS_TOKEN>\\",\\"speech\\":\\"$(base64 -w0 audio.pcm)\\",\\"len\\":$(stat -c%s audio.pcm)}"`;
  const baiduSdk = `from aip import AipSpeech  # pip install baidu-aip

client = AipSpeech("${appId}", "${key}", "<SECRET_KEY>")
client._AipBase__accessTokenUrl = "${host}/oauth/2.0/token"
client._AipSpeech__asrUrl = "${host}/server_api"
print(client.asr(open("audio.pcm", "rb").read(), "pcm", 16000, {"dev_pid": 1537}))`;
  const easydlSdk = `from aip.easydl import EasyDL  # pip install baidu-aip

client = EasyDL("${appId}", "${key}", "<SECRET_KEY>")
client._AipBase__accessTokenUrl = "${host}/oauth/2.0/token"
print(client.predictSound("${host}/rpc/2.0/ai_custom/v1/sound_cls/<URL_SUFFIX>",
                          open("clip.wav", "rb").read(), {"top_num": 3}))`;
  const volcano = `curl -s -X POST "${host}/api/v1/auc/submit" -H 'Content-Type: application/json' -d '{
  "app": {"appid": "${appId}", "token": "<APP_TOKEN>", "cluster": "volc_auc_common"},
  "user": {"uid": "demo"},
  "audio": {"format": "wav", "url": "https://example.com/meeting.wav"},
  "additions": {"with_speaker_info": "True"}
}'
# then: POST ${host}/api/v1/auc/query with {"appid": "${appId}", "token": "<APP_TOKEN>", "cluster": "volc_auc_common", "id": "<id>"}`;
  const qiniu = `import base64, requests
from qiniu import QiniuMacAuth  # pip install qiniu
from qiniu.auth import QiniuMacRequestsAuth

auth = QiniuMacRequestsAuth(QiniuMacAuth("${key}", "<SECRET_KEY>"))
body = {"voice_id": "demo", "audio": base64.b64encode(open("call.wav", "rb").read()).decode()}
job = requests.post("${host}/?cmd=async", json=body, auth=auth).json()
print(requests.post("${host}/?cmd=pull", json={"session_id": job["session_id"]}, auth=auth).json())`;
  const sami = `import base64, json, requests

payload = {"task_flow": {"type": "merge", "task": [{"task_type": "MusicTaggingGenre34"},
                                                   {"task_type": "MusicTaggingMood10"}]}}
body = {"appkey": "${key}", "token": "<APP_TOKEN>", "namespace": "MusicTagging",
        "payload": json.dumps(payload),
        "data": base64.b64encode(open("song.mp3", "rb").read()).decode()}
answer = requests.post("${host}/api/v1/invoke", json=body).json()
print(answer["status_code"], json.loads(answer["payload"]))`;
  const native = `curl -s -X POST "${host}/v1/transcriptions?language=zh&diarize=true" \\
  -H "Authorization: Bearer <APP_TOKEN>" --data-binary @meeting.wav
curl -s "${host}/v1/transcriptions/<id>/transcript?format=srt" -H "Authorization: Bearer <APP_TOKEN>"`;
  return [
    [t("ex_baidu"), "/server_api, /pro_api", [["curl", baiduCurl], ["baidu-aip", baiduSdk]]],
    [t("ex_easydl"), "/rpc/2.0/ai_custom/v1/sound_cls/<suffix>", [["baidu-aip", easydlSdk]]],
    [t("ex_volcano"), "/api/v1/auc/submit, /api/v1/auc/query", [["curl", volcano]]],
    [t("ex_qiniu"), "/?cmd=async, /?cmd=pull", [["qiniu", qiniu]]],
    [t("ex_sami"), "/api/v1/invoke", [["python", sami]]],
    [t("ex_native"), "/v1/… (OpenAPI: /docs)", [["curl", native]]],
  ];
}

function tabs(items) {
  const body = h("div", { class: "tab-body" });
  const buttons = items.map(([name, text], i) =>
    h("button", {
      class: i === 0 ? "tab active" : "tab",
      onclick: (e) => {
        for (const b of e.target.parentElement.children) b.classList.remove("active");
        e.target.classList.add("active");
        body.replaceChildren(codeBlock(text));
      },
    }, name),
  );
  body.append(codeBlock(items[0][1]));
  return h("div", {}, h("div", { class: "tabs" }, buttons), body);
}

function usageSection(usage) {
  const max = Math.max(1, ...usage.days.map((d) => usage.apis.reduce((s, a) => s + (a.days[d] || 0), 0)));
  const chart = h(
    "div",
    { class: "usage-chart", "data-testid": "usage-chart" },
    usage.days.map((d) => {
      const total = usage.apis.reduce((s, a) => s + (a.days[d] || 0), 0);
      return h(
        "div",
        { class: "usage-col", title: `${d}: ${total}` },
        h("div", { class: "usage-bar", style: { height: `${(total / max) * 100}%` } }),
        h("div", { class: "usage-day" }, d.slice(4, 6) + "-" + d.slice(6)),
      );
    }),
  );
  const table = usage.apis.length
    ? h(
        "table",
        { class: "grid", "data-testid": "usage-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "API"), usage.days.slice(-7).map((d) => h("th", {}, d.slice(4, 6) + "-" + d.slice(6))), h("th", {}, t("today")), h("th", {}, t("quota")))),
        h(
          "tbody",
          {},
          usage.apis.map((a) =>
            h(
              "tr",
              {},
              h("td", {}, h("code", {}, a.api)),
              usage.days.slice(-7).map((d) => h("td", { class: "num" }, a.days[d] || 0)),
              h("td", { class: "num" }, a.today),
              h("td", {}, usage.daily_limit === null ? t("unlimited") : usage.over_daily_limit.includes(a.api) ? h("span", { class: "tag bad" }, t("quota_reached")) : `${a.today} / ${usage.daily_limit}`),
            ),
          ),
        ),
      )
    : h("p", { class: "muted" }, t("no_usage"));
  return h(
    "section",
    { class: "card" },
    h("h2", {}, t("usage_title")),
    h("p", { class: "muted" }, t("quota_state"), ": QPS ", usage.qps_limit ?? t("unlimited"), " · ", t("daily_limit"), " ", usage.daily_limit ?? t("unlimited")),
    chart,
    table,
  );
}

export async function render(main) {
  const [creds, usage] = await Promise.all([api("/v1/app/credentials"), api("/v1/app/usage", { query: { days: 14 } })]);
  const host = location.origin;
  main.append(
    h("h1", {}, t("overview")),
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("credentials")),
      h(
        "table",
        { class: "kv" },
        credentialRow("AppID", creds.app_id, { testid: "app-id" }),
        credentialRow("API Key", creds.api_key, { testid: "api-key" }),
        credentialRow("Secret Key", creds.secret_key, { secret: true, testid: "secret-key" }),
        h("tr", {}, h("th", {}, "App Token"), h("td", { colspan: 2, class: "muted" }, t("token_hint"))),
      ),
    ),
    usageSection(usage),
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("endpoints")),
      h("p", { class: "muted" }, t("endpoints_hint"), " ", h("code", {}, host)),
      examples(host, creds).map(([title, paths, items]) =>
        h("div", { class: "example" }, h("h3", {}, title, " ", h("code", { class: "path" }, paths)), tabs(items)),
      ),
    ),
  );
}
