// Runs and batches: progress of every bulk run, its errors, cancel / resume, output downloads.
import { download, getJson, postJson } from "./api.js";
import { age, badge, callout, confirmAction, fill, h, num, progressBar, table, when } from "./dom.js";

const REFRESH_MS = 2000;
const STATUS_KIND = {
  running: "info", finished: "good", cancelled: "warn", interrupted: "bad", starting: "info", resuming: "info",
};

export function runsPage(root) {
  let timer = null;
  let selected = null;
  let notice = null;
  const list = h("div");
  const detail = h("div", { class: "detail" });

  async function refresh() {
    try {
      const runs = await getJson("/runs");
      fill(list, notice, table(
        ["Run", "Kind", "Status", "Progress", "Failed", "Rate", "ETA", "Updated", ""],
        runs.map(row),
        "No runs yet. Start one with `qfleet run submit FILE --out OUT`, or create a batch through the API."));
      if (selected) await showDetail(selected);
    } catch (failure) {
      fill(list, callout("bad", "Cannot list runs:", failure.message));
    }
  }

  function row(run) {
    const actions = [h("button", { class: "ghost", onclick: () => { selected = run.run_id; showDetail(run.run_id); } }, "Details")];
    if (run.status === "running" || run.status === "interrupted") {
      actions.push(h("button", { class: "danger", dataset: { action: "cancel" }, onclick: () => cancel(run) }, "Cancel"));
    }
    if (run.status === "interrupted") {
      actions.push(h("button", { dataset: { action: "resume" }, onclick: () => resume(run) }, "Resume"));
    }
    return [
      h("span", { class: "mono", dataset: { run: run.run_id } }, run.run_id),
      run.kind || "?",
      badge(run.status, STATUS_KIND[run.status]),
      progressBar(run.done, run.failed, run.total),
      run.failed ? badge(String(run.failed), "bad") : "0",
      run.status === "running" ? `${num(run.rate_per_s, 2)} items/s` : "–",
      run.status === "running" && run.eta_s !== null ? age(run.eta_s) : "–",
      when(run.updated_at),
      h("div", { class: "row-actions" }, actions),
    ];
  }

  async function act(promise, done) {
    try {
      await promise;
      notice = callout("good", "Done:", done);
    } catch (failure) {
      notice = callout("bad", "Refused:", failure.message);
    }
    refresh();
  }

  async function cancel(run) {
    if (!(await confirmAction(`Cancel run ${run.run_id}? No more jobs are sent and those in flight are revoked; finished lines are kept.`, "Cancel run"))) return;
    act(postJson(`/runs/${encodeURIComponent(run.run_id)}/cancel`), `run ${run.run_id} cancelled.`);
  }

  function resume(run) {
    act(postJson(`/runs/${encodeURIComponent(run.run_id)}/resume`), `run ${run.run_id} is followed again by this gateway.`);
  }

  async function showDetail(runId) {
    let run;
    try {
      run = await getJson(`/runs/${encodeURIComponent(runId)}`);
    } catch (failure) {
      fill(detail, callout("bad", `Run ${runId}:`, failure.message));
      return;
    }
    const lines = run.error_lines.map(errorLine);
    fill(detail,
      h("h2", {}, `Run ${run.run_id}`),
      h("dl", { class: "facts" },
        fact("Status", badge(run.status, STATUS_KIND[run.status])),
        fact("Items", `${run.done} done, ${run.failed} failed, ${run.total} total, ${run.in_flight} in flight`),
        fact("Input", h("span", { class: "mono" }, run.input || "?")),
        fact("Output", h("span", { class: "mono" }, run.output || "?")),
        fact("Errors", h("span", { class: "mono" }, run.errors || "?")),
        fact("Owner", run.owner || "— (started outside the gateway: admin only)")),
      h("div", { class: "row-actions" },
        h("button", { disabled: !run.output_available, onclick: () => download(`/runs/${encodeURIComponent(run.run_id)}/output`, `${run.run_id}.jsonl`) }, "Download output"),
        h("button", { class: "ghost", disabled: !run.errors_available, onclick: () => download(`/runs/${encodeURIComponent(run.run_id)}/errors`, `${run.run_id}.errors.jsonl`) }, "Download errors"),
        h("button", { class: "ghost", onclick: () => { selected = null; fill(detail); } }, "Close")),
      h("h3", {}, lines.length ? `Last ${lines.length} error lines` : "No error lines"),
      lines.length ? h("div", { class: "error-lines" }, lines) : null);
  }

  return {
    enter() {
      fill(root,
        h("div", { class: "page-head" }, h("h1", {}, "Runs & batches"),
          h("p", { class: "muted" }, "Bulk runs and the batches built on them, refreshed every 2 seconds. A run nobody follows any more shows as interrupted: resume it here or with `qfleet run resume RUN`.")),
        list, detail);
      refresh();
      timer = setInterval(refresh, REFRESH_MS);
    },
    leave() { clearInterval(timer); },
  };
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

function errorLine(line) {
  let data = null;
  try { data = JSON.parse(line); } catch (_) { /* shown as text */ }
  if (!data || typeof data !== "object") return h("div", { class: "error-line mono" }, line);
  const id = data.id ?? data.custom_id ?? "?";
  const error = data.error ?? data.response?.body?.error ?? data;
  const message = typeof error === "string" ? error : (error.message ?? JSON.stringify(error));
  const code = typeof error === "object" ? (error.code ?? "") : "";
  return h("div", { class: "error-line" },
    h("span", { class: "mono" }, String(id)), " ",
    code ? badge(String(code), "bad") : null, " ",
    h("span", {}, String(message)));
}
