// The vllm-chill dashboard (GET /ui): plain browser JavaScript, no framework, no build step, no external URL.
// It reads GET /admin/status once, then follows GET /admin/events (server-sent events). All text goes through
// textContent (model names come from users). Paths are relative to the page, so a path prefix in front of the
// proxy keeps working.
// @ts-check
/// <reference lib="dom" />
"use strict";

const TOKEN_KEY = "vllm-chill.adminToken";
const LOG_KEPT = 300;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;
const KIND_LABELS = { coldStart: "cold start", wake: "wake", sleep: "sleep", switch: "switch", stop: "stop" };
const ACTION_LABELS = { load: "Load", sleep: "Sleep", unload: "Unload" };

/** @type {string | null} */
let token = sessionStorage.getItem(TOKEN_KEY);
/** @type {EventSource | null} */
let events = null;
/** @type {any} */
let snapshot = null;
let retryMs = RETRY_MIN_MS;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let retryTimer;

/** @param {string} id */
function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing #${id}`);
  return element;
}

/**
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 */
function el(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

/** @param {string} path */
function apiUrl(path) {
  return new URL(path, document.baseURI);
}

/** @returns {Record<string, string>} */
function authHeaders() {
  return token ? { authorization: `Bearer ${token}` } : {};
}

// ---- connection ----

/**
 * @param {"connecting" | "live" | "reconnecting" | "locked" | "offline"} state
 * @param {string} text
 */
function setConnection(state, text) {
  const node = byId("connection");
  node.dataset.connection = state;
  node.textContent = text;
}

async function connect() {
  clearTimeout(retryTimer);
  events?.close();
  events = null;
  setConnection("connecting", "connecting…");
  let res;
  try {
    res = await fetch(apiUrl("admin/status"), { headers: authHeaders(), cache: "no-store" });
  } catch {
    return retryLater("offline", "proxy unreachable");
  }
  if (res.status === 401 || res.status === 403) {
    await res.body?.cancel();
    return askToken(res.status === 401 ? "This proxy needs its admin token." : "That token was refused.");
  }
  if (!res.ok) {
    await res.body?.cancel();
    return retryLater("offline", `status ${res.status}`);
  }
  render(await res.json());
  byId("forget-token").hidden = !token;
  const url = apiUrl("admin/events");
  if (token) url.searchParams.set("token", token);
  const source = new EventSource(url);
  events = source;
  source.addEventListener("open", () => {
    retryMs = RETRY_MIN_MS;
    setConnection("live", "live");
  });
  source.addEventListener("snapshot", (e) => render(JSON.parse(/** @type {MessageEvent} */ (e).data)));
  source.addEventListener("log", (e) => appendLog(JSON.parse(/** @type {MessageEvent} */ (e).data)));
  source.addEventListener("skipped", (e) => appendSkipped(JSON.parse(/** @type {MessageEvent} */ (e).data).lines));
  source.addEventListener("error", () => {
    if (source !== events) return;
    // CLOSED: the server answered with an error (token, too many dashboards): probe again with a fetch.
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      events = null;
      retryLater("reconnecting", "reconnecting…");
    } else setConnection("reconnecting", "reconnecting…");
  });
}

/**
 * @param {"offline" | "reconnecting"} state
 * @param {string} text
 */
function retryLater(state, text) {
  setConnection(state, `${text} (retry in ${Math.round(retryMs / 1000)} s)`);
  retryTimer = setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
}

/** @param {string} reason */
function askToken(reason) {
  events?.close();
  events = null;
  setConnection("locked", "admin token needed");
  byId("token-reason").textContent = reason;
  byId("token-panel").hidden = false;
  const input = /** @type {HTMLInputElement} */ (byId("token-input"));
  input.value = "";
  input.focus();
}

byId("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ (byId("token-input"));
  token = input.value.trim();
  input.value = "";
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  byId("token-panel").hidden = true;
  retryMs = RETRY_MIN_MS;
  connect();
});

byId("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  connect();
});

// ---- actions ----

/**
 * POSTs an admin action and reports the answer.
 * @param {string} path relative to the proxy's root
 * @param {string} label what the person clicked, for the message
 * @param {HTMLButtonElement} button
 */
async function act(path, label, button) {
  button.disabled = true;
  button.dataset.busy = "1";
  try {
    const res = await fetch(apiUrl(path), { method: "POST", headers: authHeaders() });
    const text = await res.text();
    /** @type {any} */
    let body = null;
    try {
      body = JSON.parse(text);
    } catch { /* not JSON */ }
    if (res.status === 401 || res.status === 403) {
      toast(`${label}: the admin token is ${res.status === 401 ? "missing" : "wrong"}.`, true);
      askToken(res.status === 401 ? "This action needs the admin token." : "That token was refused.");
      return;
    }
    if (!res.ok) {
      const message = body?.error?.message ?? (text.slice(0, 300) || res.statusText);
      const unsupported = res.status === 404 && body?.error?.code === "not_found";
      toast(
        unsupported
          ? `${label} is not available on this proxy (404): ${message}`
          : `${label} failed (${res.status}): ${message}`,
        true,
      );
      return;
    }
    toast(`${label}: ${body?.status ?? "done"}`);
  } catch (error) {
    toast(`${label} failed: ${error instanceof Error ? error.message : String(error)}`, true);
  } finally {
    delete button.dataset.busy;
    button.disabled = false;
    if (snapshot) render(snapshot);
  }
}

/**
 * @param {string} message
 * @param {boolean} [error]
 */
function toast(message, error = false) {
  const box = byId("toasts");
  const node = el("div", error ? "toast error" : "toast", message);
  box.prepend(node);
  while (box.children.length > 4) box.lastElementChild?.remove();
  setTimeout(() => node.remove(), error ? 15_000 : 6_000);
}

byId("unload-all").addEventListener("click", (e) => {
  if (!confirmed("Unload every model?")) return;
  act("admin/unload", "Unload all", /** @type {HTMLButtonElement} */ (e.currentTarget));
});

/** @param {string} question */
function confirmed(question) {
  return confirm(question);
}

// ---- rendering ----

/** @param {number | null | undefined} ms */
function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** @param {string | null | undefined} iso */
function ago(iso) {
  if (!iso) return "—";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}

/** @param {string | null | undefined} iso */
function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString([], { hour12: false });
}

/** @param {any} status */
function render(status) {
  snapshot = status;
  const state = byId("state");
  state.textContent = status.activeModel ? `${status.state} · ${status.activeModel}` : String(status.state);
  state.className = `pill st-${status.state}`;
  const lastError = byId("last-error");
  lastError.hidden = !status.lastError;
  if (status.lastError) {
    lastError.textContent = `Last error${
      status.lastError.model ? ` (${status.lastError.model})` : ""
    }: ${status.lastError.reason} — ${ago(status.lastError.at)}`;
  }
  renderModels(status.models ?? {});
  renderGpus(status.gpus ?? {}, status.models ?? {});
  renderRecent(status.recent ?? []);
}

/** @param {Record<string, any>} models */
function renderModels(models) {
  const box = byId("models");
  const names = Object.keys(models).sort();
  byId("no-models").hidden = names.length > 0;
  /** @type {Map<string, HTMLElement>} */
  const cards = new Map();
  for (const node of Array.from(box.children)) {
    cards.set(/** @type {HTMLElement} */ (node).dataset.model ?? "", /** @type {HTMLElement} */ (node));
  }
  for (const [name, card] of cards) if (!(name in models)) card.remove();
  names.forEach((name, index) => {
    const card = cards.get(name) ?? modelCard(name);
    fillCard(card, models[name]);
    if (box.children[index] !== card) box.insertBefore(card, box.children[index] ?? null);
  });
}

/** @param {string} name */
function modelCard(name) {
  const card = el("article", "card");
  card.dataset.model = name;
  const head = el("div", "card-head");
  head.append(el("h3", "name", name), el("span", "status"));
  const facts = el("dl", "facts");
  for (
    const [key, label] of [
      ["gpus", "GPUs"],
      ["inflight", "In flight"],
      ["held", "Held"],
      ["lastUsed", "Last used"],
      ["lastColdStartMs", "Cold start"],
      ["lastWakeMs", "Wake"],
      ["error", "Error"],
    ]
  ) {
    const dt = el("dt", `k-${key}`, label);
    const dd = el("dd", `v-${key}`);
    dd.dataset.field = key;
    facts.append(dt, dd);
  }
  const buttons = el("div", "buttons");
  for (const action of /** @type {const} */ (["load", "sleep", "unload"])) {
    const button = /** @type {HTMLButtonElement} */ (el("button", `act-${action}`, ACTION_LABELS[action]));
    button.type = "button";
    button.dataset.action = action;
    button.addEventListener("click", () => {
      if (action === "unload" && !confirmed(`Unload ${name}?`)) return;
      act(`admin/models/${encodeURIComponent(name)}/${action}`, `${ACTION_LABELS[action]} ${name}`, button);
    });
    buttons.append(button);
  }
  card.append(head, facts, buttons);
  return card;
}

/**
 * @param {HTMLElement} card
 * @param {any} model
 */
function fillCard(card, model) {
  const status = String(model.status ?? "unknown");
  card.dataset.status = status;
  const badge = /** @type {HTMLElement} */ (card.querySelector(".status"));
  badge.textContent = status;
  badge.className = `status st-${status}`;
  const gpus = Array.isArray(model.gpus) && model.gpus.length
    ? `${model.gpus.join(", ")} · ${Math.round((model.share ?? 0) * 100)} %`
    : "—";
  /** @type {Record<string, string>} */
  const values = {
    gpus,
    inflight: String(model.inflight ?? 0),
    held: String(model.held ?? 0),
    lastUsed: ago(model.lastUsed),
    lastColdStartMs: duration(model.lastColdStartMs),
    lastWakeMs: duration(model.lastWakeMs),
    error: model.error ?? "",
  };
  for (const dd of card.querySelectorAll("dd")) {
    const key = /** @type {HTMLElement} */ (dd).dataset.field ?? "";
    if (dd.textContent !== values[key]) dd.textContent = values[key];
  }
  const hasError = Boolean(model.error);
  for (const node of card.querySelectorAll(".k-error, .v-error")) {
    /** @type {HTMLElement} */ (node).hidden = !hasError;
  }
  /** @type {HTMLElement} */ (card.querySelector(".v-error")).classList.add("error");
  const buttons = /** @type {NodeListOf<HTMLButtonElement>} */ (card.querySelectorAll("button"));
  for (const button of buttons) {
    const action = button.dataset.action;
    if (button.dataset.busy === "1") continue;
    button.disabled = (action === "load" && (status === "ready" || status === "starting" || status === "waking")) ||
      (action === "sleep" && (status === "cold" || status === "sleeping" || status === "failed")) ||
      (action === "unload" && status === "cold");
  }
}

/**
 * @param {Record<string, any>} gpus
 * @param {Record<string, any>} models
 */
function renderGpus(gpus, models) {
  const box = byId("gpus");
  box.replaceChildren();
  for (const id of Object.keys(gpus).sort()) {
    const gpu = gpus[id];
    const share = Math.max(0, Math.min(1, Number(gpu.awakeShare) || 0));
    const row = el("div", "gpu");
    row.dataset.gpu = id;
    const label = el("div", "gpu-label");
    label.append(
      el("span", "id", `GPU ${id} · ${Math.round(share * 100)} % awake`),
      el(
        "span",
        "models",
        (gpu.models ?? []).map((/** @type {string} */ name) =>
          models[name]?.status === "sleeping" ? `${name} (asleep)` : name
        ).join(", ") || "free",
      ),
    );
    const bar = el("div", "bar");
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", String(Math.round(share * 100)));
    bar.setAttribute("aria-label", `GPU ${id} awake share`);
    const fill = el("span");
    fill.style.width = `${share * 100}%`;
    bar.append(fill);
    row.append(label, bar);
    box.append(row);
  }
}

/** @param {any[]} recent */
function renderRecent(recent) {
  const list = byId("recent");
  list.replaceChildren();
  const sorted = [...recent].sort((a, b) => String(b.at).localeCompare(String(a.at)));
  byId("no-recent").hidden = sorted.length > 0;
  for (const op of sorted.slice(0, 20)) {
    const item = el("li");
    item.dataset.kind = String(op.kind);
    item.append(
      el("span", "kind", KIND_LABELS[/** @type {keyof typeof KIND_LABELS} */ (op.kind)] ?? String(op.kind)),
      el("span", "model", String(op.model ?? "")),
      el("span", "ms", duration(op.ms)),
      el("span", "at", clock(op.at)),
    );
    list.append(item);
  }
}

// ---- log tail ----

/** @param {Record<string, unknown>} record */
function appendLog(record) {
  const { time, level, msg, ...fields } = record;
  const line = el("div", "log-line");
  line.dataset.level = String(level);
  const rest = Object.entries(fields)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  line.append(
    el("span", "t", `${clock(/** @type {string} */ (time))} `),
    el("span", `lvl-${level}`, `${String(level).toUpperCase().padEnd(5)} `),
    el("span", "m", String(msg)),
    el("span", "f", rest ? ` ${rest}` : ""),
  );
  pushLogLine(line);
}

/** @param {number} lines */
function appendSkipped(lines) {
  pushLogLine(el("div", "log-line skipped", `… ${lines} log lines skipped (too many to show)`));
}

/** @param {HTMLElement} line */
function pushLogLine(line) {
  const box = byId("log");
  box.append(line);
  while (box.children.length > LOG_KEPT) box.firstElementChild?.remove();
  if (/** @type {HTMLInputElement} */ (byId("log-follow")).checked) box.scrollTop = box.scrollHeight;
}

// Relative times ("12 s ago") age without events.
setInterval(() => snapshot && renderModels(snapshot.models ?? {}), 5000);

connect();
