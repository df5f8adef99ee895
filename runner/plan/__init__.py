"""From a sweep to trials: the frozen records (``trial``), their content-hash ids (``ids``) and
the pure grid expansion (``grid``: every axis crossed, minus ``exclude``, grouped by serving
configuration)."""

from runner.plan import grid, ids, trial
from runner.plan.grid import expand, group
from runner.plan.ids import SCHEMA_VERSION, canonical_json, content_id
from runner.plan.trial import SIMULATED_ENGINE, SIMULATION, LoadPoint, ServingConfig, Status, Trial

__all__ = ["SCHEMA_VERSION", "SIMULATED_ENGINE", "SIMULATION", "LoadPoint", "ServingConfig", "Status", "Trial",
           "canonical_json", "content_id", "expand", "grid", "group", "ids", "trial"]
