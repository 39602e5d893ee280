"""The extraction development set: 64 business documents (English and Chinese) with gold objects.

    python -m ops.bench.extract_devset            # rewrites ops/bench/data/extract_dev.jsonl

Four schemas (ops/bench/extract_schemas.py) x two languages x eight documents, written in five
shapes (prose, email, table, form, bullet list), 170-300 words each (ops/bench/extract_filler.py
says how Chinese is counted). Values are drawn with a fixed seed and the gold is the value itself,
normalised (ISO dates, plain numbers, enum codes); the text writes it the way documents do
(ops/bench/extract_spelling.py) next to distractors a reader must skip: the e-mail's send date, the
publication date, subtotals and tax, a start date, languages named twice. The committed file is
what the benchmark reads. Its gold was checked by reading every document against its gold object,
and every gold name, item, organisation and e-mail occurs verbatim in its text. Two fields are
judged rather than copied: a news `category` (from the story) and a Chinese contract's
`governing_city` (the city of its arbitration commission, `北京仲裁委员会`).
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ops.bench.extract_filler import MAX_WORDS, MIN_WORDS, document_words
from ops.bench.extract_pools import POOLS
from ops.bench.extract_render import Facts, render_fields
from ops.bench.extract_schemas import SCHEMAS
from ops.bench.extract_spelling import en_amount, en_date, zh_amount, zh_date

DATA = Path(__file__).parent / "data" / "extract_dev.jsonl"
SHAPES = ["prose", "email", "table", "form", "bullets"]
SEED = 20261130
DOCS_PER_SCHEMA_LANGUAGE = 8


def _day(rng: random.Random, start: int = 2019, end: int = 2025) -> date:
    return date(rng.randint(start, end), 1, 1) + timedelta(days=rng.randint(0, 364))


def _amount(rng: random.Random, big: bool = False) -> float:
    kind = rng.random()
    if big and kind < 0.5:
        return float(rng.choice([12, 35, 48, 120, 260, 1500]) * 10_000)
    if kind < 0.3:
        return float(rng.randint(2, 90) * 1000)
    return round(rng.uniform(800, 48_000), 2)


Sampled = tuple[dict[str, Any], dict[str, str | None]]


def _writers(lang: str) -> tuple[Any, Any]:
    return (en_date, en_amount) if lang == "en" else (zh_date, zh_amount)


def _invoice(pool: dict[str, Any], n: int, rng: random.Random, lang: str) -> Sampled:
    write_date, write_amount = _writers(lang)
    issued = _day(rng)
    due = issued + timedelta(days=rng.choice([14, 30, 45])) if n % 3 else None
    currency = pool["currencies"][n % len(pool["currencies"])]
    total = _amount(rng)
    items = rng.sample(pool["items"], rng.randint(1, 4))
    gold = {
        "vendor": pool["names"][n],
        "invoice_number": f"{pool['number_prefix']}-{rng.randint(1000, 99999)}",
        "issue_date": issued.isoformat(),
        "due_date": due.isoformat() if due else None,
        "total": total,
        "currency": currency,
        "items": items,
        "paid": n % 2 == 0,
    }
    subtotal = round(total / 1.13, 2)
    shown = {
        "issue_date": write_date(issued, rng),
        "due_date": write_date(due, rng) if due else None,
        "total": write_amount(total, currency, rng),
        "subtotal": write_amount(subtotal, currency, rng),
        "tax": write_amount(round(total - subtotal, 2), currency, rng),
        "sent": write_date(issued + timedelta(days=1), rng),
    }
    return gold, shown


def _contract(pool: dict[str, Any], n: int, rng: random.Random, lang: str) -> Sampled:
    write_date, write_amount = _writers(lang)
    signed = _day(rng)
    months = rng.choice([6, 12, 24, 36])
    open_ended = n % 4 == 3
    end = None if open_ended else signed + timedelta(days=round(months * 30.44))
    currency = pool["currencies"][n % len(pool["currencies"])]
    value = _amount(rng, big=True)
    parties = rng.sample(pool["parties"], 3 if n % 5 == 0 else 2)
    gold = {
        "parties": parties,
        "contract_type": pool["types"][n % 5][0],
        "signed_date": signed.isoformat(),
        "end_date": end.isoformat() if end else None,
        "value": value,
        "currency": currency,
        "term_months": None if open_ended else months,
        "governing_city": None if n % 3 == 2 else rng.choice(pool["cities"]),
    }
    shown = {
        "signed_date": write_date(signed, rng),
        "start": write_date(signed + timedelta(days=rng.choice([1, 7, 14])), rng),
        "end_date": write_date(end, rng) if end else None,
        "value": write_amount(value, currency, rng),
        "type_word": pool["types"][n % 5][1],
    }
    return gold, shown


def _news(pool: dict[str, Any], n: int, rng: random.Random, lang: str) -> Sampled:
    write_date, write_amount = _writers(lang)
    event = _day(rng, 2021, 2025)
    has_amount = n % 3 != 1
    currency = pool["currencies"][n % len(pool["currencies"])] if has_amount else None
    amount = _amount(rng, big=True) if has_amount else None
    story = pool["stories"][n]
    gold = {
        "headline": story["headline"],
        "event_date": event.isoformat(),
        "location": story["location"],
        "category": story["category"],
        "organizations": story["organizations"],
        "amount": amount,
        "currency": currency,
        "attendees": story["attendees"],
    }
    shown = {
        "event_date": write_date(event, rng),
        "published": write_date(event + timedelta(days=rng.choice([1, 2, 3])), rng),
        "amount": write_amount(amount, currency, rng) if amount and currency else None,
    }
    return gold, shown


def _person(pool: dict[str, Any], n: int, rng: random.Random, lang: str) -> Sampled:
    write_date, _ = _writers(lang)
    born = _day(rng, 1960, 2000)
    person = pool["people"][n]
    gold = {
        "name": person["name"],
        "birth_date": born.isoformat(),
        "city": person["city"],
        "occupation": person["occupation"],
        "employer": person["employer"],
        "languages": person["languages"],
        "years_experience": person["years"],
        "email": person["email"],
    }
    shown = {
        "birth_date": write_date(born, rng),
        "sent": write_date(_day(rng, 2025, 2025), rng),
    }
    return gold, shown


_SAMPLERS = {"invoice": _invoice, "contract": _contract, "news": _news, "person": _person}


def sample(schema: str, lang: str, n: int, rng: random.Random) -> tuple[dict[str, Any], Facts]:
    """Gold values of one document and how its text writes each of them."""
    gold, shown = _SAMPLERS[schema](POOLS[schema][lang], n, rng, lang)
    seed = f"{SEED}-{schema}-{lang}-{n}"
    return gold, Facts(schema=schema, lang=lang, gold=gold, shown=shown, rng=rng, seed=seed)


def build() -> list[dict[str, Any]]:
    """Every document of the set, in a fixed order."""
    rng = random.Random(SEED)
    records = []
    for schema in POOLS:
        for lang in ("en", "zh"):
            for n in range(DOCS_PER_SCHEMA_LANGUAGE):
                shape = SHAPES[(n + len(records)) % len(SHAPES)]
                gold, facts = sample(schema, lang, n, rng)
                text = render_fields(facts, shape)
                records.append(
                    {
                        "id": f"{schema}-{lang}-{n}",
                        "schema": schema,
                        "lang": lang,
                        "shape": shape,
                        "text": text,
                        "gold": gold,
                    }
                )
    return records


def load(path: Path = DATA) -> list[dict[str, Any]]:
    """The committed development set."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _copied(schema: dict[str, Any], value: Any) -> list[str]:
    """The gold strings a reader copies from the text: not dates, not enum codes."""
    if isinstance(value, list):
        return [s for item in value for s in _copied(schema.get("items", {}), item)]
    kinds = [schema, *schema.get("anyOf", [])]
    if not isinstance(value, str) or any("enum" in k or k.get("format") == "date" for k in kinds):
        return []
    return [value]


def check(records: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the set: ids, lengths, and gold strings its text does not hold."""
    problems = []
    if len(records) != 64 or len({r["id"] for r in records}) != len(records):
        problems.append(f"{len(records)} records; 64 with distinct ids expected")
    for r in records:
        words = document_words(r["text"], r["lang"])
        if not MIN_WORDS <= words <= MAX_WORDS:
            problems.append(f"{r['id']}: {words:.0f} words, not {MIN_WORDS}-{MAX_WORDS}")
        properties = SCHEMAS[r["schema"]]["properties"]
        for field, value in r["gold"].items():
            missing = [s for s in _copied(properties[field], value) if s not in r["text"]]
            problems += [f"{r['id']}: gold {field} {s!r} not in the text" for s in missing]
    return problems


def main() -> None:
    records = build()
    problems = check(records)
    if problems:
        raise SystemExit("\n".join(problems))
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    words = [document_words(r["text"], r["lang"]) for r in records]
    print(f"{len(records)} documents, {min(words):.0f}-{max(words):.0f} words -> {DATA}")


if __name__ == "__main__":
    main()
