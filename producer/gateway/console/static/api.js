// The console's JSON API, with the key from sessionStorage as a Bearer token.

const KEY = "qfleet.console.key";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
};

export class ApiFailure extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const listeners = { outage: () => {}, unauthorized: () => {}, recovered: () => {} };
export function onApiEvents(handlers) { Object.assign(listeners, handlers); }

function headers(extra = {}) {
  return { authorization: `Bearer ${session.key}`, ...extra };
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = null;
  try {
    const body = await response.json();
    message = body.error?.message || message;
    code = body.error?.code || null;
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiFailure(response.status, message, code);
}

export async function request(path, { method = "GET", body, signal } = {}) {
  let response;
  try {
    response = await fetch(`/console/api${path}`, {
      method,
      headers: headers(body === undefined ? {} : { "content-type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    const fail = new ApiFailure(0, "the gateway does not answer (is `qfleet gateway` running?)", "gateway_down");
    listeners.outage(fail);
    throw fail;
  }
  if (!response.ok) {
    const fail = await failure(response);
    if (response.status === 401) listeners.unauthorized(fail);
    if (response.status === 503) listeners.outage(fail);
    throw fail;
  }
  listeners.recovered();
  return response;
}

export async function getJson(path) { return (await request(path)).json(); }
export async function postJson(path, body = {}) { return (await request(path, { method: "POST", body })).json(); }
export async function del(path) { return (await request(path, { method: "DELETE" })).json(); }

// Downloads need the Bearer header, so they go through fetch and a temporary object URL.
export async function download(path, filename) {
  const blob = await (await request(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Server-Sent Events over a POST (EventSource can only GET): calls onEvent(name, data).
export async function streamEvents(path, body, onEvent, signal) {
  const response = await request(path, { method: "POST", body, signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
