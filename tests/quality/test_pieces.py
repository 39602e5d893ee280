"""The quality loop's pure pieces: redaction, sampling, scorers, corrections, dataset export."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from qfleet.producer.datasets import export_datasets, read_eval_set
from qfleet.producer.evaluate import EvalReport, ItemScore, compare, slice_table
from qfleet.producer.feedback import check_correction, parse_correction
from qfleet.producer.scoring import (
    abstained,
    answer_scores,
    best_answer_scores,
    citation_scores,
    field_scores,
    language,
    normalize,
    retrieval_scores,
)
from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.records import Feedback, Redactor, RequestRecord, run_of, sampled, should_record
from qfleet.tasks.settings import Settings

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


def record(kind: str = "generate", **fields: Any) -> RequestRecord:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "fleet": "t:",
        "job_id": "job1",
        "kind": kind,
        "status": "succeeded",
        "task": "qfleet.generate",
        "started_at": now,
        "finished_at": now,
        "input": {"prompt": "What is the capital of France?", "max_tokens": 8},
        "prompts": [[{"role": "user", "content": "What is the capital of France?"}]],
        "output": {"text": "Lyon", "status": "succeeded"},
    }
    return RequestRecord.model_validate(base | fields)


def feedback(verdict: str, correction: Any = None) -> Feedback:
    return Feedback.model_validate(
        {"verdict": verdict, "correction": correction, "at": "2026-01-01T00:00:00Z"}
    )


def test_redactor_masks_builtin_kinds_and_custom_patterns_but_not_dates() -> None:
    redactor = Redactor(["email", "phone", "card", "ipv4"], [r"ACME-\d+"])
    text = (
        "mail ada@example.com, call +44 20 7946 0958, born 1990-05-01, order ACME-42, ip 10.0.0.1"
    )
    masked = redactor.text(text)
    assert "ada@example.com" not in masked
    assert "7946" not in masked
    assert "ACME-42" not in masked
    assert "[redacted:email]" in masked
    assert "[redacted:phone]" in masked
    assert "[redacted:pattern0]" in masked
    assert "[redacted:ipv4]" in masked
    assert "1990-05-01" in masked  # a date is not a phone number
    nested = redactor.value({"messages": [{"content": "ada@example.com"}], "n": 3})
    assert nested == {"messages": [{"content": "[redacted:email]"}], "n": 3}


def test_sampling_is_stable_per_job_and_near_the_rate() -> None:
    ids = [f"job-{n}" for n in range(4000)]
    share = sum(sampled(i, 0.25) for i in ids) / len(ids)
    assert 0.2 < share < 0.3
    assert [sampled(i, 0.25) for i in ids[:50]] == [sampled(i, 0.25) for i in ids[:50]]
    url = "postgresql://x@127.0.0.1/db"
    assert not should_record(Settings(records="off", records_url=url), "a")
    assert should_record(Settings(records="on", records_url=url), "a")
    with pytest.raises(ValueError, match="records_url"):
        Settings(records="on")


def test_run_of_reads_bulk_run_job_ids() -> None:
    assert run_of("nightly-01.item7") == "nightly-01"
    assert run_of("3f2a9c") is None


def test_answer_and_field_scorers() -> None:
    assert normalize("  The Paris!  ") == "paris"
    assert answer_scores("Paris", "paris.") == {"exact": 0.0, "normalized": 1.0, "contains": 1.0}
    assert answer_scores("Paris", "It is Paris.")["contains"] == 1.0
    assert answer_scores("巴黎", "答案是巴黎。")["contains"] == 1.0
    assert language("法国的首都是哪里？") == "zh"
    assert language("Where is Paris?") == "en"
    scores = field_scores({"name": "Ada", "age": 36}, {"name": "ada", "age": 35})
    assert scores == {"field_accuracy": 0.5, "exact_record": 0.0}
    assert field_scores({"name": "Ada"}, {"name": "Ada"})["exact_record"] == 1.0
    cited = [{"source_url": "a", "version": "1"}, {"source_url": "b", "version": "2"}]
    assert retrieval_scores([{"source_url": "b", "version": "3"}], cited, k=1) == {
        "hit_at_k": 0.0,
        "stale_citations": 1.0,
    }


def test_extraction_corrections_are_checked_against_the_jobs_schema() -> None:
    extract = record(
        "extract",
        task="qfleet.extract",
        input={"json_schema": SCHEMA, "documents": [{"id": "d1", "text": "Ada, 36"}]},
    )
    assert check_correction(extract, {"name": "Ada", "age": 36}) == {
        "d1": {"name": "Ada", "age": 36}
    }
    assert check_correction(extract, '{"d1": {"name": "Ada", "age": 36}}') == {
        "d1": {"name": "Ada", "age": 36}
    }
    with pytest.raises(InvalidJobError, match="age"):
        check_correction(extract, {"name": "Ada", "age": "thirty-six"})
    with pytest.raises(InvalidJobError, match="not an object"):
        check_correction(record(), {"answer": "Paris"})
    assert parse_correction("Paris") == "Paris"
    assert parse_correction('{"a": 1}') == {"a": 1}


def test_export_writes_eval_items_chatml_and_knowledge_drafts(tmp_path: Path) -> None:
    passages = [{"text": "Lyon is a city in France.", "source_url": "kb://fr", "version": "1"}]
    rag_prompt = [{"role": "system", "content": "[1] Lyon is a city in France."},
                  {"role": "user", "content": "What is the capital of France?"}]  # fmt: skip
    records = [
        record(feedback=feedback("wrong", "Paris")),
        record(job_id="job2", feedback=feedback("wrong")),  # no correction: skipped
        record(
            job_id="job3",
            kind="rag",
            passages=passages,
            prompts=[rag_prompt],
            feedback=feedback("wrong", "Paris"),
        ),
        record(
            "extract",
            job_id="job4",
            task="qfleet.extract",
            input={"json_schema": SCHEMA, "documents": [{"id": "d1", "text": "Ada, 36"}]},
            prompts=[[{"role": "user", "content": "Document: Ada, 36"}]],
            output={
                "items": [{"id": "d1", "status": "succeeded", "object": {"name": "Ada", "age": 36}}]
            },
            feedback=feedback("right"),
        ),
        record(job_id="job5"),  # no feedback: not exported
    ]
    counts = export_datasets(records, tmp_path)
    written = (counts.eval_items, counts.sft_examples, counts.kb_drafts)
    assert (counts.records, *written, counts.skipped) == (4, 3, 3, 1, 1)
    items = read_eval_set(tmp_path / "eval.jsonl")
    assert [(i.kind, i.scorer) for i in items] == [
        ("generate", "answer"),
        ("rag", "rag"),
        ("extract", "fields"),
    ]
    assert items[0].expected.text == "Paris"
    assert "job_id" not in items[0].input
    assert items[2].expected.object == {"name": "Ada", "age": 36}
    sft = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert sft[0]["messages"][-1] == {"role": "assistant", "content": "Paris"}
    assert sft[1]["messages"][0]["role"] == "system"  # the passages the model saw are kept
    draft = json.loads((tmp_path / "kb_drafts.jsonl").read_text())
    assert draft["version"] == "draft"
    assert "Paris" in draft["text"]


def _report(name: str, scores: dict[str, float]) -> EvalReport:
    items = [
        ItemScore(
            id=k, kind="generate", slice={"language": "en", "schema": "-", "source": "s"}, primary=v
        )
        for k, v in scores.items()
    ]
    mean = sum(scores.values()) / len(scores)
    return EvalReport(
        name=name, target="live", created_at=datetime.now(UTC), models=["m"], score=mean,
        metrics={}, items=items,
    )  # fmt: skip


def test_compare_lists_items_that_got_better_and_worse() -> None:
    a, b = (
        _report("a", {"x": 0.0, "y": 1.0, "z": 1.0}),
        _report("b", {"x": 1.0, "y": 0.0, "z": 1.0}),
    )
    diff = compare(a, b)
    assert (diff.better, diff.worse, diff.same) == (["x"], ["y"], 1)
    assert ("language", "en", 3, pytest.approx(2 / 3)) in slice_table(a)


def test_abstentions_and_accepted_spellings() -> None:
    assert abstained("I don't know: the reference material does not say.")
    assert abstained("参考资料中没有提到这个信息。")
    assert not abstained("The limit is 600 requests per minute.")
    assert best_answer_scores(["二十二", "22"], "需要放行22端口。")["contains"] == 1.0


def test_citation_markers_outside_the_passages_and_marker_only_answers() -> None:
    assert citation_scores("Port 8080 [1][4].", 3) == {"invalid_markers": 1.0, "marker_only": 0.0}
    assert citation_scores(" [1] ", 3) == {"invalid_markers": 0.0, "marker_only": 1.0}
