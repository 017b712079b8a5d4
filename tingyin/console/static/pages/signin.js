import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { getLang, setLang, t } from "../i18n.js";

export function render(root, _params, { onSignedIn }) {
  const message = h("div", { id: "messages" });
  const apiKey = h("input", { name: "api_key", autocomplete: "username", "data-testid": "api-key" });
  const secret = h("input", { name: "secret_key", type: "password", autocomplete: "current-password", "data-testid": "secret-key" });
  const token = h("input", { name: "app_token", type: "password", "data-testid": "app-token" });
  let mode = "keys";
  const keysFields = h("div", {}, h("label", {}, "API Key", apiKey), h("label", {}, "Secret Key", secret));
  const tokenFields = h("div", { hidden: true }, h("label", {}, "App Token", token));
  const switcher = h("button", {
    type: "button",
    class: "link",
    "data-testid": "use-token",
    onclick: () => {
      mode = mode === "keys" ? "token" : "keys";
      keysFields.hidden = mode !== "keys";
      tokenFields.hidden = mode === "keys";
      switcher.textContent = mode === "keys" ? t("use_token") : t("use_keys");
    },
  }, t("use_token"));
  const form = h(
    "form",
    {
      class: "card signin",
      onsubmit: async (e) => {
        e.preventDefault();
        const body = mode === "keys" ? { api_key: apiKey.value.trim(), secret_key: secret.value.trim() } : { app_token: token.value.trim() };
        try {
          onSignedIn(await api("/v1/session", { method: "POST", json: body }));
        } catch (exc) {
          clear(message, h("div", { class: "error", role: "alert", "data-testid": "error" }, exc.message));
        }
      },
    },
    h("div", { class: "brand big" }, h("span", { class: "logo" }, "听音"), " tingyin"),
    h("h1", {}, t("sign_in_title")),
    h("p", { class: "muted" }, t("sign_in_hint")),
    message,
    keysFields,
    tokenFields,
    h("button", { type: "submit", class: "primary", "data-testid": "signin" }, t("sign_in")),
    h("div", { class: "row spread" }, switcher, h("button", { type: "button", class: "link", onclick: () => { setLang(getLang() === "zh" ? "en" : "zh"); render(clear(root), _params, { onSignedIn }); } }, getLang() === "zh" ? "English" : "中文")),
  );
  root.append(h("div", { class: "signin-page" }, form));
}
