"""Answers that show their evidence: citation checking, the relevance floor, the prompt layout."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ops.bench.rag_scoring import Outcome, Question, normalise
from qfleet.tasks.knowledge import KnowledgeDocument, Passage
from qfleet.tasks.schemas import GenerateJob, JobResult
from qfleet.workers.knowledge.citations import (
    ABSTAIN_EN,
    ABSTAIN_ZH,
    check_citations,
    cited_numbers,
    says_it_does_not_know,
)
from qfleet.workers.knowledge.edge_index import EdgeIndex
from qfleet.workers.knowledge.rag import ANSWER_RULES, RetrievedContext, answer, augment_messages
from qfleet.workers.knowledge.relevance import lexical_coverage, relevance
from qfleet.workers.knowledge.store import KnowledgeStore


def passage(source: str, text: str = "Port 9090.", title: str | None = None) -> Passage:
    return Passage(
        chunk_id=f"chunk-{source}",
        text=text,
        score=0.5,
        source_url=source,
        version="2",
        update_time=datetime(2025, 1, 2, tzinfo=UTC),
        tags=[],
        chunk_index=0,
        latest=True,
        title=title,
    )


def no_model(job: GenerateJob) -> JobResult:
    raise AssertionError("the model must not run for a question below the relevance floor")


def test_markers_are_checked_against_the_passages_given() -> None:
    passages = [passage("kb://a"), passage("kb://b")]
    citations = check_citations("It is 9090 [2], see also [1, 3] and [2].", passages)
    assert [(c.number, c.valid, c.source_url) for c in citations] == [
        (2, True, "kb://b"),
        (1, True, "kb://a"),
        (3, False, None),
    ]
    assert cited_numbers("端口是 9090【1】【4】。") == [1, 4]
    assert check_citations("No markers here.", passages) == []
    assert [c.valid for c in check_citations("[0] [1]", passages)] == [False, True]


def test_the_models_own_i_dont_know_is_recognised() -> None:
    assert says_it_does_not_know("I don't know.")
    assert says_it_does_not_know("  I do not know: the passages do not say.")
    assert says_it_does_not_know("我不知道。")
    assert not says_it_does_not_know("The port is 9090, I know [1].")


def test_a_question_with_no_passage_above_the_floor_is_not_given_to_the_model() -> None:
    # Given retrieval that left no passage (all were below the relevance floor)
    context = RetrievedContext(passages=[], kb_version=3)
    for question, text in (("Who is the CEO?", ABSTAIN_EN), ("公司的股票代码是什么？", ABSTAIN_ZH)):
        job = GenerateJob(prompt=question, retrieval={"top_k": 3})
        # When it is answered
        result = answer(job, context, no_model, cache=None, model="m/org/demo/int8", worker="w")
        # Then it says it does not know, in the question's language, flagged, without the model
        assert result.abstained
        assert result.text == text
        assert (result.model.id, result.model.compute_type) == ("m/org/demo", "int8")
        assert result.usage.completion_tokens == 0
        assert result.sources == []
        assert result.citations == []
        assert result.job_id == job.job_id


def test_rules_follow_the_passages_and_titles_are_shown() -> None:
    job = GenerateJob(prompt="Which port?", retrieval={"top_k": 1})
    context = RetrievedContext(passages=[passage("kb://a", title="Gateway manual")], kb_version=1)
    augmented, _ = augment_messages(job, context)
    system = augmented.chat()[0].content
    assert (
        "[1] Port 9090.\n(source: kb://a · version 2 · updated 2025-01-02 · title: Gateway manual)"
        in system
    )
    assert system.endswith(f"</reference>\n\n{ANSWER_RULES}")
    assert "full sentence" in ANSWER_RULES
    assert "similar product" in ANSWER_RULES


def test_relevance_is_the_cosine_or_the_lexical_coverage() -> None:
    assert lexical_coverage("minimum password length", "Passwords must be 14 characters long")
    assert lexical_coverage("大额报销由谁审批", "报销需要财务总监审批") == pytest.approx(2 / 7)
    assert lexical_coverage("the", "anything") == 0.0  # only stopwords: no terms
    assert relevance(None, 0.25) == 0.25
    assert relevance(0.6, 0.25) == 0.6
    assert relevance(1.2, 0.0) == 1.0


def test_the_store_leaves_out_passages_below_the_floor(embedder: object, tmp_path: Path) -> None:
    # Given a store with a relevance floor and two documents
    store = KnowledgeStore(EdgeIndex(tmp_path), embedder, relevance_floor=0.34)  # type: ignore[arg-type]
    store.ingest(
        [
            KnowledgeDocument(
                source_url="kb://gateway", text="The office gateway listens on port 9090."
            ),
            KnowledgeDocument(source_url="kb://canteen", text="The canteen opens at noon."),
        ]
    )
    try:
        # When a question about one of them is asked, Then it comes back with its relevance
        found = store.search("Which port does the office gateway listen on?", 2)
        assert found[0].source_url == "kb://gateway"
        assert all((p.relevance or 0) >= 0.34 for p in found)
        # When an unrelated question is asked, Then nothing clears the floor
        assert store.search("Where can employees park at the Berlin office?", 2) == []
        assert store.search("公司的股票代码是什么？", 2) == []
        # And without a floor the same question gets passages, with low relevance
        store.relevance_floor = 0.0
        loose = store.search("Where can employees park at the Berlin office?", 2)
        assert loose
        assert all((p.relevance or 0) < 0.34 for p in loose)
    finally:
        store.close()


def test_the_scorer_normalises_and_needs_every_fact() -> None:
    question = Question("en01", "en", "q?", [["2025-05-12", "may12,2025"], ["20000"]], ["kb://a"])
    assert normalise("May 12, 2025 — 20,000 hours") == "may12,2025—20000hours"
    assert Outcome(question, ["kb://a"], "On May 12, 2025, for 20,000 hours [1].").correct
    assert not Outcome(question, ["kb://a"], "On May 12, 2025 [1].").correct
    assert not Outcome(question, ["kb://a"], "[1]").correct
    unanswerable = Question("un01", "en", "q?", [], [])
    assert Outcome(unanswerable, [], "It is not mentioned in the passages.").abstained
    assert Outcome(unanswerable, [], "x", abstained_flag=True).abstained
    assert not Outcome(unanswerable, [], "It is 42 [1].").abstained
