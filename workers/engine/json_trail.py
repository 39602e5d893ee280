"""Where a row of guided decoding is inside its JSON, byte by byte: the loop guards' eyes.

A small model asked for a list can repeat it until the budget runs out (`["English", "Tamil",
"English", "Tamil", ...]`) or pad it with `"null"` items when it wanted the list to end; a long
string can run into a cycle. The grammar allows all of that. `JsonTrail` follows the bytes the
row has accepted and reports the point to cut back to: before a repeated or null-like array
item (the array then ends there), or after the first turn of a cycle in a string (the string
then ends there).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# Items that mean "nothing here" written as text; they end an array instead of joining it.
NULL_LIKE = frozenset({"", "null", "none", "n/a", "na", "-", "—", "无", "暂无", "未提供"})
# A string whose tail repeats a unit of 1-40 characters at least 4 times over at least this many
# characters is looping (a real value rarely repeats itself like that: "0000" is allowed).
LOOP_MIN_CHARS = 24
_CYCLE = re.compile(r"(.{1,40}?)\1{3,}$", re.DOTALL)


@dataclass
class _Frame:
    kind: str  # "object" or "array"
    opened: int  # offset just after the bracket
    key: str | None = None
    expect_key: bool = False
    separator: int | None = None  # offset of the last comma at this level
    item_start: int = 0
    items: list[str] = field(default_factory=list)

    @property
    def cut(self) -> int:
        """Where to cut to end this array before its current item."""
        return self.separator if self.separator is not None else self.opened


@dataclass
class Cut:
    """Cut the row back to `offset` bytes, then force `then` (`]` or a closing quote)."""

    offset: int
    then: bytes
    reason: str  # "repeated_item" or "string_loop"
    field: str | None


class JsonTrail:
    """Incremental scan of a JSON text as it is generated."""

    def __init__(self) -> None:
        self.text = bytearray()
        self.stack: list[_Frame] = []
        self.in_string = False
        self._escaped = False
        self._string_start = 0

    @property
    def field(self) -> str | None:
        """The root object's property being written (None outside one)."""
        return self.stack[0].key if self.stack and self.stack[0].kind == "object" else None

    @property
    def in_key(self) -> bool:
        """True while an object's next key is being written (or chosen)."""
        frame = self.stack[-1] if self.stack else None
        return frame is not None and frame.kind == "object" and frame.expect_key

    @property
    def after_separator(self) -> bool:
        """True between an array's comma and its next item: the array could end instead."""
        frame = self.stack[-1] if self.stack else None
        return (
            frame is not None
            and frame.kind == "array"
            and not self.in_string
            and frame.separator is not None
            and not self.text[frame.separator + 1 :].strip()
        )

    def feed(self, data: bytes) -> Cut | None:
        """Take the next bytes; a `Cut` when they repeat or loop."""
        cut = None
        for byte in data:
            cut = self._byte(byte) or cut
        if cut is None and self.in_string and len(self.text) - self._string_start > LOOP_MIN_CHARS:
            cut = self._string_cycle()
        return cut

    def _byte(self, byte: int) -> Cut | None:
        position = len(self.text)
        self.text.append(byte)
        if self.in_string:
            if self._escaped:
                self._escaped = False
            elif byte == 0x5C:
                self._escaped = True
            elif byte == 0x22:
                self.in_string = False
                return self._string_closed(position)
            return None
        frame = self.stack[-1] if self.stack else None
        if byte == 0x22:
            self.in_string, self._string_start = True, position
        elif byte in b"{[":
            kind = "object" if byte == 0x7B else "array"
            self.stack.append(_Frame(kind, position + 1, expect_key=kind == "object"))
            self.stack[-1].item_start = position + 1
        elif byte in b"}]" and self.stack:
            self.stack.pop()
        elif byte == 0x2C and frame is not None:
            if frame.kind == "object":
                frame.expect_key = True
                return None
            cut = self._item_done(frame, position)
            frame.separator, frame.item_start = position, position + 1
            return cut
        elif byte == 0x3A and frame is not None and frame.kind == "object":
            frame.expect_key = False
        return None

    def _string_closed(self, end: int) -> Cut | None:
        frame = self.stack[-1] if self.stack else None
        raw = bytes(self.text[self._string_start : end + 1])
        try:
            content = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            return None
        if frame is None:
            return None
        if frame.kind == "object":
            if frame.expect_key:
                frame.key = content
            return None
        item = content.strip().casefold()
        if item in NULL_LIKE or item in frame.items:
            return Cut(frame.cut, b"]", "repeated_item", self.field)
        frame.items.append(item)
        return None

    def _item_done(self, frame: _Frame, comma: int) -> Cut | None:
        """A non-string array item that repeats an earlier one ends the array too."""
        item = bytes(self.text[frame.item_start : comma]).strip()
        if not item or item.startswith(b'"'):
            return None  # strings are checked when they close
        key = "\x00" + item.decode("utf-8", errors="replace")
        if key in frame.items:
            return Cut(frame.cut, b"]", "repeated_item", self.field)
        frame.items.append(key)
        return None

    def _string_cycle(self) -> Cut | None:
        start = max(self._string_start + 1, len(self.text) - 240)
        while start < len(self.text) and self.text[start] & 0xC0 == 0x80:
            start += 1  # not in the middle of a UTF-8 character
        tail = bytes(self.text[start:]).decode("utf-8", errors="ignore")
        match = _CYCLE.search(tail)
        if match is None or len(match.group(0)) < LOOP_MIN_CHARS:
            return None
        keep = tail[: match.start() + len(match.group(1))]
        return Cut(start + len(keep.encode("utf-8")), b'"', "string_loop", self.field)


def scan(text: bytes) -> JsonTrail:
    """A trail that has read `text` (after a cut, the row's trail is rebuilt)."""
    trail = JsonTrail()
    for byte in text:
        trail._byte(byte)
    return trail
