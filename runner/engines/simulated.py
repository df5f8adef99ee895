"""SIMULATION ONLY: an engine that loads no model and only holds its resources.

It exists to measure the scheduler alone (benchmarks/bench_scheduler.py): a request streams
``max_tokens`` one-token chunks, chunk i at ``i × sim_token_s`` seconds after the first (on
the event loop's clock, so sleep overshoot does not accumulate), so a load point's length is
known in advance. Its numbers are not inference measurements: a sweep must say
``allow_simulation: true`` to use it, and everything its trials produce carries
``SIMULATION`` (derived from the engine name, ``ServingConfig.simulation``): the run name,
the ``runner.simulation`` tag and description of its MLflow run, its progress lines, every
report row and plot; its version says so too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from runner.engines.base import Delta
from runner.plan import SIMULATED_ENGINE, ServingConfig


class SimulatedEngine:
    name = SIMULATED_ENGINE

    def __init__(self) -> None:
        self.token_s = 0.01

    async def start(self, config: ServingConfig, *, multi_node: bool = False) -> None:
        self.token_s = float(config.engine_args.get("sim_token_s", 0.01))
        await asyncio.sleep(float(config.engine_args.get("sim_start_s", 0.0)))

    async def generate(self, prompt_ids: list[int], max_tokens: int, *, ignore_eos: bool,
                       temperature: float, request_id: str) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(max_tokens):  # against absolute deadlines: sleep overshoot does not add up
            await asyncio.sleep(max(0.0, t0 + (i + 1) * self.token_s - loop.time()))
            yield Delta(new_tokens=1, finished=i == max_tokens - 1, prompt_tokens=len(prompt_ids),
                        finish_reason="length" if i == max_tokens - 1 else None)

    async def abort(self, request_id: str) -> None:
        return None

    def vocab(self) -> tuple[int, list[int]]:
        return 1000, [0]

    def encode(self, text: str) -> list[int]:
        return [1 + b % 999 for b in text.encode()]

    def stats(self) -> dict[str, float]:
        return {}

    def versions(self) -> dict[str, str]:
        return {"engine": "simulated", "engine_version": "simulation (holds resources only; no model)"}

    async def stop(self) -> None:
        return None


def argument_names() -> list[str]:
    return ["sim_start_s", "sim_token_s"]


ENGINE = SimulatedEngine
