"""From a sweep to trials: the frozen records (``trial``), their content-hash ids (``ids``) and
the pure grid expansion (``grid``: every axis crossed, minus ``exclude``, grouped by serving
configuration), the trials that can never fit their engine's context (``context``), and which
configurations fit their GPUs, with how much KV cache (``architecture``, ``fit``), and what they
will cost (``cost``)."""

from runner.plan import architecture, context, cost, fit, grid, ids, trial
from runner.plan.grid import expand, group
from runner.plan.ids import SCHEMA_VERSION, canonical_json, content_id
from runner.plan.trial import SIMULATED_ENGINE, SIMULATION, LoadPoint, ServingConfig, Status, Trial

__all__ = ["SCHEMA_VERSION", "SIMULATED_ENGINE", "SIMULATION", "LoadPoint", "ServingConfig", "Status", "Trial",
           "architecture", "canonical_json", "content_id", "context", "cost", "expand", "fit", "grid", "group", "ids",
           "trial"]
