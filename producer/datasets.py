"""From records with feedback to datasets: an evaluation set, fine-tuning data, knowledge drafts.

- evaluation set (`eval.jsonl`): one `EvalItem` per judged answer or extracted document, with
  the job input to replay, what a right output is, and the scorer to use;
- fine-tuning data (`sft.jsonl`): ChatML `{"messages": [...]}` lines, the conversation the model
  really saw (passages and schema included) ending in the right answer as the assistant turn,
  the format LoRA fine-tuning of Qwen2.5 takes (docs/quality.md);
- knowledge drafts (`kb_drafts.jsonl`): a wrong retrieval-augmented answer whose correction is
  in none of its passages is a gap in the knowledge base; each becomes a draft document (the
  `qfleet kb ingest` JSONL format, version `draft`) for a person to review before ingesting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qfleet.producer.scoring import language, passages_contain
from qfleet.tasks.records import RequestRecord

Scorer = Literal["answer", "fields", "rag"]
# Payload fields that describe a delivery, not the question: left out of replayed inputs.
_DELIVERY_FIELDS = ("job_id", "stream", "priority", "kind", "tenant")


class Expected(BaseModel):
    """What a right output is."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    aliases: list[str] = Field(
        default_factory=list, description="Other ways to write the answer (22 for 二十二)."
    )
    abstain: bool = Field(
        default=False, description="The knowledge base cannot answer: the job should say so."
    )
    object: dict[str, Any] | None = None
    sources: list[dict[str, Any]] = Field(
        default_factory=list, description="Sources (url, version) that hold the answer."
    )


class EvalItem(BaseModel):
    """One case of an evaluation set."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: Literal["generate", "rag", "extract"]
    input: dict[str, Any] = Field(description="The job payload to submit (without job_id).")
    expected: Expected
    scorer: Scorer
    slice: dict[str, str] = Field(default_factory=dict, description="language, schema, source.")
    origin: str | None = Field(default=None, description="The job id the case came from.")


class ExportCounts(BaseModel):
    """What one export wrote."""

    records: int = 0
    eval_items: int = 0
    sft_examples: int = 0
    kb_drafts: int = 0
    skipped: int = Field(default=0, description="Judged wrong without a correction.")


def _replay_input(record: RequestRecord) -> dict[str, Any]:
    return {k: v for k, v in record.input.items() if k not in _DELIVERY_FIELDS}


def _question(record: RequestRecord) -> str:
    messages = record.input.get("messages") or []
    return str(record.input.get("prompt") or (messages[-1]["content"] if messages else ""))


def _expected_text(record: RequestRecord) -> str | None:
    feedback = record.feedback
    assert feedback is not None
    if feedback.verdict == "wrong":
        return feedback.correction if isinstance(feedback.correction, str) else None
    text = record.output.get("text")
    return text if isinstance(text, str) else None


def _source_slice(record: RequestRecord) -> str:
    return record.run_id or record.tenant or "adhoc"


def _answer_cases(record: RequestRecord, counts: ExportCounts) -> Iterable[dict[str, Any]]:
    expected = _expected_text(record)
    if expected is None:
        counts.skipped += 1
        return
    passages = [str(p.get("text", "")) for p in record.passages]
    holding = [p for p in record.passages if passages_contain(expected, [str(p.get("text", ""))])]
    sources = [{"source_url": p["source_url"], "version": p["version"]} for p in holding]
    question = _question(record)
    item = EvalItem(
        id=record.job_id,
        kind=record.kind,
        input=_replay_input(record),
        expected=Expected(text=expected, sources=sources),
        scorer="rag" if record.kind == "rag" else "answer",
        slice={
            "language": language(question),
            "schema": "-",
            "source": sources[0]["source_url"] if sources else _source_slice(record),
        },
        origin=record.job_id,
    )
    yield {"eval": item}
    if record.prompts:
        yield {"sft": [*record.prompts[0], {"role": "assistant", "content": expected}]}
    wrong = record.feedback is not None and record.feedback.verdict == "wrong"
    if record.kind == "rag" and wrong and not passages_contain(expected, passages):
        yield {"draft": _draft(record, question, expected)}


def _draft(record: RequestRecord, question: str, answer: str) -> dict[str, Any]:
    note = record.feedback.note if record.feedback else None
    text = f"{question}\n\n{answer}" + (f"\n\n{note}" if note else "")
    return {
        "id": f"feedback-{record.job_id}",
        "source_url": f"qfleet-feedback://{record.job_id}",
        "version": "draft",
        "title": question[:200],
        "text": text,
        "tags": ["draft", "from-feedback"],
    }


def _schema_name(schema: dict[str, Any]) -> str:
    title = schema.get("title")
    return str(title) if title else ",".join(sorted(schema.get("properties", {})))[:80]


def _extract_cases(record: RequestRecord, counts: ExportCounts) -> Iterable[dict[str, Any]]:
    feedback = record.feedback
    assert feedback is not None
    by_id = {i.get("id"): i for i in record.output.get("items", [])}
    corrections = feedback.correction if isinstance(feedback.correction, dict) else {}
    options = {k: v for k, v in _replay_input(record).items() if k != "documents"}
    for n, document in enumerate(record.input.get("documents", [])):
        doc_id = document.get("id")
        expected = corrections.get(doc_id)
        if expected is None and feedback.verdict == "right":
            expected = (by_id.get(doc_id) or {}).get("object")
        if not isinstance(expected, dict):
            counts.skipped += feedback.verdict == "wrong"
            continue
        yield {
            "eval": EvalItem(
                id=f"{record.job_id}/{doc_id}",
                kind="extract",
                input={**options, "documents": [document]},
                expected=Expected(object=expected),
                scorer="fields",
                slice={
                    "language": language(str(document.get("text", ""))),
                    "schema": _schema_name(options.get("json_schema") or {}),
                    "source": _source_slice(record),
                },
                origin=record.job_id,
            )
        }
        if n < len(record.prompts):
            answer = json.dumps(expected, ensure_ascii=False)
            yield {"sft": [*record.prompts[n], {"role": "assistant", "content": answer}]}


def export_datasets(records: Iterable[RequestRecord], out_dir: Path) -> ExportCounts:
    """Write eval.jsonl, sft.jsonl and kb_drafts.jsonl under `out_dir` from judged records."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = ExportCounts()
    with (
        (out_dir / "eval.jsonl").open("w", encoding="utf-8") as evals,
        (out_dir / "sft.jsonl").open("w", encoding="utf-8") as sft,
        (out_dir / "kb_drafts.jsonl").open("w", encoding="utf-8") as drafts,
    ):
        for record in records:
            if record.feedback is None:
                continue
            counts.records += 1
            cases = _extract_cases if record.kind == "extract" else _answer_cases
            for case in cases(record, counts):
                if "eval" in case:
                    evals.write(case["eval"].model_dump_json() + "\n")
                    counts.eval_items += 1
                elif "sft" in case:
                    sft.write(json.dumps({"messages": case["sft"]}, ensure_ascii=False) + "\n")
                    counts.sft_examples += 1
                else:
                    drafts.write(json.dumps(case["draft"], ensure_ascii=False) + "\n")
                    counts.kb_drafts += 1
    return counts


def read_eval_set(path: Path) -> list[EvalItem]:
    """The items of an evaluation set file (JSONL)."""
    with path.open(encoding="utf-8") as lines:
        return [EvalItem.model_validate_json(line) for line in lines if line.strip()]
