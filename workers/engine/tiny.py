"""A tiny Qwen2-architecture model for tests: real tokenizer, real converter, random weights.

It exercises every code path the real model does (ChatML template, special tokens, byte-level BPE,
CTranslate2 int8) and builds in seconds. Its answers are noise: tests check mechanics, not words.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from qfleet.tasks.constants import MODEL_MANIFEST
from qfleet.workers.engine.cache import default_cache_root
from qfleet.workers.engine.convert import MissingDependencyError

# Bump when anything below changes what gets built: the cache key includes it.
TINY_RECIPE_VERSION = 2
TINY_MODEL_ID = f"qfleet-tiny-qwen2-v{TINY_RECIPE_VERSION}"
SEED = 1234
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2.5's ChatML layout, without the tool-calling branches.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A job queue moves work from producers to workers and results back again.",
    "Solve 2x + 5 = 17: subtract five from both sides, then divide by two, so x = 6.",
    "Return a JSON object with the fields name, age and city.",
    '{"name": "Ada", "age": 36, "city": "London", "tags": ["math", "engines"]}',
    "Retrieval augmented generation answers from documents kept fresh without retraining.",
    "工作队列把任务从生产者送到工作进程，再把结果送回来。",
    "请用中文回答：今天的天气怎么样？知识库的版本更新以后，旧的答案不能再用了。",
    "def add(a, b):\n    return a + b\n",
    "| name | age |\n|------|-----|\n| Ann  | 31  |\n| Bob  | 27  |",
]


def tiny_model_dir(cache_root: Path | None = None) -> Path:
    """Where the tiny model for the current recipe lives (built or not)."""
    return (cache_root or default_cache_root()) / "models" / TINY_MODEL_ID


def ensure_tiny_model(out: Path | None = None) -> Path:
    """Build the tiny model into `out` (default: the cache) unless it is already there.

    The build goes to a temporary folder beside `out` and is renamed into place, so concurrent
    test runs never see a half-written model.
    """
    out = out or tiny_model_dir()
    if (out / MODEL_MANIFEST).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".tiny-build-") as tmp:
        staging = Path(tmp) / "model"
        _build(staging, Path(tmp) / "hf")
        try:
            staging.rename(out)
        except OSError:
            if not (out / MODEL_MANIFEST).is_file():
                raise
    return out


def _build(out: Path, hf_dir: Path) -> None:
    from qfleet.workers.engine.convert import convert_model

    build_tiny_hf_folder(hf_dir)
    convert_model(
        hf_dir,
        out,
        quantization="int8",
        model_id=TINY_MODEL_ID,
        source_label="qfleet tiny test model (random weights)",
    )


def build_tiny_hf_folder(hf_dir: Path) -> Path:
    """Write the tiny model as a Hugging Face folder (safetensors, tokenizer, chat template).

    This is the input `qfleet model convert` takes; `ensure_tiny_model` converts it.
    """
    try:
        import torch
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError(
            "building the tiny model needs the convert extra: pip install 'qfleet[convert]'"
        ) from exc

    tokenizer = train_tiny_tokenizer()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS,
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(hf_dir)

    torch.manual_seed(SEED)
    config = transformers.Qwen2Config(**tiny_config_values(tokenizer))
    model = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():
        # Zero the special tokens' embedding rows: with tied weights their logits are then 0
        # while ordinary tokens score around the noise, so a greedy run rarely ends at once and
        # tests see real token streams. Ending is then governed by max_tokens / stop strings.
        for token in SPECIAL_TOKENS:
            model.model.embed_tokens.weight[tokenizer.token_to_id(token)].zero_()
    model.save_pretrained(hf_dir)
    return hf_dir


def tiny_config_values(tokenizer: Any) -> dict[str, Any]:
    """The tiny model's Qwen2 hyper-parameters (shared with the tiny GGUF tests build)."""
    return {
        "vocab_size": tokenizer.get_vocab_size(),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "initializer_range": 0.3,
        "bos_token_id": tokenizer.token_to_id("<|endoftext|>"),
        "eos_token_id": tokenizer.token_to_id("<|im_end|>"),
        "pad_token_id": tokenizer.token_to_id("<|endoftext|>"),
    }


def train_tiny_tokenizer() -> Any:
    """The tiny byte-level BPE tokenizer (700 tokens, Qwen's special tokens), trained in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tokenizer


def remove_tiny_model(cache_root: Path | None = None) -> None:
    """Delete the cached tiny model (the next `ensure_tiny_model` rebuilds it)."""
    shutil.rmtree(tiny_model_dir(cache_root), ignore_errors=True)
