// The console's shell: sign-in state, navigation, language switch and a hash router.
// Every page is a module exporting `render(container, params, ctx)`.

import { api, ApiError, setCsrf } from "./api.js";
import { clear, h } from "./dom.js";
import { getLang, setLang, t } from "./i18n.js";

const ROUTES = [
  [/^\/overview$/, () => import("./pages/overview.js")],
  [/^\/sound\/models$/, () => import("./pages/models.js")],
  [/^\/sound\/models\/(?<model>\d+)$/, () => import("./pages/model.js")],
  [/^\/sound\/models\/(?<model>\d+)\/versions\/(?<version>\d+)$/, () => import("./pages/version.js")],
  [/^\/sound\/datasets$/, () => import("./pages/datasets.js")],
  [/^\/sound\/datasets\/(?<dataset>\d+)$/, () => import("./pages/dataset.js")],
  [/^\/sound\/train$/, () => import("./pages/train.js")],
  [/^\/sound\/validate$/, () => import("./pages/validate.js")],
  [/^\/sound\/services$/, () => import("./pages/services.js")],
  [/^\/transcriptions$/, () => import("./pages/transcriptions.js")],
  [/^\/transcriptions\/(?<job>[\w-]+)$/, () => import("./pages/transcript.js")],
  [/^\/music$/, () => import("./pages/music.js")],
];

const NAV = [
  ["overview", "/overview"],
  ["nav_sound", null],
  ["nav_models", "/sound/models"],
  ["nav_datasets", "/sound/datasets"],
  ["nav_train", "/sound/train"],
  ["nav_validate", "/sound/validate"],
  ["nav_services", "/sound/services"],
  ["nav_speech", null],
  ["nav_transcriptions", "/transcriptions"],
  ["nav_music_group", null],
  ["nav_music", "/music"],
];

const ctx = { app: null, timers: new Set() };

// Pages register pollers here; they stop when the page changes.
ctx.every = (ms, fn) => {
  const id = setInterval(fn, ms);
  ctx.timers.add(id);
  return id;
};
ctx.stop = (id) => {
  clearInterval(id);
  ctx.timers.delete(id);
};

export function go(path) {
  location.hash = "#" + path;
}

function currentPath() {
  const raw = location.hash.replace(/^#/, "") || "/overview";
  const [path, query = ""] = raw.split("?");
  return { path, query: new URLSearchParams(query) };
}

export function errorBox(exc) {
  const message = exc instanceof ApiError ? exc.message : String((exc && exc.message) || exc);
  return h("div", { class: "error", role: "alert", "data-testid": "error" }, message);
}

// Shows the API's message in the page's message area (never a blank page).
export function showError(exc) {
  const area = document.getElementById("messages");
  if (area) clear(area, errorBox(exc));
  else alert(exc.message || exc);
}

export function showNotice(text) {
  const area = document.getElementById("messages");
  if (area) clear(area, h("div", { class: "notice", role: "status" }, text));
}

function layout() {
  const { path } = currentPath();
  const nav = h(
    "nav",
    { class: "sidebar" },
    h("div", { class: "brand" }, h("span", { class: "logo" }, "听音"), " tingyin"),
    NAV.map(([key, target]) =>
      target
        ? h("a", { href: "#" + target, class: path.startsWith(target) ? "active" : "", "data-nav": key }, t(key))
        : h("div", { class: "nav-group" }, t(key)),
    ),
    h("div", { class: "nav-foot" }, h("a", { href: "/docs", target: "_blank" }, "API /docs"), " · ", h("a", { href: "/redoc", target: "_blank" }, "ReDoc")),
  );
  const langButton = h(
    "button",
    { class: "link", "data-testid": "lang", onclick: () => { setLang(getLang() === "zh" ? "en" : "zh"); route(); } },
    getLang() === "zh" ? "English" : "中文",
  );
  const top = h(
    "header",
    { class: "topbar" },
    h("div", { class: "app-name" }, t("signed_in_as"), " ", h("b", { "data-testid": "app-name" }, ctx.app.name), ` (AppID ${ctx.app.app_id})`),
    h("div", {}, langButton, " ", h("button", { class: "link", "data-testid": "signout", onclick: signOut }, t("sign_out"))),
  );
  const main = h("main", { id: "page", class: "page" });
  const shell = h("div", { class: "shell" }, nav, h("div", { class: "content" }, top, h("div", { id: "messages" }), main));
  return { shell, main };
}

async function signOut() {
  try {
    await api("/v1/session", { method: "DELETE" });
  } catch {
    /* the session may have ended already */
  }
  ctx.app = null;
  setCsrf(null);
  route();
}

async function renderSignIn(root) {
  const mod = await import("./pages/signin.js");
  clear(root);
  mod.render(root, {}, {
    onSignedIn(session) {
      ctx.app = session.app;
      setCsrf(session.csrf_token);
      if (!location.hash || location.hash === "#/signin") go("/overview");
      else route();
    },
  });
}

async function route() {
  delete document.body.dataset.pageReady;
  for (const id of ctx.timers) clearInterval(id);
  ctx.timers.clear();
  document.documentElement.lang = getLang() === "zh" ? "zh-CN" : "en";
  document.title = `${t("console_title")} · tingyin`;
  const root = document.getElementById("root");
  if (!ctx.app) {
    try {
      const session = await api("/v1/session");
      ctx.app = session.app;
      setCsrf(session.csrf_token);
    } catch {
      return renderSignIn(root);
    }
  }
  const { path, query } = currentPath();
  const { shell, main } = layout();
  clear(root, shell);
  const match = ROUTES.map(([re, load]) => [path.match(re), load]).find(([m]) => m);
  if (!match) {
    clear(main, h("h1", {}, t("not_found")), h("p", {}, h("a", { href: "#/overview" }, t("overview"))));
    return;
  }
  const [m, load] = match;
  try {
    const mod = await load();
    await mod.render(main, { ...(m.groups || {}), query }, ctx);
    // Tells tests (and anyone curious) which route finished rendering.
    document.body.dataset.pageReady = location.hash;
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) {
      ctx.app = null;
      return renderSignIn(root);
    }
    main.append(errorBox(exc));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (e) => showError(e.reason));
route();
