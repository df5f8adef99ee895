"""The ``Engine`` protocol every engine implements, and the lazy loader.

Invariants: an engine module imports its library only inside ``start`` (or later), so the
driver can import ``runner`` without any engine installed. ``generate`` yields one ``Delta``
per streamed chunk, whose ``new_tokens`` is the engine's own count of output tokens in that
chunk (never a re-tokenisation of text). One engine object serves one serving
configuration replica for its whole life; ``stop`` is best-effort, and killing the actor
that holds the engine is the guaranteed way to free its devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from runner.plan import ServingConfig


@dataclass(frozen=True)
class Delta:
    """One streamed chunk: output tokens it carried, and whether the request finished."""

    new_tokens: int
    finished: bool = False
    prompt_tokens: int | None = None
    finish_reason: str | None = None


@runtime_checkable
class Engine(Protocol):
    name: str

    async def start(self, config: ServingConfig, *, multi_node: bool = False) -> None:
        """Load the model and become ready to serve; raise on failure.

        ``multi_node`` says the replica's placement group spans nodes, so the engine must
        use its Ray-based executor inside that group; otherwise it stays on one node.
        """

    def generate(self, prompt_ids: list[int], max_tokens: int, *, ignore_eos: bool,
                 temperature: float, request_id: str) -> AsyncIterator[Delta]:
        """Stream one request's output chunks."""

    async def abort(self, request_id: str) -> None:
        """Cancel a request in flight (stalled stream, timeout)."""

    def vocab(self) -> tuple[int, list[int]]:
        """(vocabulary size, special token ids) of the loaded tokenizer."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` under the loaded tokenizer (for file datasets)."""

    def stats(self) -> dict[str, float]:
        """Latest engine-side gauges (KV-cache usage, running/waiting requests, …)."""

    def versions(self) -> dict[str, str]:
        """Library versions actually loaded: engine, torch, transformers."""

    async def stop(self) -> None:
        """Shut the engine down; best-effort."""


#: Engine name → the module implementing it (its ``ENGINE`` class). Code, not configuration:
#: the actor needs it on nodes that have no copy of ``configs/``.
MODULES = {"vllm": "runner.engines.vllm", "sglang": "runner.engines.sglang",
           "simulated": "runner.engines.simulated"}


def load_engine(name: str) -> Engine:
    """Instantiate engine ``name``; its library is imported only when it starts."""
    return importlib.import_module(MODULES[name]).ENGINE()


async def cancel(task: asyncio.Task | None) -> None:
    """Cancel a background task (an engine's stats poller) and wait until it has ended; its
    outcome, cancellation included, is swallowed. ``None`` is a no-op."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def engine_kwargs(config: ServingConfig, reserved: dict[str, Any]) -> dict[str, Any]:
    """Engine arguments plus the reserved ones the runner sets from the sweep's own keys."""
    return {**config.engine_args, **reserved}


class VersionDrift(ValueError):
    """The installed engine lacks an argument the sweep gives it (its catalogue is another version's)."""


def version_drift(name: str, catalogue_version: str | None, engine_args: dict[str, Any]) -> str | None:
    """Compare the installed engine with the version its argument catalogue (``configs/engines.yaml``,
    which ``validate`` checked the sweep against) was built from.

    Same version (local build suffixes such as ``+cpu`` ignored), or no catalogue version: ``None``.
    Another version that knows every argument the sweep gives: a note naming both versions, to be
    shown and recorded. Another version that lacks one: ``VersionDrift`` naming both versions and
    the missing arguments, before the engine is started.
    """
    mod = importlib.import_module(MODULES[name])
    installed = getattr(mod, "installed_version", None)
    if catalogue_version is None or installed is None:
        return None
    have, want = str(installed()).split("+")[0], str(catalogue_version).split("+")[0]
    if have == want:
        return None
    missing = sorted(set(engine_args) - set(mod.argument_names()))
    if missing:
        raise VersionDrift(f"{name} {have} is installed here, but the engine-argument catalogue the sweep was "
                           f"checked against is {name} {want}'s, and {name} {have} has no argument "
                           f"{', '.join(missing)}: install {name}=={want} on the engine nodes "
                           f"(pip install '.[{name}]') or drop the argument")
    return (f"{name} {have} is installed here; the engine-argument catalogue is {name} {want}'s "
            f"(every argument of the sweep exists in {have})")

