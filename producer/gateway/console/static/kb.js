// Knowledge base: sources and their versions, search with scores, rollback, ingest of a file.
import { getJson, postJson } from "./api.js";
import { badge, callout, confirmAction, fill, h, num, table } from "./dom.js";

const MAX_FILE_BYTES = 200_000;

export function knowledgePage(root, who) {
  const sources = h("div");
  const results = h("div");
  const ingestOut = h("div");
  let notice = null;

  async function loadSources() {
    fill(sources, h("p", { class: "muted" }, "Asking the knowledge base…"));
    try {
      const view = await getJson("/kb/sources");
      const s = view.stats;
      fill(sources, notice,
        h("p", { class: "muted" }, `${s.sources} source(s), ${s.latest_chunks} of ${s.chunks} chunks served (latest versions) · ${s.backend} · embedder ${s.embedder}`),
        table(["Source", "Versions (oldest first)", "Served", who.admin ? "Roll back to" : ""],
          view.sources.map(sourceRow), "The knowledge base is empty: ingest a file below."));
    } catch (failure) {
      fill(sources, callout("bad", "Cannot read the knowledge base:", failure.message));
    }
  }

  function sourceRow(source) {
    const latest = source.versions.find((v) => v.latest);
    const older = source.versions.filter((v) => !v.latest);
    const select = h("select", { "aria-label": `version of ${source.source_url}` },
      older.map((v) => h("option", { value: v.version }, v.version)));
    const control = who.admin && older.length
      ? h("div", { class: "row-actions" }, select,
        h("button", { dataset: { action: "rollback" }, onclick: () => rollback(source.source_url, select.value) }, "Roll back"))
      : h("span", { class: "muted" }, who.admin ? "no older version" : "");
    return [
      h("span", { class: "mono", dataset: { source: source.source_url } }, source.source_url),
      source.versions.map((v) => badge(`${v.version} · ${v.chunks} chunk(s)${v.update_time ? " · " + new Date(v.update_time).toLocaleDateString() : ""}`, v.latest ? "good" : "plain")),
      latest ? latest.version : "–",
      control,
    ];
  }

  async function rollback(url, version) {
    if (!(await confirmAction(`Serve version ${version} of ${url} again? Answers will cite it from now on (cached answers are not reused).`, "Roll back"))) return;
    try {
      await postJson("/kb/rollback", { source_url: url, version });
      notice = callout("good", "Rolled back:", `${url} now serves version ${version}.`);
    } catch (failure) {
      notice = callout("bad", "Rollback refused:", failure.message);
    }
    loadSources();
  }

  async function search(event) {
    event.preventDefault();
    const form = event.target;
    fill(results, h("p", { class: "muted" }, "Searching…"));
    try {
      const view = await postJson("/kb/search", {
        query: form.query.value, top_k: Number(form.top_k.value), include_superseded: form.superseded.checked,
      });
      fill(results,
        h("p", { class: "muted" }, `${view.passages.length} passage(s) at knowledge-base version ${view.kb_version}`),
        view.passages.map((p) => h("div", { class: "passage" },
          h("div", { class: "passage-head" },
            badge(`score ${num(p.score, 3)}`, "info"), " ",
            h("span", { class: "mono" }, p.source_url), " ",
            badge(`version ${p.version}`, p.latest ? "good" : "warn"),
            p.latest ? null : h("span", { class: "small muted" }, " superseded")),
          p.title ? h("div", { class: "passage-title" }, p.title) : null,
          h("div", { class: "passage-text" }, p.text))));
    } catch (failure) {
      fill(results, callout("bad", "Search failed:", failure.message));
    }
  }

  async function ingest(event) {
    event.preventDefault();
    const form = event.target;
    const file = form.file.files[0];
    if (!file) return fill(ingestOut, callout("warn", "No file:", "choose a text file first."));
    if (file.size > MAX_FILE_BYTES) {
      return fill(ingestOut, callout("warn", "Too large:", `the console ingests files up to ${MAX_FILE_BYTES / 1000} kB; use \`qfleet kb ingest\` for more.`));
    }
    fill(ingestOut, h("p", { class: "muted" }, "Ingesting…"));
    try {
      const report = await postJson("/kb/ingest", {
        source_url: form.source_url.value || `file://${file.name}`,
        version: form.version.value || "1",
        title: file.name,
        text: await file.text(),
      });
      const doc = report.documents[0];
      fill(ingestOut, callout("good", "Ingested:", `${doc.source_url} version ${doc.version}: ${doc.status}, ${doc.chunks} chunk(s) (knowledge-base version ${report.kb_version}).`));
      loadSources();
    } catch (failure) {
      fill(ingestOut, callout("bad", "Ingest failed:", failure.message));
    }
  }

  return {
    enter() {
      const searchForm = h("form", { class: "inline-form", onsubmit: search },
        h("input", { name: "query", placeholder: "Ask the knowledge base…", required: "required", "aria-label": "query" }),
        h("label", {}, "top ", h("input", { name: "top_k", type: "number", min: 1, max: 50, value: "5", class: "narrow" })),
        h("label", {}, h("input", { name: "superseded", type: "checkbox" }), " include superseded versions"),
        h("button", { type: "submit" }, "Search"));
      const ingestForm = h("form", { class: "inline-form", onsubmit: ingest },
        h("input", { name: "file", type: "file", accept: ".txt,.md,.csv,.json,.html,text/*", "aria-label": "file" }),
        h("input", { name: "source_url", placeholder: "source URL (default file://NAME)", "aria-label": "source URL" }),
        h("input", { name: "version", placeholder: "version", class: "narrow", "aria-label": "version" }),
        h("button", { type: "submit", disabled: !who.admin }, "Ingest"));
      fill(root,
        h("div", { class: "page-head" }, h("h1", {}, "Knowledge base"),
          h("p", { class: "muted" }, "Every source keeps its versions; retrieval serves the latest unless you roll back. Searches show each passage's score and version.")),
        h("h2", {}, "Sources"), sources,
        h("h2", {}, "Search"), searchForm, results,
        h("h2", {}, "Ingest a small file"),
        who.admin ? null : h("p", { class: "muted" }, "Ingesting and rolling back change the base every tenant shares: they need an admin key."),
        ingestForm, ingestOut);
      loadSources();
    },
    leave() {},
  };
}
