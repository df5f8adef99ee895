"""Where trials meet Ray: connecting the driver (``connection``); placement-group requests and
feasibility (``placement``) against what the cluster has and may still launch (``capacity``), and
what Ray's autoscaler v2 says of a waiting group (``autoscaler``); a launch's record (``launch``);
API modes (``apimode``); engine lanes as runtime environments (``lanes``); the engine and client
actors (``actor``); the scheduler that admits launches as they fit (``scheduler``); the teardown
that kills an engine's whole process tree (``reaper``); DP replicas' results on one clock
(``replicas``)."""

from runner.cluster import apimode, autoscaler, capacity, lanes, launch, placement, reaper, replicas
from runner.cluster.connection import connect
from runner.cluster.scheduler import Outcome, Scheduler

__all__ = ["Outcome", "Scheduler", "apimode", "autoscaler", "capacity", "connect", "lanes", "launch", "placement",
           "reaper", "replicas"]
