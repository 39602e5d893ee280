"""What a document states, found in its text: its own dates, figures, money, counts in a unit.

The evidence checks (`evidence.py`, `evidence_figures.py`) hold the model's values to these.
Spellings are read by `values.py`.
"""

from __future__ import annotations

import re
import unicodedata

from qfleet.workers.extraction.values import (
    CURRENCY_WORDS,
    DATE_MENTION,
    EN_NUMBERS,
    SCALES,
    UnreadableError,
    currency_spans,
    parse_date,
    parse_number,
)

# Words before a date that make it the document's own date (when it was printed, published,
# sent), not a fact the document reports: "This copy was printed on", "| Published |", an
# e-mail's `Date:` line, "本副本打印于", "（本报…电）".
_DOCUMENT_DATE = re.compile(
    r"(?i)\b(?:printed|published|posted|updated|dispatched)\b|打印|发布|发稿|更新|本报"
)
# An e-mail's header lines; its `Date:` line is then the day it was sent. Without them, `Date:`
# may label any date (an invoice form's issue date).
_MAIL_HEADER = re.compile(r"(?im)^\s*(?:from|to|subject|发件人|收件人|主题)\s*[:：]")
_SENT_LINE = re.compile(r"(?i)^\s*(?:date|sent|日期|发送时间)\s*[:：]\s*$")


def document_dates(text: str) -> set[str]:
    """The ISO dates `text` states only as its own dates (printed, published, sent on)."""
    text = unicodedata.normalize("NFKC", text)
    own: set[str] = set()
    reported: set[str] = set()
    mail = _MAIL_HEADER.search(text) is not None
    for match in DATE_MENTION.finditer(text):
        try:
            iso = parse_date(match.group())[0]
        except UnreadableError:
            continue
        before = text[max(0, match.start() - 60) : match.start()]
        before = re.split(r"\n|[。！？;；]|\.\s", before)[-1]
        sent = mail and _SENT_LINE.search(before) is not None
        (own if sent or _DOCUMENT_DATE.search(before) else reported).add(iso)
    return own - reported


# Units a number field's name can ask in, as documents write them after a count.
UNITS = {
    "months": r"months?\b|个月",
    "years": r"years?\b|年(?![\d〇零一二三四五六七八九十]{1,2}月|度|代|级|底|初|前|后|内)",
    "weeks": r"weeks?\b|周|星期",
    "days": r"days?\b|天",
    "hours": r"hours?\b|小时",
}
_COUNT = r"(\d[\d,]*(?:\.\d+)?|[〇零一二两三四五六七八九十百]+|[a-z]+(?:-[a-z]+)?)\s*"


def unit_mentions(text: str, unit: str) -> list[int | float]:
    """The counts `text` writes in `unit` (a key of UNITS): `24 months`, `six months`, `十一年`."""
    text = DATE_MENTION.sub(" ", unicodedata.normalize("NFKC", text))
    found: list[int | float] = []
    for match in re.finditer(_COUNT + f"(?:{UNITS[unit]})", text, re.IGNORECASE):
        word = match.group(1).lower()
        parts = word.split("-")
        if word in ("a", "an"):
            continue  # "a year" is a phrase more often than a count
        if len(parts) > 1 and all(p in EN_NUMBERS for p in parts):
            number = float(sum(EN_NUMBERS[p] for p in parts))  # twenty-four
        else:
            try:
                number = float(parse_number(word, integer=False)[0])
            except UnreadableError:
                continue
        if unit == "years" and number >= 1000:
            continue  # `2014年起`, `二〇一四年`: a year, not a count of years
        found.append(int(number) if number.is_integer() else number)
    return found


def number_mentions(text: str, *, money: bool | None = None) -> list[float]:
    """The numbers `text` writes in figures, each with the scale word after it (`1.2 million`).

    Dates are left out (their year, month and day are not amounts), and so are figures inside
    a word (`A4`, `MP3`) but not after a currency word (`yen27,475.32`). `money=True`: only
    figures with a currency mark or word beside them (`120,000 euros`, `人民币28,318.58元`);
    `False`: only figures without one.
    """
    found = []
    text = DATE_MENTION.sub(" ", unicodedata.normalize("NFKC", text))
    marks = [span for _, span in currency_spans(text)]
    for match in re.finditer(r"(?<![\d_.,])\d[\d,.']*", text):
        word = re.search(r"[A-Za-z]+$", text[max(0, match.start() - 24) : match.start()])
        if word and word.group().casefold() not in CURRENCY_WORDS:
            continue
        if money is not None and _beside(text, match.span(), marks) != money:
            continue
        try:
            found.append(
                float(parse_number(text[match.start() : match.end() + 12], integer=False)[0])
            )
        except UnreadableError:
            continue
    return found


_SCALE_WORD = "|".join(
    f"{re.escape(w)}(?![a-z])" if w.isascii() else re.escape(w)
    for w in sorted(SCALES, key=len, reverse=True)
)


def _beside(text: str, figure: tuple[int, int], marks: list[tuple[int, int]]) -> bool:
    """Whether a currency mark stands right before the figure or after it (and its scale)."""
    gap = re.search(r"\s*$", text[max(0, figure[0] - 8) : figure[0]])
    end = figure[0] - (len(gap.group()) if gap else 0)
    after = re.match(rf"\s*(?:{_SCALE_WORD})?\s*", text[figure[1] : figure[1] + 24], re.IGNORECASE)
    start = figure[1] + (after.end() if after else 0)
    return any(b == end or a == start for a, b in marks)
