"""A driver's lease on its sweep: which one driver may run it now (Optuna's heartbeat, per sweep).

The lease is one tag, ``runner.lease``, on the sweep's MLflow parent run: the JSON of a
``LeaseRecord`` naming the holder (driver id, host, pid, Ray job, since when) and when it last
renewed. ``Lease.acquire`` claims it before the driver touches anything, a daemon thread renews it
every ``renew_s`` seconds, and ``release`` marks it released on every way out but SIGKILL.

Invariants:
- a record is *live* while it is not released and its last renewal is younger than ``expire_s``
  seconds by the reader's wall clock (epoch seconds: drivers' clocks must agree to well under
  ``expire_s``, as NTP keeps them); a holder on this very machine (same boot and pid namespace)
  whose process is gone is dead at once, so a rerun right after a crash does not wait;
- a driver goes on only when the sweep's lease is free, released, expired or dead; else
  ``LeaseHeld`` (exit 2) names the holder. After writing its claim it reads it back ``settle_s``
  later, so of two drivers starting together only the later writer goes on;
- a driver whose renewal finds another holder has lost the lease: ``lost`` is set and ``on_lost``
  called once, and the driver must stop. A renewal that fails (MLflow unreachable) is retried; it
  never stops the driver by itself.
Defaults: renew every 5 s, expire after 30 s; ``RUNNER_LEASE_RENEW_S`` and ``RUNNER_LEASE_S``
override them (seconds).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from runner.core import RunnerError

if TYPE_CHECKING:
    from runner.results.store import Store

RENEW_ENV, EXPIRE_ENV = "RUNNER_LEASE_RENEW_S", "RUNNER_LEASE_S"
RENEW_S, EXPIRE_S = 5.0, 30.0


class LeaseHeld(RunnerError):
    """Another live driver holds the sweep's lease; this one must not start."""

    exit_code = 2


class LeaseRecord(BaseModel):
    """Who holds a sweep and until when; times are epoch seconds, ``expire_s`` seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    driver: str = Field(pattern=r"^[0-9a-f]{12}$", description="Random id of one driver process.")
    host: str
    pid: int = Field(ge=0)
    ray_job: str = Field(default="", description="Ray job submission id, else Ray's job id; '' before Ray.")
    since: float = Field(description="When this driver took the lease.")
    renewed: float = Field(description="Its last renewal.")
    expire_s: float = Field(gt=0, description="Without a renewal for this long, the lease is free.")
    released: bool = False
    machine: str = Field(default="", description="Boot id and pid namespace: where ``pid`` means this process.")
    pid_start: int | None = Field(default=None, description="The process's start time in clock ticks since boot.")

    @classmethod
    def here(cls, expire_s: float | None = None) -> LeaseRecord:
        """A fresh identity for this driver process, not yet claimed anywhere."""
        now = time.time()
        return cls(driver=secrets.token_hex(6), host=socket.gethostname(), pid=os.getpid(), ray_job=ray_job_id(),
                   since=now, renewed=now, expire_s=expire_s or _env_s(EXPIRE_ENV, EXPIRE_S), machine=_machine(),
                   pid_start=_start_ticks(os.getpid()))

    def state(self, now: float | None = None) -> Literal["live", "released", "expired", "dead"]:
        if self.released:
            return "released"
        if (time.time() if now is None else now) - self.renewed >= self.expire_s:
            return "expired"
        if self.machine and self.machine == _machine() and _start_ticks(self.pid) != self.pid_start:
            return "dead"  # its process is gone (or the pid now belongs to another process)
        return "live"

    def live(self, now: float | None = None) -> bool:
        return self.state(now) == "live"

    def describe(self, now: float | None = None) -> str:
        age = (time.time() if now is None else now) - self.renewed
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return (f"driver {self.driver} on host {self.host}, pid {self.pid}, "
                f"{f'Ray job {self.ray_job}' if self.ray_job else 'no Ray job'}, since {since} "
                f"(renewed {max(age, 0):.0f} s ago; the lease expires {self.expire_s:g} s after its last renewal)")

    def dumps(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> LeaseRecord | None:
        """The record a tag holds; ``None`` for no tag or one this version cannot read (a free lease)."""
        if not text:
            return None
        try:
            return cls.model_validate_json(text)
        except ValueError:
            return None


class Lease:
    """The live handle of a held lease (never serialised): renews it until ``release``."""

    def __init__(self, store: Store, record: LeaseRecord, renew_s: float):
        self.store, self.record, self.renew_s = store, record, renew_s
        self.lost: LeaseRecord | None = None  # the holder found at a renewal, once another took over
        self.on_lost: Callable[[LeaseRecord], None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="runner-lease", daemon=True)

    @property
    def driver(self) -> str:
        return self.record.driver

    @classmethod
    def acquire(cls, store: Store, me: LeaseRecord | None = None, *, renew_s: float | None = None,
                settle_s: float | None = None) -> Lease:
        """Claim the sweep for this driver, or raise ``LeaseHeld`` naming the live holder.

        On success the store tags every trial run it starts with this driver's id (``Store.driver``).
        """
        me = me or LeaseRecord.here()
        renew_s = renew_s or _env_s(RENEW_ENV, RENEW_S)
        held = store.read_lease()
        if held is not None and held.driver != me.driver and held.live():
            raise LeaseHeld(_held_message(store, held))
        now = time.time()
        me = me.model_copy(update={"since": now, "renewed": now})
        store.write_lease(me)
        time.sleep(min(renew_s, 1.0) if settle_s is None else settle_s)
        back = store.read_lease(store.parent(again=True))  # two first drivers: each made a parent; the oldest counts
        if back is not None and back.driver != me.driver and back.live():
            raise LeaseHeld(_held_message(store, back))  # another driver claimed it in the same moment
        lease = cls(store, me, renew_s)
        store.driver = me.driver
        lease._thread.start()
        return lease

    def set_ray_job(self, job: str) -> None:
        """Name the Ray job once connected (written at the next renewal), unless one is named."""
        if job and not self.record.ray_job:
            self.record = self.record.model_copy(update={"ray_job": job})

    def renew(self) -> bool:
        """One heartbeat; False once the lease is lost (then it is never written again)."""
        if self.lost is not None or self._stop.is_set():
            return self.lost is None
        held = self.store.read_lease()
        if held is not None and held.driver != self.driver:
            self.lost = held
            if self.on_lost is not None:
                self.on_lost(held)
            return False
        self.record = self.record.model_copy(update={"renewed": time.time()})
        self.store.write_lease(self.record)
        return True

    def release(self) -> None:
        """Stop renewing and mark the lease free (best effort: an unreachable MLflow lets it expire)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.renew_s + 1)
        if self.lost is not None:
            return
        try:
            held = self.store.read_lease()
            if held is None or held.driver == self.driver:
                self.store.write_lease(self.record.model_copy(update={"released": True, "renewed": time.time()}))
        except Exception:
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                if not self.renew():
                    return
            except Exception:  # MLflow unreachable: try again at the next beat; the spool keeps results
                pass


def ray_job_id() -> str:
    """The Ray job this process is the driver of, before it connects: the submission id that
    ``ray job submit`` gives its entrypoint (what ``ray job stop`` takes), else ``RAY_JOB_ID``."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if raw:
        try:
            sub = (json.loads(raw).get("metadata") or {}).get("job_submission_id")
            if sub:
                return str(sub)
        except (ValueError, AttributeError):
            pass
    return os.environ.get("RAY_JOB_ID", "")


def _held_message(store: Store, held: LeaseRecord) -> str:
    stop = f"`ray job stop {held.ray_job}`" if held.ray_job.startswith("raysubmit_") else \
        f"`kill {held.pid}` on {held.host}"
    return (f"sweep {store.sweep!r} (experiment {store.experiment!r}) is being run by another driver: "
            f"{held.describe()}\n  next: wait for it to finish, or stop it ({stop}); a driver that died "
            f"frees the sweep {held.expire_s:g} s after its last renewal, at once on its own machine")


def _env_s(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise RunnerError(f"{name}: got {raw!r}; allowed: a number of seconds > 0") from None
    if not value > 0 or value == float("inf"):
        raise RunnerError(f"{name}: got {raw!r}; allowed: a number of seconds > 0")
    return value


def _machine() -> str:
    """This boot of this machine and this pid namespace ('' where /proc does not say)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """Process ``pid``'s start time (clock ticks after boot), or ``None`` if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])  # a zombie is dead; field 22 is the start time
