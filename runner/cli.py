"""``python -m runner``: validate, plan, run, status, report, sync, engine-args.

Exit codes: 0 success; 1 a trial did not complete (or another runtime error); 2 bad input
(an invalid sweep file or arguments); 130 stopped by a signal; 141 the reader of the output
went away (``| head``), quietly. A ``RunnerError`` is printed as its message, never as a
traceback. Any other exception while the sweep file is read is bad input too (one line, exit
2, a hint to run ``validate``); any other exception later is an internal error: one line on the
terminal naming a log file under ``logs/`` that holds the traceback, exit 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import traceback
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


#: Where internal errors' tracebacks go (relative to the working directory unless absolute).
LOG_DIR = "logs"


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a whole number >= 1")
    return n


def _level(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a positive finite number of tok/s per user")
    return x


def _statuses() -> list[str]:
    from runner.plan import Status

    return [s.value.lower() for s in Status if s is not Status.PENDING]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check a sweep file; exit 0 if valid, 2 if not")
    v.add_argument("sweep")
    pl = sub.add_parser("plan", help="show every trial, grouped by serving configuration")
    pl.add_argument("sweep")
    pl.add_argument("--json", action="store_true", help="print [{trial_id, serving_config_id, params}]")
    r = sub.add_parser("run", help="run what is not done yet")
    r.add_argument("sweep")
    r.add_argument("--max-parallel", type=_positive_int, default=None,
                   help="engine launches at once (default: as many as fit)")
    r.add_argument("--rerun", nargs="+", default=[], metavar="TRIAL_ID", help="run these trials again")
    r.add_argument("--rerun-status", nargs="+", default=[], metavar="STATUS", type=str.lower,
                   choices=_statuses(),
                   help="run trials whose latest status is one of these again (e.g. failed invalid)")
    r.add_argument("--verbose", action="store_true", help="stream engine logs to this terminal")
    s = sub.add_parser("status", help="counts by status, and failed trials with their reasons")
    s.add_argument("sweep")
    rp = sub.add_parser("report", help="tables, CSV and plots from a (partial) sweep, also on the parent run")
    rp.add_argument("sweep")
    rp.add_argument("--levels", type=_level, nargs="+", default=None, metavar="TOK_S_USER",
                    help="interactivity levels for the iso-interactivity table")
    rp.add_argument("--ratio", nargs=2, default=None, metavar=("A", "B"), help="curves compared in its ratio column")
    rp.add_argument("--interpolation", choices=("tpot", "interactivity"), default="tpot",
                    help="iso-interactivity: linear in TPOT (default; reproduces the GB300/GB200 study) or in "
                         "tok/s/user")
    y = sub.add_parser("sync", help="upload spooled results that have not reached MLflow")
    y.add_argument("sweep")
    e = sub.add_parser("engine-args", help="list an engine's argument names")
    e.add_argument("engine")
    e.add_argument("--refresh", action="store_true", help="rewrite configs/engines.yaml from the installed engine")
    return p


def main(argv: list[str] | None = None) -> int:
    from runner.core import RunnerError, redact

    args = _parser().parse_args(argv)
    if not isinstance(sys.stdout, redact.Stream):
        sys.stdout, sys.stderr = redact.Stream(sys.stdout), redact.Stream(sys.stderr)
    try:
        try:
            loaded = _read_input(args)
        except RunnerError:
            raise
        except Exception as e:  # anything unforeseen while reading the user's file is still bad input
            sweep = getattr(args, "sweep", "")
            print(f"error: {sweep}: could not be read ({type(e).__name__}: {redact.text(str(e))[:300]})\n"
                  f"  next: check it with `python -m runner validate {sweep}`", file=sys.stderr)
            return 2
        return _dispatch(args, loaded)
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        log = _log_internal(e)
        print(f"error: internal error ({type(e).__name__}: {redact.text(str(e))[:200]}); the traceback is in "
              f"{log}", file=sys.stderr)
        return 1


def _reader_gone() -> int:
    """The output's reader closed (``| head``): point stdout at /dev/null so the final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 141


def _log_internal(e: BaseException) -> str:
    from runner.core import redact

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = Path(os.environ.get("RUNNER_LOG_DIR", LOG_DIR)) / f"runner-{stamp}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(redact.text("".join(traceback.format_exception(e))))
        return str(path.resolve())
    except OSError as oe:
        return f"(not written: {oe})"


def _read_input(args: argparse.Namespace) -> tuple | None:
    """Load and expand the sweep file, and check the arguments that depend on it: every problem a
    ``RunnerError`` with exit 2 before anything starts."""
    from runner.core import UsageError
    from runner.plan import context, grid
    from runner.sweep import catalog
    from runner.sweep import spec as spec_mod

    if args.cmd == "engine-args":
        engines = catalog.engines()
        if args.engine not in engines:
            raise UsageError(f"engine-args: got {args.engine!r}; allowed: {', '.join(sorted(engines))}")
        return None
    spec = spec_mod.load(args.sweep)
    trials = grid.expand(spec)
    context.check(args.sweep, trials, spec.env)
    if args.cmd == "run" and args.rerun:
        ids = {t.trial_id for t in trials}
        unknown = [t for t in args.rerun if t not in ids]
        if unknown:
            raise UsageError(f"run --rerun: got {', '.join(unknown)}: no trial of {args.sweep} has that id; allowed: "
                             f"the ids `python -m runner plan {args.sweep}` lists ({len(ids)} trials)")
    return spec, trials


def _dispatch(args: argparse.Namespace, loaded: tuple | None) -> int:
    from runner import preflight, session
    from runner.plan import grid

    if args.cmd == "validate":
        spec, trials = loaded
        print(f"{args.sweep}: valid; {len(trials)} trials in {len(grid.group(trials))} serving configurations")
        for line in preflight.fit_lines(preflight.fits(spec, trials), spec.fit.enforce):
            print(line)
        return 0
    if args.cmd == "plan":
        spec, trials = loaded
        verdicts = preflight.fits(spec, trials)
        per_trial, per_config = preflight.estimates(spec, trials, verdicts)
        if args.json:
            print(json.dumps(preflight.plan_rows(trials, verdicts, per_trial), indent=1))
        else:
            print(preflight.format_plan(spec.name, trials, verdicts, per_config))
            for line in preflight.fit_lines(verdicts, spec.fit.enforce):
                print(line)
        return 0
    if args.cmd == "run":
        return session.run(args.sweep, max_parallel=args.max_parallel, rerun_ids=set(args.rerun),
                           rerun_status=set(args.rerun_status), verbose=args.verbose)
    if args.cmd == "status":
        return session.status(args.sweep)
    if args.cmd == "report":
        from runner import report

        return report.main(args.sweep, levels=args.levels, ratio=tuple(args.ratio) if args.ratio else None,
                           interpolation=args.interpolation)
    if args.cmd == "sync":
        return session.sync(args.sweep)
    if args.cmd == "engine-args":
        return _engine_args(args.engine, args.refresh)
    raise AssertionError(args.cmd)


def _engine_args(engine: str, refresh: bool) -> int:
    import importlib

    from runner.sweep import catalog

    engines = catalog.engines()
    if refresh:
        import yaml

        from runner.engines import MODULES

        mod = importlib.import_module(MODULES[engine])
        names = [n for n in mod.argument_names() if n not in engines[engine]["reserved"]]
        path = catalog.config_dir() / "engines.yaml"
        text = path.read_text()
        header = "".join(ln + "\n" for ln in text.splitlines() if ln.startswith("#"))
        engines[engine]["args"] = names
        if hasattr(mod, "argument_choices"):
            engines[engine]["choices"] = mod.argument_choices()
        path.write_text(header + yaml.safe_dump(engines, sort_keys=False, width=100))
        print(f"{path}: {engine} now lists {len(names)} arguments")
        return 0
    for name in engines[engine]["args"]:
        print(name)
    return 0
