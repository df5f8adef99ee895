"""Reading and checking a sweep file: the schema (``spec``), the safe ``num_prompts`` language
(``expr``), model and dataset paths (``paths``) and the catalogues under ``configs/``
(``catalog``: hardware, engines and their argument names, profiles, lanes), and the node types an
autoscaling cluster may launch (``nodetypes``).

A sweep file that passes ``load`` is a frozen :class:`SweepSpec`; one that does not raises
:class:`runner.core.SweepSpecError` naming the file, the key, the value and what is allowed.
"""

from runner.sweep import catalog, expr, nodetypes, paths, spec
from runner.sweep.spec import DatasetSpec, SweepSpec, TimeoutSpec, load, num_prompts, rates

__all__ = ["DatasetSpec", "SweepSpec", "TimeoutSpec", "catalog", "expr", "load", "nodetypes", "num_prompts", "paths",
           "rates", "spec"]
