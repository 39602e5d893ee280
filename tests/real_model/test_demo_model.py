"""The demo Qwen model answers real questions through Redis and a worker process.

Greedy decoding (temperature 0) makes every answer reproducible; the assertions check what a
0.5B instruct model reliably gets right, not style.
"""

from __future__ import annotations

import re

import pytest

from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.tasks.schemas import ChatMessage, GenerateJob

pytestmark = [pytest.mark.real_model, pytest.mark.integration]

CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
LATIN = re.compile(r"[A-Za-z]")


def test_solves_a_linear_equation(worker: WorkerProcess, fleet: FleetClient) -> None:
    # Given a worker serving the demo model
    # When it is asked to solve 2x + 5 = 17, greedily
    result = fleet.wait(fleet.submit(GenerateJob(prompt="Solve 2x + 5 = 17", max_tokens=256)))
    # Then the answer arrives at x = 6 and ends on its own
    assert re.search(r"x\s*=\s*6\b", result.text), result.text
    assert result.finish_reason == "stop"
    assert result.model.id.startswith("qwen2.5-coder-0.5b-instruct-int8-demo")
    assert (result.model.device, result.model.compute_type) == ("cpu", "int8")


def test_chatml_system_prompt_is_honoured(worker: WorkerProcess, fleet: FleetClient) -> None:
    # Given a system message that fixes how every answer starts
    system = "You are a pirate. Always start your answer with 'Arr!'"
    questions = ["What is the capital of France?", "Name three colours."]
    # When questions are asked as ChatML messages, and once without the system message
    jobs = [
        GenerateJob(
            messages=[
                ChatMessage(role="system", content=system),
                ChatMessage(role="user", content=q),
            ],
            max_tokens=48,
        )
        for q in questions
    ]
    answers = [fleet.wait(fleet.submit(job)).text.strip() for job in jobs]
    plain = fleet.wait(fleet.submit(GenerateJob(prompt=questions[0], max_tokens=48))).text
    # Then every answer follows the system message, and the plain one does not
    assert all(answer.startswith("Arr") for answer in answers), answers
    assert "Paris" in answers[0]
    assert not plain.strip().startswith("Arr"), plain


def test_chinese_question_gets_a_chinese_answer(worker: WorkerProcess, fleet: FleetClient) -> None:
    # When a question is asked in Chinese
    result = fleet.wait(fleet.submit(GenerateJob(prompt="什么是队列？", max_tokens=64)))
    # Then the answer is written in Chinese: CJK characters outnumber Latin letters
    cjk, latin = len(CJK.findall(result.text)), len(LATIN.findall(result.text))
    assert cjk >= 10, result.text
    assert cjk > 2 * latin, result.text


def test_stop_string_and_max_tokens(worker: WorkerProcess, fleet: FleetClient) -> None:
    prompt = "Count from 1 to 10, separated by commas."
    # Given the model's free answer
    free = fleet.wait(fleet.submit(GenerateJob(prompt=prompt, max_tokens=48)))
    assert "4, 5, 6" in free.text, free.text
    # When the same prompt carries a stop string, or a budget of 5 tokens
    stopped = fleet.wait(fleet.submit(GenerateJob(prompt=prompt, max_tokens=48, stop=["5"])))
    short = fleet.wait(fleet.submit(GenerateJob(prompt=prompt, max_tokens=5)))
    # Then the stop string ends the answer just before it, and the budget cuts it at 5 tokens
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.index("5")]
    assert short.finish_reason == "length"
    assert short.usage.completion_tokens == 5
    assert free.text.startswith(short.text)
