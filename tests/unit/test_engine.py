"""The engine on the tiny real model: chat template, budgets, stop strings, streaming."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qfleet.tasks.schemas import ChatMessage
from qfleet.workers.engine.generation import GenerationRequest, Sampling, generate
from qfleet.workers.engine.model import EngineOptions, LoadedModel, load_model

CHAT = [
    ChatMessage(role="system", content="You are terse."),
    ChatMessage(role="user", content="你好, what is a queue?"),
]


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> Iterator[LoadedModel]:
    loaded = load_model(tiny_model, EngineOptions(cpu_threads=1))
    yield loaded
    loaded.close()


def _prompt(model: LoadedModel, text: str = "Tell me a story") -> list[int]:
    tok = model.tokenizer
    return tok.encode(tok.render([ChatMessage(role="user", content=text)]))


def test_chat_template_matches_transformers(model: LoadedModel, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(tiny_model))
    messages = [m.model_dump() for m in CHAT]
    expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert model.tokenizer.render(CHAT) == expected
    expected_ids = reference(expected, add_special_tokens=False)["input_ids"]
    assert model.tokenizer.encode(expected) == expected_ids
    assert model.tokenizer.encode("<|im_end|>") == [reference.convert_tokens_to_ids("<|im_end|>")]


def test_model_reports_device_and_manifest(model: LoadedModel) -> None:
    assert model.info.device == "cpu"
    assert model.info.compute_type == "int8"
    assert model.manifest.model_id.startswith("qfleet-tiny-qwen2")
    assert model.manifest.max_context == 4096


def test_each_row_keeps_its_own_budget(model: LoadedModel) -> None:
    prompt = _prompt(model)
    outputs = generate(
        model.generator,
        model.tokenizer,
        [GenerationRequest(prompt, 3), GenerationRequest(prompt, 11)],
        Sampling(),
    )
    assert [len(o.token_ids) for o in outputs] == [3, 11]
    assert [o.finish_reason for o in outputs] == ["length", "length"]
    assert outputs[1].token_ids[:3] == outputs[0].token_ids  # greedy: same prefix
    assert all(o.batch_size == 2 for o in outputs)


def test_stop_string_cuts_text_and_stops_the_row(model: LoadedModel) -> None:
    prompt = _prompt(model)
    [free] = generate(model.generator, model.tokenizer, [GenerationRequest(prompt, 30)], Sampling())
    stop = free.text[6:9]
    [stopped] = generate(
        model.generator, model.tokenizer, [GenerationRequest(prompt, 30, stop=[stop])], Sampling()
    )
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.find(stop)]
    assert len(stopped.token_ids) < len(free.token_ids)


def test_streamed_pieces_add_up_to_the_final_text(model: LoadedModel) -> None:
    pieces: list[str] = []
    request = GenerationRequest(_prompt(model, "你好"), 40, on_text=pieces.append)
    [output] = generate(model.generator, model.tokenizer, [request], Sampling())
    assert len(pieces) > 1
    assert "".join(pieces) == output.text


def test_sampling_settings_map_to_ctranslate2() -> None:
    assert Sampling().options() == {"sampling_topk": 1}
    assert Sampling(temperature=0.7, top_p=0.9, top_k=40).options() == {
        "sampling_topk": 40,
        "sampling_topp": 0.9,
        "sampling_temperature": 0.7,
    }


def test_static_prompt_registry_admits_a_bounded_number_of_prefixes() -> None:
    from qfleet.workers.engine.model import StaticPromptRegistry

    registry = StaticPromptRegistry(capacity=2)
    assert registry.admit([1, 2, 3])
    assert registry.admit([4, 5])
    assert registry.admit([1, 2, 3])  # already cached: always admitted
    assert not registry.admit([6])  # a third distinct prefix would grow the cache


def test_a_prefix_beyond_the_cache_is_sent_as_plain_prompt_with_the_same_answer(
    model: LoadedModel,
) -> None:
    from qfleet.tasks.schemas import GenerateJob
    from qfleet.workers.engine.batcher import DynamicBatcher
    from qfleet.workers.engine.model import StaticPromptRegistry
    from qfleet.workers.generate import run_generate

    long_system = "You are a careful assistant who answers questions about job queues. " * 2
    first = GenerateJob(system="A " + long_system, prompt="Hi", max_tokens=12)
    second = GenerateJob(system="B " + long_system, prompt="Hi", max_tokens=12)
    batcher = DynamicBatcher(model)
    try:
        # Given a cache with room for one prefix, taken by the first system prompt
        model.static_prompts = StaticPromptRegistry(capacity=1)
        run_generate(batcher, first, submitted_at=None, worker="test")
        assert not model.static_prompts.admit(model.tokenizer.encode_chat(second.chat()).static_ids)
        # When a job with another system prompt runs, its prefix goes as plain prompt tokens
        plain = run_generate(batcher, second, submitted_at=None, worker="test")
        # Then its answer is the one it gets with the prefix cached
        model.static_prompts = StaticPromptRegistry(capacity=4)
        cached = run_generate(batcher, second, submitted_at=None, worker="test")
        assert plain.text == cached.text
        assert plain.usage == cached.usage
    finally:
        batcher.close()
        model.static_prompts = StaticPromptRegistry()
