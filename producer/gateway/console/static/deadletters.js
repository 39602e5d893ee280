// Dead letters: jobs that failed for good. Inspect payload and error; redrive or delete.
import { del, getJson, postJson } from "./api.js";
import { badge, callout, confirmAction, fill, h, table, when } from "./dom.js";

export function deadLettersPage(root, who) {
  const list = h("div");
  const detail = h("div", { class: "detail" });
  let notice = null;

  async function refresh() {
    try {
      const letters = await getJson("/deadletters");
      fill(list, notice,
        h("div", { class: "toolbar" },
          h("span", { class: "muted" }, `${letters.length} dead letter(s)`),
          h("button", { class: "ghost", onclick: refresh }, "Refresh"),
          who.admin && letters.length ? h("button", { class: "danger", onclick: purge }, "Purge all…") : null),
        table(["Job", "Task", "Error", "Message", "Tries", "Died", ""], letters.map(row),
          "No dead letters: no job has failed for good."));
    } catch (failure) {
      fill(list, callout("bad", "Cannot list dead letters:", failure.message));
    }
  }

  function row(letter) {
    return [
      h("span", { class: "mono", dataset: { job: letter.job_id } }, letter.job_id),
      h("span", { class: "mono" }, letter.task),
      badge(letter.error_code, "bad"),
      h("span", { class: "clip" }, letter.error_message),
      String(letter.attempts),
      when(letter.dead_at),
      h("div", { class: "row-actions" },
        h("button", { class: "ghost", onclick: () => inspect(letter.job_id) }, "Inspect"),
        h("button", { dataset: { action: "redrive" }, onclick: () => redrive(letter) }, "Redrive"),
        h("button", { class: "danger", dataset: { action: "delete" }, onclick: () => remove(letter) }, "Delete")),
    ];
  }

  async function act(promise, done) {
    try {
      await promise;
      notice = callout("good", "Done:", done);
      fill(detail);
    } catch (failure) {
      notice = callout("bad", "Refused:", failure.message);
    }
    refresh();
  }

  async function redrive(letter) {
    const ok = await confirmAction(`Redrive job ${letter.job_id}? It is sent again under the same id with a fresh attempt budget.`, "Redrive");
    if (ok) act(postJson(`/deadletters/${encodeURIComponent(letter.job_id)}/redrive`), `job ${letter.job_id} sent again.`);
  }

  async function remove(letter) {
    const ok = await confirmAction(`Delete the dead letter of job ${letter.job_id} for good? Its payload is lost.`, "Delete");
    if (ok) act(del(`/deadletters/${encodeURIComponent(letter.job_id)}`), `letter ${letter.job_id} deleted.`);
  }

  async function purge() {
    const ok = await confirmAction("Purge every dead letter of every tenant? Their payloads are lost.", "Purge all");
    if (ok) act(postJson("/deadletters/purge"), "every dead letter deleted.");
  }

  async function inspect(jobId) {
    try {
      const letter = await getJson(`/deadletters/${encodeURIComponent(jobId)}`);
      fill(detail,
        h("h2", {}, `Dead letter ${letter.job_id}`),
        h("dl", { class: "facts" },
          [h("dt", {}, "Task"), h("dd", { class: "mono" }, `${letter.task} on ${letter.queue}`)],
          [h("dt", {}, "Error"), h("dd", {}, badge(letter.error_code, "bad"), " ", letter.error_message)],
          [h("dt", {}, "Attempts"), h("dd", {}, String(letter.attempts))],
          [h("dt", {}, "Last worker"), h("dd", { class: "mono" }, letter.worker || "?")],
          [h("dt", {}, "First seen"), h("dd", {}, when(letter.first_seen_at))],
          [h("dt", {}, "Died"), h("dd", {}, when(letter.dead_at))],
          [h("dt", {}, "Owner"), h("dd", {}, letter.owner || "— (not submitted through the gateway)")]),
        h("h3", {}, "Payload"),
        h("pre", { class: "payload" }, JSON.stringify(letter.payload, null, 2)));
    } catch (failure) {
      fill(detail, callout("bad", `Letter ${jobId}:`, failure.message));
    }
  }

  return {
    enter() {
      fill(root,
        h("div", { class: "page-head" }, h("h1", {}, "Dead letters"),
          h("p", { class: "muted" }, "Jobs that failed for good or ran out of attempts. Inspect why, fix the cause, then redrive them (same job id) or delete them.")),
        list, detail);
      refresh();
    },
    leave() {},
  };
}
