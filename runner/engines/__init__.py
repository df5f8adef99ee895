"""Engines behind one protocol. Engine libraries are imported only inside the actor."""

from runner.engines.base import Delta, Engine, load_engine

__all__ = ["Delta", "Engine", "load_engine"]
