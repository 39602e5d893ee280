"""`qfleet kb ...` (ingest, search, versions, rollback, delete, stats) and `qfleet ask`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import BaseModel

from qfleet.producer.console import ExitCode, fail, fleet_client, handle_errors, print_outcome
from qfleet.tasks.errors import JobFailedError, NotFoundError
from qfleet.tasks.schemas import DEFAULT_MAX_TOKENS, JobError, JobResult, validate_generate_job

if TYPE_CHECKING:
    from qfleet.producer.knowledge import KnowledgeClient


@contextlib.contextmanager
def _knowledge() -> Iterator[KnowledgeClient]:
    from qfleet.producer.knowledge import KnowledgeClient

    with fleet_client() as fleet:
        try:
            yield KnowledgeClient(fleet)
        except JobFailedError as exc:
            error = exc.error
            click.secho(f"qfleet: {error.code}: {error.message}", fg="red", err=True)
            code = ExitCode.NOT_FOUND if error.code == NotFoundError.code else ExitCode.JOB_FAILED
            sys.exit(int(code))


def _echo(result: BaseModel, as_json: bool, text: str) -> None:
    click.echo(result.model_dump_json(indent=2) if as_json else text)


def _filters(tags: tuple[str, ...], updated_after: datetime | None, **more: Any) -> dict[str, Any]:
    fields = {"tags": list(tags), **{k: v for k, v in more.items() if v not in (None, False)}}
    if updated_after is not None:
        # A date without a zone is read as UTC: the knowledge base stores aware times.
        fields["updated_after"] = updated_after.isoformat() + ("" if updated_after.tzinfo else "Z")
    return fields


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
_timeout_option = click.option("--timeout", type=float, default=600, show_default=True)


@click.group()
def kb() -> None:
    """The knowledge base: versioned documents for retrieval-augmented answers.

    \b
    Examples:
      qfleet kb ingest docs/ --tags manual
      qfleet kb search "how do I roll back?" --top-k 3
      qfleet kb versions file:///srv/docs/deploy.md
      qfleet kb rollback file:///srv/docs/deploy.md --to 3f2a9c1b7d4e
    """


@kb.command("ingest")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--tags", "-t", multiple=True, help="Tag every document (repeatable).")
@click.option("--batch", type=int, default=100, show_default=True, help="Documents per job.")
@_timeout_option
@_json_option
@handle_errors
def kb_ingest(path: Path, tags: tuple[str, ...], batch: int, timeout: float, as_json: bool) -> None:
    """Ingest PATH: a JSONL file (id, text, source_url, update_time, version, tags per line) or a
    folder of .txt/.md files. A newer version of a source supersedes the older one."""
    from qfleet.producer.documents import read_documents
    from qfleet.tasks.knowledge import IngestJob

    documents = read_documents(path, tags=list(tags))
    if not documents:
        fail(f"no documents in {path}", ExitCode.NOT_FOUND)
    with _knowledge() as knowledge:
        for start in range(0, len(documents), batch):
            result = knowledge.ingest(
                IngestJob(documents=documents[start : start + batch]), timeout=timeout
            )
            _echo(
                result,
                as_json,
                f"{start + len(result.documents)}/{len(documents)} documents: "
                f"{result.chunks} chunks, {result.embedded} embedded, "
                f"{result.timings.total_ms:.0f} ms (kb version {result.kb_version})",
            )


@kb.command("search")
@click.argument("query")
@click.option("--top-k", "-k", type=int, default=5, show_default=True)
@click.option("--tags", "-t", multiple=True, help="Only passages with any of these tags.")
@click.option("--updated-after", type=click.DateTime(), help="Only sources updated after this.")
@click.option("--source", "source_url", help="Only this source.")
@click.option("--all-versions", "include_superseded", is_flag=True, help="Superseded ones too.")
@_timeout_option
@_json_option
@handle_errors
def kb_search(
    query: str,
    top_k: int,
    tags: tuple[str, ...],
    updated_after: datetime | None,
    source_url: str | None,
    include_superseded: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Print the passages that best match QUERY, with score, source and version."""
    filters = _filters(
        tags, updated_after, source_url=source_url, include_superseded=include_superseded
    )
    with _knowledge() as knowledge:
        result = knowledge.search(query, top_k=top_k, filters=filters, timeout=timeout)
    lines = [
        f"{p.score:.4f}  {p.source_url} (version {p.version}, chunk {p.chunk_index})\n"
        f"        {p.text[:200].replace(chr(10), ' ')}"
        for p in result.passages
    ]
    _echo(result, as_json, "\n".join(lines) or "no passages")


@kb.command("versions")
@click.argument("source_url")
@_json_option
@handle_errors
def kb_versions(source_url: str, as_json: bool) -> None:
    """List the stored versions of SOURCE_URL, oldest first (* marks the active one)."""
    with _knowledge() as knowledge:
        result = knowledge.admin("versions", source_url=source_url)
    lines = [
        f"{'*' if v.latest else ' '} {v.version}  {v.update_time}  {v.chunks} chunks"
        for v in result.versions
    ]
    _echo(result, as_json, "\n".join(lines))


@kb.command("rollback")
@click.argument("source_url")
@click.option("--to", "version", required=True, help="The version to make active again.")
@_json_option
@handle_errors
def kb_rollback(source_url: str, version: str, as_json: bool) -> None:
    """Make an earlier VERSION of SOURCE_URL the one retrieval uses."""
    with _knowledge() as knowledge:
        result = knowledge.admin("rollback", source_url=source_url, version=version)
    _echo(result, as_json, f"{source_url} is at version {version} (kb version {result.kb_version})")


@kb.command("delete")
@click.argument("source_url")
@_json_option
@handle_errors
def kb_delete(source_url: str, as_json: bool) -> None:
    """Delete every version of SOURCE_URL."""
    with _knowledge() as knowledge:
        result = knowledge.admin("delete", source_url=source_url)
    _echo(result, as_json, f"deleted {result.deleted_chunks} chunks of {source_url}")


@kb.command("stats")
@_json_option
@handle_errors
def kb_stats(as_json: bool) -> None:
    """Chunks, sources, backend and embedder of the knowledge base."""
    with _knowledge() as knowledge:
        result = knowledge.admin("stats")
    s = result.stats
    text = (
        f"{s.sources} sources, {s.latest_chunks} active chunks ({s.chunks} stored), "
        f"{s.backend}, embedder {s.embedder}, kb version {result.kb_version}"
        if s
        else ""
    )
    _echo(result, as_json, text)


@click.command()
@click.argument("question")
@click.option("--top-k", "-k", type=int, default=4, show_default=True, help="Passages to use.")
@click.option("--tags", "-t", multiple=True, help="Only passages with any of these tags.")
@click.option("--updated-after", type=click.DateTime(), help="Only sources updated after this.")
@click.option("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, show_default=True)
@click.option("--timeout", type=float, default=300, show_default=True)
@_json_option
@handle_errors
def ask(
    question: str,
    top_k: int,
    tags: tuple[str, ...],
    updated_after: datetime | None,
    max_tokens: int,
    timeout: float,
    as_json: bool,
) -> None:
    """Answer QUESTION from the knowledge base and list the sources it used."""
    job = validate_generate_job(
        {
            "prompt": question,
            "max_tokens": max_tokens,
            "retrieval": {"top_k": top_k, "filters": _filters(tags, updated_after)},
        }
    )
    with fleet_client() as fleet:
        try:
            answered = fleet.wait(fleet.submit(job), timeout=timeout)
            assert isinstance(answered, JobResult), "a generate job answers with a JobResult"
            outcome: JobResult | JobError = answered
        except JobFailedError as exc:
            outcome = exc.error
    print_outcome(outcome, as_json)
    if isinstance(outcome, JobError):
        sys.exit(int(ExitCode.JOB_FAILED))
    if not as_json:
        for number, source in enumerate(outcome.sources, start=1):
            click.echo(f"[{number}] {source.source_url} (version {source.version})", err=True)
        if outcome.cached:
            click.secho("(answered from cache)", dim=True, err=True)
