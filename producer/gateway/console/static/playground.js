// Playground: a streamed chat (with parameters, a JSON schema, retrieval) and an extraction.
import { postJson, streamEvents } from "./api.js";
import { badge, callout, fill, h, num } from "./dom.js";

export function playgroundPage(root) {
  const chat = chatPanel();
  const extraction = extractionPanel();
  return {
    enter() {
      fill(root,
        h("div", { class: "page-head" }, h("h1", {}, "Playground"),
          h("p", { class: "muted" }, "Try prompts, schemas and knowledge questions against the live fleet. Answers stream token by token; with a JSON schema the schema-guided decoder answers (one object, not streamed).")),
        chat.element,
        h("h2", {}, "Extraction"),
        extraction);
    },
    leave() { chat.stop(); },
  };
}

function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", {}, label), input, hint ? h("small", { class: "muted" }, hint) : null);
}

function parameterInputs() {
  return {
    system: h("textarea", { rows: 2, placeholder: "You are a helpful assistant." }),
    max_tokens: h("input", { type: "number", min: 1, max: 4096, value: "128" }),
    temperature: h("input", { type: "number", min: 0, max: 2, step: "0.1", value: "0" }),
    top_p: h("input", { type: "number", min: "0.01", max: 1, step: "0.05", value: "1" }),
    stop: h("input", { placeholder: "e.g. ###, END" }),
    schema: h("textarea", { rows: 4, placeholder: '{"type": "object", "properties": {...}}' }),
    retrieval: h("input", { type: "checkbox" }),
    top_k: h("input", { type: "number", min: 1, max: 20, value: "4" }),
  };
}

function parametersAside(params) {
  return h("aside", { class: "params" }, h("h2", {}, "Parameters"),
    field("System prompt", params.system),
    field("Max tokens", params.max_tokens),
    field("Temperature", params.temperature, "0 = greedy"),
    field("Top-p", params.top_p),
    field("Stop sequences", params.stop, "comma-separated"),
    field("JSON schema", params.schema, "optional: the answer is one object of this schema"),
    h("label", { class: "field check" }, params.retrieval, h("span", {}, "Answer from the knowledge base (retrieval)")),
    field("Passages (top k)", params.top_k));
}

// The request body of one chat turn (throws when the schema is not JSON).
function chatRequest(params, history) {
  const schema = params.schema.value.trim() ? JSON.parse(params.schema.value) : null;
  const messages = params.system.value.trim() ? [{ role: "system", content: params.system.value }] : [];
  return {
    messages: [...messages, ...history],
    max_tokens: Number(params.max_tokens.value),
    temperature: Number(params.temperature.value),
    top_p: Number(params.top_p.value),
    stop: params.stop.value.split(",").map((s) => s.trim()).filter(Boolean),
    json_schema: schema,
    retrieval: params.retrieval.checked,
    top_k: Number(params.top_k.value),
  };
}

function chatPanel() {
  const transcript = h("div", { class: "transcript", "aria-live": "polite" });
  const status = h("div", { class: "status-line" });
  const params = parameterInputs();
  const history = [];
  let controller = null;
  const prompt = h("textarea", { rows: 3, placeholder: "Ask something… (Ctrl+Enter sends)", "aria-label": "prompt" });
  const send = h("button", { type: "button", onclick: () => ask() }, "Send");
  const stop = h("button", { type: "button", class: "ghost", disabled: true, onclick: () => controller?.abort() }, "Stop");
  const reset = h("button", { type: "button", class: "ghost", onclick: () => { history.length = 0; fill(transcript); fill(status); } }, "New chat");
  prompt.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.ctrlKey) ask(); });

  async function ask() {
    const text = prompt.value.trim();
    if (!text || controller) return;
    let request;
    try {
      request = chatRequest(params, [...history, { role: "user", content: text }]);
    } catch (err) {
      fill(status, callout("bad", "The JSON schema does not parse:", err.message));
      return;
    }
    prompt.value = "";
    transcript.append(h("div", { class: "msg user" }, h("div", { class: "who" }, "you"), h("div", { class: "text" }, text)));
    const turn = answerBubble(transcript, status);
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    try {
      await streamEvents("/playground/chat", request, turn.onEvent, controller.signal);
      if (turn.reply()) history.push({ role: "user", content: text }, { role: "assistant", content: turn.reply() });
    } catch (failure) {
      turn.failed(failure);
    } finally {
      controller = null;
      send.disabled = false;
      stop.disabled = true;
      transcript.scrollTop = transcript.scrollHeight;
    }
  }

  const element = h("div", { class: "playground" },
    h("div", { class: "chat" }, h("h2", {}, "Chat"), transcript, status,
      h("div", { class: "composer" }, prompt, h("div", { class: "row-actions" }, send, stop, reset))),
    parametersAside(params));
  return { element, stop() { controller?.abort(); } };
}

// One assistant answer: fills in as SSE events arrive; data-* attributes say how it went.
function answerBubble(transcript, status) {
  const answer = h("div", { class: "text" });
  const meta = h("div", { class: "meta" });
  const bubble = h("div", { class: "msg assistant" }, h("div", { class: "who" }, "assistant"), answer, meta);
  bubble.dataset.state = "waiting";
  transcript.append(bubble);
  fill(status, "Submitting…");
  let reply = "";
  let pieces = 0;
  const fail = (message) => {
    bubble.classList.add("failed");
    bubble.dataset.state = "failed";
    fill(status, message);
  };
  const handlers = {
    job(data) { bubble.dataset.job = data.job_id; fill(status, `job ${data.job_id} queued on ${data.queue}`); },
    status(data) { fill(status, callout("warn", "Waiting:", data.message)); },
    token(data) {
      reply += data.t;
      answer.textContent = reply;
      bubble.dataset.pieces = String(++pieces);
      fill(status, "streaming…");
    },
    done(data) {
      if (data.object !== undefined) {
        reply = JSON.stringify(data.object, null, 2);
        answer.textContent = reply;
        answer.classList.add("mono");
      }
      describe(meta, data);
      bubble.dataset.state = "done";
      fill(status, "");
    },
    error(data) { fail(callout("bad", `The job failed (${data.code}):`, data.message)); },
  };
  return {
    onEvent(name, data) { handlers[name]?.(data); },
    reply() { return bubble.dataset.state === "done" ? reply : ""; },
    failed(failure) {
      fail(failure.name === "AbortError" ? callout("warn", "Stopped:", "the job was cancelled.") : callout("bad", "Refused:", failure.message));
    },
  };
}

function describe(meta, data) {
  const bits = [data.model, data.worker, data.usage ? `${data.usage.prompt_tokens}+${data.usage.completion_tokens} tokens` : null,
    data.tokens_per_s ? `${num(data.tokens_per_s)} tok/s` : null, data.finish_reason ? `finish: ${data.finish_reason}` : null,
    data.cached ? "from the answer cache" : null].filter(Boolean);
  fill(meta, bits.join(" · "));
  if (data.status === "failed") meta.append(callout("bad", "Extraction failed:", data.error || "?"));
  if (data.sources && data.sources.length) {
    meta.append(h("div", { class: "sources" }, h("strong", {}, "Sources: "),
      data.sources.map((s) => h("span", { class: "source" }, h("span", { class: "mono" }, s.source_url), " ",
        badge(`version ${s.version}`, "plain"), " ", badge(`score ${num(s.score, 3)}`, "info")))));
  }
}

function extractionPanel() {
  const docInput = h("textarea", { rows: 8, placeholder: "Paste a document…", "aria-label": "document" });
  const defaultSchema = { type: "object", properties: { name: { type: "string" }, year: { type: "integer" } }, required: ["name"] };
  const schemaInput = h("textarea", { rows: 8, "aria-label": "schema", value: JSON.stringify(defaultSchema, null, 2) });
  const instructions = h("input", { placeholder: "Optional instructions", "aria-label": "instructions" });
  const out = h("div");

  async function extract() {
    let schema;
    try { schema = JSON.parse(schemaInput.value); } catch (err) {
      return fill(out, callout("bad", "The schema does not parse:", err.message));
    }
    fill(out, h("p", { class: "muted" }, "Extracting (the worker answers when the whole object is decoded)…"));
    try {
      const result = await postJson("/playground/extract", { document: docInput.value, json_schema: schema, instructions: instructions.value || null });
      const item = result.items[0];
      fill(out,
        h("p", {}, badge(item.status, item.status === "succeeded" ? "good" : "bad"), " ", `${result.model.id} on ${result.worker} · ${item.completion_tokens} tokens`),
        item.error ? callout("bad", `${item.error_code}:`, item.error) : null,
        h("pre", { class: "payload" }, JSON.stringify(item.object, null, 2)));
    } catch (failure) {
      fill(out, callout("bad", "Extraction failed:", failure.message));
    }
  }

  return h("div", {},
    h("div", { class: "extract" },
      h("label", { class: "field" }, h("span", {}, "Document"), docInput),
      h("label", { class: "field" }, h("span", {}, "JSON schema"), schemaInput)),
    h("div", { class: "row-actions" }, instructions, h("button", { type: "button", onclick: extract }, "Extract")),
    out);
}
