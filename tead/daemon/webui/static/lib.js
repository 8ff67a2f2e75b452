// What every page of tead's web page shares: the API (with the token), building elements
// (text only: data from the API is never parsed as HTML), formats, and polling.

const TOKEN_KEY = "tead-token";
export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "timed_out", "interrupted"];

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// A request to the daemon's API, with the bearer token if one was given; an ApiError
// with a message for a person if it fails.
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, `The daemon does not answer (${error.message}).`);
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (_) { /* not JSON: the status text */ }
    if (response.status === 401) {
      message = token()
        ? `Wrong token: the daemon refused it (${message}). Enter the right token above.`
        : `This needs the daemon's API token (${message}). Enter it above.`;
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

export async function getJson(path, options) {
  return (await api(path, options)).json();
}

export function postJson(path, body) {
  return api(path, { method: "POST", body: body === undefined ? {} : body }).then((r) => r.json());
}

// An element: attributes (on* as listeners), then children (strings become text nodes).
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function badge(status) {
  return h("span", { class: `badge s-${status}` }, String(status).replace("_", " "));
}

export function notice(message, kind = "error") {
  const box = document.getElementById("notice");
  box.textContent = message || "";
  box.className = kind;
  box.hidden = !message;
}

export function showError(error) {
  if (error && error.name === "AbortError") return;
  notice(error instanceof ApiError ? error.message : String(error));
}

export function when(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  const two = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${two(t.getMonth() + 1)}-${two(t.getDate())} ${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function between(from, to) {
  if (!from) return null;
  return (to ? Date.parse(to) : Date.now()) - Date.parse(from);
}

export function runLink(id) {
  return h("a", { href: `#/runs/${encodeURIComponent(id)}`, class: "mono" }, id);
}

// A page's lifetime: its polls stop and its requests are aborted when it is left.
export function lifetime() {
  const controller = new AbortController();
  const timers = new Set();
  return {
    signal: controller.signal,
    get alive() { return !controller.signal.aborted; },
    // Calls `fn` now and `ms` after each call has settled, until the page is left or
    // `fn` returns false.
    poll(fn, ms) {
      const tick = async () => {
        if (controller.signal.aborted) return;
        let again = true;
        try {
          again = (await fn()) !== false;
        } catch (error) {
          showError(error);
        }
        if (again && !controller.signal.aborted) {
          const timer = setTimeout(() => { timers.delete(timer); tick(); }, ms);
          timers.add(timer);
        }
      };
      tick();
    },
    stop() {
      controller.abort();
      for (const timer of timers) clearTimeout(timer);
    },
  };
}
