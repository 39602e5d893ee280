// DOM helpers. Every value reaches the page through text nodes (textContent), never as HTML:
// a prompt, a document, a source URL or an error message is shown, not interpreted.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value") {
      el.value = value;
    } else if (name === "checked" || name === "disabled" || name === "hidden") {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fill(el, ...children) {
  return append(clear(el), children);
}

export function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}

export function callout(kind, title, text) {
  return h("div", { class: `callout ${kind}` }, h("strong", {}, title), " ", text);
}

export function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function when(epoch) {
  if (!epoch) return "–";
  return new Date(epoch * 1000).toLocaleString();
}

export function num(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

export function progressBar(done, failed, total) {
  const bar = h("div", { class: "progress", role: "progressbar" });
  const ok = h("div", { class: "ok" });
  const bad = h("div", { class: "bad" });
  const share = (n) => `${total ? Math.min(100, (100 * n) / total) : 0}%`;
  ok.style.width = share(done);
  bad.style.width = share(failed);
  bar.setAttribute("aria-valuenow", String(total ? Math.round((100 * (done + failed)) / total) : 0));
  bar.append(ok, bad);
  const label = h("span", { class: "progress-label" }, `${done + failed} / ${total}`);
  return h("div", { class: "progress-cell" }, bar, label);
}

const dialog = () => document.getElementById("confirm");

export function confirmAction(text, verb = "Confirm") {
  return new Promise((resolve) => {
    const d = dialog();
    document.getElementById("confirm-text").textContent = text;
    const ok = document.getElementById("confirm-ok");
    const cancel = document.getElementById("confirm-cancel");
    ok.textContent = verb;
    const done = (answer) => {
      ok.onclick = cancel.onclick = d.oncancel = null;
      d.close();
      resolve(answer);
    };
    ok.onclick = () => done(true);
    cancel.onclick = () => done(false);
    d.oncancel = () => done(false);
    d.showModal();
  });
}
