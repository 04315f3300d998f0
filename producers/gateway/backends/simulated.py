"""A simulated model: deterministic token counts from the prompt, configurable latency and error rate.

The demo, the tests and the benchmark run the whole gateway against it with no AWS account. Counts follow a
fixed rule (input: one token per 4 UTF-8 bytes of prompt, rounded up, plus 4 per message; output:
``min(max_tokens, output_tokens)``) so a test can predict every usage event exactly. The input rule always
stays under the gateway's conservative reservation bound (one token per byte), as a real tokenizer does.
Failures are drawn from a seeded random generator: the same seed gives the same sequence of failures.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final

from producers.gateway.models import (
    FailureKind,
    ModelBackendError,
    ModelCall,
    ModelReply,
    StreamEnd,
    StreamPart,
    TextDelta,
)
from shared.pricing import TokenUsage

_WORDS: Final = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
STREAM_WORDS_PER_DELTA: Final = 8


def simulated_input_tokens(call: ModelCall) -> int:
    size = sum(len(t.encode()) for t in call.system) + sum(len(m.text.encode()) for m in call.messages)
    return -(-size // 4) + 4 * len(call.messages)


class SimulatedModel:
    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        error_rate: float = 0.0,
        output_tokens: int = 64,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must be within [0, 1]")
        if latency_ms < 0 or output_tokens < 0:
            raise ValueError("latency_ms and output_tokens must not be negative")
        self.latency_ms = latency_ms
        self.error_rate = error_rate
        self.output_tokens = output_tokens
        self._random = random.Random(seed)  # noqa: S311 - simulation, not security
        self._lock = threading.Lock()
        self._sleep = sleep
        self.calls = 0

    def _start(self, call: ModelCall) -> tuple[TokenUsage, str]:
        with self._lock:
            self.calls += 1
            fail = self.error_rate > 0 and self._random.random() < self.error_rate
        if self.latency_ms:
            self._sleep(self.latency_ms / 1000)
        if fail:
            raise ModelBackendError(FailureKind.FAILED, "simulated model failure", code="SimulatedFailure")
        output = min(call.max_tokens, self.output_tokens)
        stop = "max_tokens" if output < self.output_tokens else "end_turn"
        return TokenUsage(input_tokens=simulated_input_tokens(call), output_tokens=output), stop

    @staticmethod
    def _words(count: int) -> list[str]:
        return [_WORDS[i % len(_WORDS)] for i in range(count)]

    def converse(self, call: ModelCall) -> ModelReply:
        usage, stop = self._start(call)
        return ModelReply(" ".join(self._words(usage.output_tokens)), stop, usage)

    def converse_stream(self, call: ModelCall) -> Iterator[StreamPart]:
        usage, stop = self._start(call)
        words = self._words(usage.output_tokens)
        for i in range(0, len(words), STREAM_WORDS_PER_DELTA):
            yield TextDelta(("" if i == 0 else " ") + " ".join(words[i : i + STREAM_WORDS_PER_DELTA]))
        yield StreamEnd(stop, usage)
