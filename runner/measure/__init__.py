"""Making the numbers: prompts (``dataset``), the load generator that drives an engine and
checks its own schedule (``loadgen``), per-request records and their aggregation with
``vllm bench serve``'s definitions (``metrics``), and the gates that make a load point INVALID
rather than a result (``validity``)."""

from runner.measure import dataset, loadgen, metrics, validity
from runner.measure.metrics import DEFINITION, RequestRecord, aggregate, lag_stats

__all__ = ["DEFINITION", "RequestRecord", "aggregate", "dataset", "lag_stats", "loadgen", "metrics", "validity"]
