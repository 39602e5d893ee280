"""The docs tell the truth about the code they describe."""

from __future__ import annotations

import re

from ops.dev.settings_table import README, block
from ops.localfleet import REPO_ROOT


def test_readme_lists_every_setting_as_the_code_defines_it() -> None:
    # Regenerate with: python -m ops.dev.settings_table --write
    assert block() in README.read_text(encoding="utf-8")


def test_doc_links_point_at_files_that_exist() -> None:
    docs = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
    for doc in docs:
        for target in re.findall(r"\]\(((?!https?://|#)[^)#\s]+)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
