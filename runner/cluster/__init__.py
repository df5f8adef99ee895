"""Where trials meet Ray: connecting the driver (``connection``), placement-group requests and
feasibility (``placement``), API modes (``apimode``), engine lanes as runtime environments
(``lanes``), the engine and client actors (``actor``) and the scheduler that admits launches
as they fit (``scheduler``)."""

from runner.cluster import apimode, lanes, placement
from runner.cluster.connection import connect
from runner.cluster.scheduler import Outcome, Scheduler

__all__ = ["Outcome", "Scheduler", "apimode", "connect", "lanes", "placement"]
