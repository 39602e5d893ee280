"""Converting a Hugging Face checkpoint or a GGUF file into a CTranslate2 model folder.

`convert_model(SOURCE, OUT)` behind `qfleet model convert`. SOURCE is a Hugging Face hub id, a
local Hugging Face folder, or a `.gguf` file. The model and its tokenizer are loaded with
transformers (a GGUF is dequantized on load), handed in memory to CTranslate2's converter, and
written to OUT with the tokenizer files, the chat template, the generation config and a
`qfleet-model.json` manifest. Needs the `convert` extra (torch, transformers, accelerate, gguf);
serving the result does not.
"""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qfleet.tasks.constants import QUANTIZATIONS
from qfleet.tasks.errors import PermanentError
from qfleet.workers.engine.manifest import file_sha256, tree_sha256, write_manifest

Progress = Callable[[str], None]

# Files a worker needs beside model.bin; copied from the saved tokenizer/config folder if present.
SERVING_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "generation_config.json",
)
# What a hub download fetches: configs, tokenizer files, safetensors weights (not the .bin copies).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_CONNECT_TIMEOUT_S = 5.0


class ConversionError(PermanentError):
    """The source cannot be converted (unsupported, unreadable, or the output is in the way)."""

    code = "conversion_failed"


class SourceNotFoundError(ConversionError):
    """SOURCE is neither an existing file or folder nor a reachable hub model."""

    code = "source_not_found"


class MissingDependencyError(ConversionError):
    """A library of the `convert` extra is not installed."""

    code = "missing_dependency"


@dataclass(frozen=True)
class ModelSource:
    """A resolved SOURCE: what kind it is and where its files are on this machine."""

    kind: str  # "gguf" or "hf"
    path: Path
    label: str  # what the manifest records as `source`
    name: str  # the start of the default model id

    def sha256(self) -> str:
        """Hash of the source: the GGUF file, or every file of the HF folder."""
        return file_sha256(self.path) if self.kind == "gguf" else tree_sha256(self.path)


def convert_model(
    source: str | Path,
    out: Path,
    *,
    quantization: str = "int8",
    model_id: str | None = None,
    source_label: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Convert SOURCE into a CTranslate2 model folder at `out` and return `out`.

    The folder is built beside `out` and renamed into place, so `out` is either complete or absent.

    Args:
        source: A hub id (`Qwen/Qwen2.5-0.5B-Instruct`), a local HF folder, or a `.gguf` file.
        out: The folder to create; it must not exist (or be empty).
        quantization: One of `tasks.constants.QUANTIZATIONS`.
        model_id: The id results report; default: the source's name plus the quantization.
        source_label: What the manifest records as the source (default: SOURCE itself).
        progress: Called with one line per step.

    Raises:
        ConversionError: The source is unsupported or unreadable, or `out` is in the way.
        SourceNotFoundError: SOURCE does not exist and is not a reachable hub model.
        MissingDependencyError: The `convert` extra is not installed.
    """
    say = progress or (lambda _line: None)
    out = Path(out)
    _check_request(source, out, quantization)
    resolved = resolve_source(str(source), say)
    return _build(
        resolved,
        out,
        quantization,
        model_id or f"{resolved.name}-{quantization}",
        source_label or resolved.label,
        say,
    )


def _build(
    resolved: ModelSource,
    out: Path,
    quantization: str,
    model_id: str,
    source_label: str,
    say: Progress,
) -> Path:
    """Convert into a staging folder beside `out`, write the manifest, rename into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.converting-") as tmp:
        staging = Path(tmp) / "model"
        max_context, chat_template = _convert(
            resolved, staging, Path(tmp) / "hf", quantization, say
        )
        say("hashing the source ...")
        write_manifest(
            staging,
            model_id=model_id,
            source=source_label,
            source_sha256=resolved.sha256(),
            quantization=quantization,
            max_context=max_context,
            chat_template=chat_template,
            converter_versions=converter_versions(gguf=resolved.kind == "gguf"),
        )
        if out.exists():
            out.rmdir()  # empty (checked above): make room for the rename
        staging.rename(out)
    return out


def _check_request(source: str | Path, out: Path, quantization: str) -> None:
    """Refuse a conversion that cannot succeed before any download or loading starts."""
    if quantization not in QUANTIZATIONS:
        raise ConversionError(f"unknown quantization {quantization!r}; one of {QUANTIZATIONS}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConversionError(f"{out} already exists and is not empty; choose another folder")
    require_convert_libraries(gguf=str(source).lower().endswith(".gguf"))


def resolve_source(source: str, progress: Progress) -> ModelSource:
    """Find SOURCE's files: a local `.gguf` file, a local HF folder, or a hub download."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConversionError(f"{path} is a file but not a .gguf; pass a .gguf or a folder")
        return ModelSource("gguf", path.resolve(), source, path.stem)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConversionError(f"{path} has no config.json: not a Hugging Face model folder")
        return ModelSource("hf", path.resolve(), source, path.resolve().name)
    if HUB_ID.match(source):
        snapshot = download_from_hub(source, progress)
        # The snapshot folder is named after the commit: record exactly what was converted.
        return ModelSource("hf", snapshot, f"{source}@{snapshot.name}", source.split("/")[-1])
    raise SourceNotFoundError(
        f"{source} is not a file, a folder or a hub id like Qwen/Qwen2.5-0.5B-Instruct"
    )


def download_from_hub(repo_id: str, progress: Progress) -> Path:
    """Download `repo_id` into the Hugging Face cache; fail at once when the hub is unreachable."""
    from huggingface_hub import constants, snapshot_download

    offline = bool(constants.HF_HUB_OFFLINE)
    if not offline:
        _check_reachable(constants.ENDPOINT, repo_id)
    progress(f"downloading {repo_id} from {constants.ENDPOINT} ...")
    try:
        folder = snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=offline)
    except OSError as exc:  # huggingface_hub's HTTP and cache errors are OSErrors
        raise SourceNotFoundError(f"could not download {repo_id}: {exc}") from exc
    return Path(str(folder))


def _check_reachable(endpoint: str, repo_id: str) -> None:
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), HUB_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise SourceNotFoundError(
            f"cannot reach {endpoint} to download {repo_id} ({exc}). Without internet access, "
            "download the model elsewhere and pass its folder or a .gguf file as SOURCE"
        ) from exc


def require_convert_libraries(*, gguf: bool) -> None:
    """Fail with one clear message when a library of the `convert` extra is missing."""
    needed = ["torch", "transformers", "ctranslate2", "tokenizers", "huggingface_hub"]
    if gguf:
        needed += ["gguf", "accelerate"]  # transformers loads GGUF files only with both
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"model conversion needs the convert extra (missing: {', '.join(missing)}): "
            "pip install torch 'qfleet[convert]'"
        )


def converter_versions(*, gguf: bool) -> dict[str, str]:
    """Versions of the libraries that convert, for the manifest."""
    import ctranslate2
    import torch
    import transformers

    versions = {
        "ctranslate2": ctranslate2.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    if gguf:
        from importlib.metadata import version

        versions["gguf"] = version("gguf")
    return versions


def _convert(
    source: ModelSource, out: Path, hf_dir: Path, quantization: str, say: Progress
) -> tuple[int, str]:
    """Write the CTranslate2 model to `out`; returns its context length and chat template."""
    started = time.perf_counter()
    say(f"loading {source.path} ({'dequantizing the GGUF' if source.kind == 'gguf' else 'HF'}) ...")
    model, tokenizer = _load_gguf(source.path) if source.kind == "gguf" else _load_hf(source.path)
    if not tokenizer.chat_template:
        raise ConversionError(f"{source.label} has no chat template; qfleet serves chat models")
    say(f"loaded in {time.perf_counter() - started:.0f}s; converting to {quantization} ...")
    started = time.perf_counter()
    # The converter reads config.json and the serving files from a folder; the weights it takes
    # from the model already in memory, so they are never written out and read back.
    model.config.save_pretrained(hf_dir)
    model.generation_config.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    copy = [name for name in SERVING_FILES if (hf_dir / name).is_file()]
    try:
        _in_memory_converter(str(hf_dir), model, tokenizer, copy).convert(
            str(out), quantization=quantization
        )
    except (ValueError, NotImplementedError) as exc:  # CTranslate2's "unsupported model" errors
        raise ConversionError(f"CTranslate2 cannot convert {source.label}: {exc}") from exc
    max_context = int(model.config.max_position_embeddings)
    del model
    _declare_model_type(out, hf_dir)
    say(f"converted in {time.perf_counter() - started:.0f}s")
    return max_context, str(tokenizer.chat_template)


def _load_hf(folder: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype="auto")
    return model, tokenizer


def _load_gguf(path: Path) -> tuple[Any, Any]:
    import torch
    import transformers

    kwargs: dict[str, Any] = {"gguf_file": path.name}
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), **kwargs)
    if hasattr(transformers, "GgufConfig"):
        # transformers 5.x can keep GGUF blocks packed; CTranslate2 needs plain float weights.
        kwargs["quantization_config"] = transformers.GgufConfig(dequantize=True)
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), dtype=torch.float32, **kwargs
    )
    # The weights are float tensors now, but the model still says "quantized with gguf":
    # transformers would refuse to serialize it and CTranslate2's Qwen2 loader rejects any
    # quantization_config but AWQ. Drop both marks.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def _in_memory_converter(hf_dir: str, model: Any, tokenizer: Any, copy_files: list[str]) -> Any:
    from ctranslate2.converters import TransformersConverter

    class LoadedModelConverter(TransformersConverter):  # type: ignore[misc]
        """CTranslate2's converter, given a model and tokenizer already in memory."""

        def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
            return model

        def load_tokenizer(
            self, tokenizer_class: Any, model_name_or_path: str, **kwargs: Any
        ) -> Any:
            return tokenizer

    return LoadedModelConverter(hf_dir, copy_files=copy_files)


def _declare_model_type(out: Path, hf_dir: Path) -> None:
    # transformers >= 4.57 reads config.json when loading a tokenizer from a folder; CTranslate2's
    # config.json has neither `model_type` nor `transformers_version`, which transformers takes
    # for an old Mistral checkpoint and warns about an "incorrect regex pattern" (see
    # `fix_mistral_regex` in transformers' tokenization_utils_tokenizers.py). Recording the real
    # model type makes it stand down; CTranslate2 ignores keys it does not know.
    hf_config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    ct2_config_path = out / "config.json"
    ct2_config = json.loads(ct2_config_path.read_text(encoding="utf-8"))
    ct2_config["model_type"] = hf_config.get("model_type")
    ct2_config_path.write_text(json.dumps(ct2_config, indent=2) + "\n", encoding="utf-8")
