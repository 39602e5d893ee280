// Fleet: workers, queues per priority, and charts of the last minutes; refreshed every 2 s.
import { getJson } from "./api.js";
import { lineChart } from "./charts.js";
import { age, badge, callout, fill, h, num, table, when } from "./dom.js";

const REFRESH_MS = 2000;

export function fleetPage(root) {
  let timer = null;
  let lastGood = null;

  async function refresh() {
    try {
      const view = await getJson("/fleet");
      lastGood = view;
      render(view, null);
    } catch (failure) {
      render(lastGood, failure);
    }
  }

  function render(view, failure) {
    fill(root,
      h("div", { class: "page-head" },
        h("h1", {}, "Fleet"),
        h("p", { class: "muted" }, "Workers and queues, refreshed every 2 seconds. ",
          view ? `Last update ${when(view.taken_at)}.` : "")),
      failure ? callout("bad", "Cannot read the fleet:", failure.message) : null,
      failure && view ? h("p", { class: "muted" }, "Showing the last state read before the failure.") : null,
      view ? body(view) : null);
  }

  function body(view) {
    const last = view.samples[view.samples.length - 1] || {};
    // The cards show this moment; the charts show the samples kept in Redis.
    const now = {
      tokens: view.workers.reduce((sum, w) => sum + w.recent_tokens_per_s, 0),
      queued: view.queues.reduce((sum, q) => sum + q.depth, 0),
      busy: view.workers.reduce((sum, w) => sum + w.active, 0),
    };
    return [
      view.problems.map((p) => callout("warn", "Attention:", p)),
      h("div", { class: "cards" },
        card("Workers", String(view.workers.length), "answering now"),
        card("Tokens / s", num(now.tokens), "generated, last minute"),
        card("Queued jobs", String(now.queued), "waiting in all queues"),
        card("Busy slots", String(now.busy), "jobs running now"),
        card("Redis", view.redis, "broker and results", "small")),
      h("div", { class: "charts" },
        chart("Tokens / s", view.samples.map((s) => s.tokens_per_s), num(now.tokens)),
        chart("Queue depth", view.samples.map((s) => s.queued), String(now.queued)),
        chart("Batch size", view.samples.map((s) => s.batch_size), num(last.batch_size))),
      h("h2", {}, "Workers"),
      table(["Worker", "Model", "Device", "Compute", "Queues", "In flight", "Tokens/s", "Jobs ok / failed"],
        view.workers.map(workerRow),
        "No worker answered. Start one with `qfleet worker` (its logs say why it is not up)."),
      h("h2", {}, "Queues"),
      table(["Queue", "Depth", "Oldest job", "By priority (0 first)", "Consumers", "Jobs/min", "State"],
        view.queues.map(queueRow), "No queues."),
    ];
  }

  return {
    enter() { refresh(); timer = setInterval(refresh, REFRESH_MS); },
    leave() { clearInterval(timer); },
  };
}

function card(title, value, note, size) {
  return h("div", { class: "card" },
    h("div", { class: "card-title" }, title),
    h("div", { class: `card-value ${size || ""}` }, value),
    h("div", { class: "card-note" }, note));
}

function chart(title, values, latest) {
  return h("div", { class: "card chart-card" },
    h("div", { class: "card-title" }, title, h("span", { class: "latest" }, latest)),
    lineChart(values),
    h("div", { class: "card-note" }, `last ${Math.round(values.length * 2 / 60) || "<1"} min · peak ${num(peak(values))}`));
}

function peak(values) {
  const seen = values.filter((v) => v !== null && v !== undefined);
  return seen.length ? Math.max(...seen) : null;
}

function workerRow(w) {
  const ok = w.jobs.succeeded || 0;
  const failed = (w.jobs.failed || 0) + (w.jobs.crashed || 0);
  return [
    h("span", { class: "mono" }, w.name),
    w.model || (servesModel(w) ? badge("loading…", "warn") : h("span", { class: "muted" }, "none (knowledge base)")),
    w.device || "–",
    w.compute_type || "–",
    w.queues.map((q) => badge(q, "plain")),
    `${w.active} / ${w.concurrency ?? "?"}`,
    num(w.recent_tokens_per_s),
    [String(ok), " / ", failed ? badge(String(failed), "bad") : "0"],
  ];
}

function servesModel(w) {
  return w.queues.includes("qfleet.generate") || w.queues.includes("qfleet.extract");
}

function queueRow(q) {
  const levels = q.priorities.length
    ? q.priorities.map((p) => badge(`p${p.priority}: ${p.depth} · ${age(p.oldest_age_s)}`, "plain"))
    : "–";
  let state = badge("ok", "good");
  if (q.problem) state = badge(q.depth ? "stuck: no worker" : "no worker", q.depth ? "bad" : "warn");
  return [
    h("span", { class: "mono" }, q.name),
    String(q.depth),
    age(q.oldest_age_s),
    levels,
    q.consumers.length ? q.consumers.map((c) => h("div", { class: "mono small" }, c)) : h("span", { class: "muted" }, "none"),
    num(q.rate_per_min),
    q.problem ? [state, h("div", { class: "small muted" }, q.problem)] : state,
  ];
}
