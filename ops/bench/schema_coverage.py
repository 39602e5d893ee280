"""How many real-world JSON Schemas qfleet extraction accepts, compiles and decodes validly.

    python -m ops.bench.schema_coverage --corpus DIR [--sample 40] [--json]

`DIR` is a clone of the JSONSchemaBench collection (github.com/guidance-ai/jsonschemabench; its
`data/<subset>/*.json` files; a bare git directory is read with `git show`). For every schema:
  accepted   `check_extract_schema` takes it (else the refusal's keyword is counted)
  compiles   the worker's grammar (relaxed for copied values) compiles with llguidance
and, for a sample of accepted schemas, one document decoded on the tiny random model: the share
whose object validates (jsonschema, formats asserted) and whose item is not `failed`. The corpus
is not part of qfleet; only this script is.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from qfleet.tasks.errors import QfleetError
from qfleet.tasks.extract_schema import check_extract_schema


def corpus(folder: Path) -> Iterator[tuple[str, str, Any]]:
    """(subset, name, schema) for each schema file of a checkout or bare git directory."""
    if (folder / "data").is_dir():
        for path in sorted((folder / "data").glob("*/*.json")):
            yield path.parent.name, path.name, _load(path.read_text(encoding="utf-8"))
        return
    listing = subprocess.run(
        ["git", "--git-dir", str(folder), "ls-tree", "-r", "HEAD", "data/"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    entries = [line.split(maxsplit=3) for line in listing if line.endswith(".json")]
    blobs = subprocess.run(
        ["git", "--git-dir", str(folder), "cat-file", "--batch"],
        input="".join(f"{e[2]}\n" for e in entries).encode(), check=True, capture_output=True,
    ).stdout  # fmt: skip
    offset = 0
    for entry in entries:
        header_end = blobs.index(b"\n", offset)
        header = blobs[offset:header_end].split()
        if header[-1] == b"missing":  # a blob the mirror does not hold
            offset = header_end + 1
            continue
        size = int(header[2])
        body = blobs[header_end + 1 : header_end + 1 + size]
        offset = header_end + 1 + size + 1
        yield entry[3].split("/")[1], entry[3], _load(body.decode("utf-8", errors="replace"))


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _reason(message: str) -> str:
    """The refusal's keyword (or kind), for counting."""
    found = re.search(r"keyword '([^']+)'|format '([^']+)'|(recursive \$ref|\$ref)", message)
    if found:
        return next(g for g in found.groups() if g)
    return message.split(":")[-1].strip()[:40]


def measure(folder: Path, sample: int, seed: int = 7) -> dict[str, Any]:
    """Acceptance and compile shares over the corpus; validity on a decoded sample."""
    from qfleet.workers.engine.structured import SchemaDecodingError, SchemaGuide
    from qfleet.workers.engine.tiny import ensure_tiny_model
    from qfleet.workers.extraction.fields import decode_schema

    model_dir = ensure_tiny_model()
    from qfleet.workers.engine.model import EngineOptions, load_model

    model = load_model(model_dir, EngineOptions(cpu_threads=1))
    guide = SchemaGuide(model_dir, model.tokenizer)
    total, accepted, compiled = 0, [], 0
    refused: Counter[str] = Counter()
    by_subset: Counter[str] = Counter()
    for subset, _, schema in corpus(folder):
        total += 1
        try:
            normalised = check_extract_schema(schema)
        except QfleetError as exc:
            refused[_reason(str(exc))] += 1
            continue
        by_subset[subset] += 1
        try:
            guide.grammar(json.dumps(decode_schema(normalised)))
            guide.grammar(json.dumps(normalised))
        except SchemaDecodingError:
            refused["grammar does not compile"] += 1
            continue
        compiled += 1
        accepted.append(normalised)
    try:
        decoded = _decode_sample(model, model_dir, random.Random(seed).sample(
            accepted, min(sample, len(accepted))))  # fmt: skip
    finally:
        model.close()
    return {
        "schemas": total,
        "accepted": len(accepted) + refused["grammar does not compile"],
        "compiled": compiled,
        "accepted_share": (len(accepted) + refused["grammar does not compile"]) / max(total, 1),
        "compiled_share": compiled / max(total, 1),
        "accepted_by_subset": dict(by_subset.most_common()),
        "refused_by_reason": dict(refused.most_common(15)),
        **decoded,
    }


def _decode_sample(model: Any, model_dir: Path, schemas: list[dict[str, Any]]) -> dict[str, Any]:
    from qfleet.tasks.schemas import ExtractJob
    from qfleet.workers.extraction import guided_decoder, run_extract

    decoder = guided_decoder(model, model_dir)
    valid = not_failed = 0
    for schema in schemas:
        job = ExtractJob(
            documents=[{"id": "d", "text": "An example document."}],
            json_schema=schema,
            max_tokens=256,
        )
        [item] = run_extract(model, decoder, job, submitted_at=None, worker="coverage").items
        checker = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        not_failed += item.status != "failed"
        valid += (
            item.object is not None
            and item.finish_reason == "stop"
            and checker.is_valid(item.object)
        )
    n = max(len(schemas), 1)
    return {"sample": len(schemas), "sample_valid": valid / n, "sample_not_failed": not_failed / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="JSONSchemaBench folder")
    parser.add_argument("--sample", type=int, default=40, help="schemas decoded on the tiny model")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = measure(args.corpus, args.sample)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"{figures['schemas']} schemas: {figures['accepted_share']:.1%} accepted, "
        f"{figures['compiled_share']:.1%} compile; on {figures['sample']} decoded with the tiny "
        f"model: {figures['sample_valid']:.1%} valid, {figures['sample_not_failed']:.1%} not failed"
    )
    print("accepted by subset:", json.dumps(figures["accepted_by_subset"]))
    print("refused by reason:", json.dumps(figures["refused_by_reason"], indent=1))


if __name__ == "__main__":
    main()
