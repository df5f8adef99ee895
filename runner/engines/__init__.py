"""Engines behind one protocol (``base.Engine``), one file per engine: ``vllm`` (in-process
``AsyncLLM``), ``sglang`` (in-process ``sglang.Engine``; ``sglang_nodes`` lays a replica over
nodes), ``simulated`` (SIMULATION ONLY: holds resources) and ``openai_http`` (an OpenAI-compatible
server over HTTP). Engine libraries are imported only inside the actor, when an engine starts."""

from runner.engines import sglang_nodes
from runner.engines.base import MODULES, Delta, Engine, VersionDrift, load_engine, version_drift
from runner.engines.openai_http import OpenAIHttpEngine

__all__ = ["MODULES", "Delta", "Engine", "OpenAIHttpEngine", "VersionDrift", "load_engine", "sglang_nodes",
           "version_drift"]
