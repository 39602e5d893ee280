"""Print README's configuration table from `Settings`, so the docs cannot drift from the code.

python -m ops.dev.settings_table          # print the table
python -m ops.dev.settings_table --write  # replace the table in README.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr

from qfleet.tasks.settings import Settings

START = "<!-- settings-table:start (python -m ops.dev.settings_table --write) -->"
END = "<!-- settings-table:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value is None or value == "" or value == []:
        return "–"
    if isinstance(value, SecretStr):
        return "–"
    return f"`{value}`"


def table() -> str:
    """The markdown table of every setting: variable, default, meaning."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `QFLEET_{name.upper()}` | {_default(name)} | {meaning} |")
    return "\n".join(rows)


def block() -> str:
    """The README block between the markers."""
    return f"{START}\n{table()}\n{END}"


def main() -> int:
    """Print the table, or write it into README.md with --write."""
    if "--write" not in sys.argv:
        print(table())
        return 0
    text = README.read_text(encoding="utf-8")
    start, end = text.index(START), text.index(END) + len(END)
    README.write_text(text[:start] + block() + text[end:], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
