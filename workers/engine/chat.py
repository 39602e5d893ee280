"""The model's tokenizer and its own chat template, without transformers at serving time."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from qfleet.tasks.errors import InvalidJobError, QfleetError
from qfleet.tasks.schemas import ChatMessage

# Turn and document ends of the Qwen family; whichever of them the vocabulary has ends a reply.
QWEN_END_TOKENS = ("<|im_end|>", "<|endoftext|>")
TURN_END = "<|im_end|>\n"


# Control tokens spelled out in text ("<|im_end|>") are read as the real tokens by `encode`, so
# third-party text (an extraction document, a retrieved passage) could end its turn and open one
# of its own. `as_data` breaks those spellings up before such text enters a prompt.
_CONTROL_TOKEN = re.compile(r"<\|([^|<>\s]{1,32})\|>")


def as_data(text: str) -> str:
    """`text` with every `<|name|>` control-token spelling broken up into plain characters."""
    return _CONTROL_TOKEN.sub(r"< |\1| >", text)


# A leading system turn shorter than this is not worth a static-prompt cache entry.
MIN_STATIC_PROMPT_TOKENS = 8


@dataclass(frozen=True)
class ChatPrompt:
    """A tokenized conversation: a cacheable leading system turn, then the rest."""

    static_ids: list[int]
    ids: list[int]

    @property
    def total(self) -> int:
        """Tokens in the whole prompt."""
        return len(self.static_ids) + len(self.ids)


class ChatTokenizer:
    """Encodes ChatML conversations and decodes generated ids for one model folder."""

    def __init__(self, model_dir: Path) -> None:
        tokenizer_file = model_dir / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise QfleetError(f"{model_dir} has no tokenizer.json; convert it with `qfleet model`")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        config = _read_json(model_dir / "tokenizer_config.json")
        self._template = _compile_template(_find_template(model_dir, config))
        self._template_vars = {
            "bos_token": _token_text(config.get("bos_token")),
            "eos_token": _token_text(config.get("eos_token")),
        }
        self.end_token_ids = self._end_token_ids(model_dir, config)

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text for `messages`, ending where the assistant's reply begins."""
        try:
            return self._template.render(
                messages=[m.model_dump() for m in messages],
                add_generation_prompt=True,
                **self._template_vars,
            )
        except TemplateError as exc:
            raise InvalidJobError(f"the chat template rejected the messages: {exc}") from exc

    def encode_chat(self, messages: Sequence[ChatMessage]) -> ChatPrompt:
        """Render and tokenize `messages`, splitting off the leading system turn when there is one.

        The split is kept only when tokenizing the two parts separately gives exactly the ids
        of the whole (true for ChatML, where the turn ends in a special token and a newline).
        """
        text = self.render(messages)
        ids = self.encode(text)
        if not text.startswith("<|im_start|>system"):
            return ChatPrompt([], ids)
        cut = text.find(TURN_END)
        if cut < 0:
            return ChatPrompt([], ids)
        cut += len(TURN_END)
        static = self.encode(text[:cut])
        if len(static) < MIN_STATIC_PROMPT_TOKENS or ids[: len(static)] != static:
            return ChatPrompt([], ids)
        return ChatPrompt(static, ids[len(static) :])

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in the text are recognised."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """Token strings for `ids` (what CTranslate2 takes as input)."""
        return [self.tokenizer.id_to_token(i) or "" for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` with special tokens dropped."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def _end_token_ids(self, model_dir: Path, config: dict[str, Any]) -> list[int]:
        names = [*QWEN_END_TOKENS, _token_text(config.get("eos_token"))]
        ids: set[int | None] = {self.tokenizer.token_to_id(name) for name in names if name}
        generation = _read_json(model_dir / "generation_config.json")
        eos = generation.get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])
        return sorted(i for i in ids if i is not None)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _token_text(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return str(value) if value else ""


def _find_template(model_dir: Path, config: dict[str, Any]) -> str:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str):
        raise QfleetError(f"{model_dir} has no chat template (chat_template.jinja)")
    return template


def _compile_template(source: str) -> Any:
    # The same environment transformers renders chat templates with, so templates behave alike.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(
        value, ensure_ascii=False, indent=indent
    )
    return env.from_string(source)


def _raise_exception(message: str) -> None:
    raise TemplateError(message)
