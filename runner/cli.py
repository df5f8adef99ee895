"""``python -m runner``: validate, plan, run, status, report, sync, engine-args.

Exit codes: 0 success; 1 a trial did not complete (or another runtime error); 2 bad input
(an invalid sweep file or arguments); 130 stopped by a signal. A ``RunnerError`` is printed
as its message, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


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
    r.add_argument("--max-parallel", type=int, default=None, help="engine launches at once (default: as many as fit)")
    r.add_argument("--rerun", nargs="+", default=[], metavar="TRIAL_ID", help="run these trials again")
    r.add_argument("--rerun-status", nargs="+", default=[], metavar="STATUS",
                   help="run trials whose latest status is one of these again (e.g. failed invalid)")
    r.add_argument("--verbose", action="store_true", help="stream engine logs to this terminal")
    s = sub.add_parser("status", help="counts by status, and failed trials with their reasons")
    s.add_argument("sweep")
    rp = sub.add_parser("report", help="tables, CSV and plots from a (partial) sweep, also on the parent run")
    rp.add_argument("sweep")
    rp.add_argument("--levels", type=float, nargs="+", default=None, metavar="TOK_S_USER",
                    help="interactivity levels for the iso-interactivity table")
    rp.add_argument("--ratio", nargs=2, default=None, metavar=("A", "B"), help="curves compared in its ratio column")
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
        return _dispatch(args)
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


def _dispatch(args: argparse.Namespace) -> int:
    from runner import session
    from runner.plan import grid
    from runner.sweep import spec as spec_mod

    if args.cmd == "validate":
        spec = spec_mod.load(args.sweep)
        trials = grid.expand(spec)
        print(f"{args.sweep}: valid; {len(trials)} trials in {len(grid.group(trials))} serving configurations")
        return 0
    if args.cmd == "plan":
        spec = spec_mod.load(args.sweep)
        trials = grid.expand(spec)
        if args.json:
            print(json.dumps(session.plan_rows(trials), indent=1))
        else:
            print(session.format_plan(spec.name, trials))
        return 0
    if args.cmd == "run":
        return session.run(args.sweep, max_parallel=args.max_parallel, rerun_ids=set(args.rerun),
                           rerun_status=set(args.rerun_status), verbose=args.verbose)
    if args.cmd == "status":
        return session.status(args.sweep)
    if args.cmd == "report":
        from runner import report

        return report.main(args.sweep, levels=args.levels, ratio=tuple(args.ratio) if args.ratio else None)
    if args.cmd == "sync":
        return session.sync(args.sweep)
    if args.cmd == "engine-args":
        return _engine_args(args.engine, args.refresh)
    raise AssertionError(args.cmd)


def _engine_args(engine: str, refresh: bool) -> int:
    import importlib

    from runner.core import RunnerError
    from runner.sweep import catalog

    engines = catalog.engines()
    if engine not in engines:
        raise RunnerError(f"unknown engine {engine!r}; allowed: {', '.join(sorted(engines))}")
    if refresh:
        import yaml

        from runner.engines import MODULES

        mod = importlib.import_module(MODULES[engine])
        names = [n for n in mod.argument_names() if n not in engines[engine]["reserved"]]
        path = catalog.config_dir() / "engines.yaml"
        text = path.read_text()
        header = "".join(ln + "\n" for ln in text.splitlines() if ln.startswith("#"))
        engines[engine]["args"] = names
        path.write_text(header + yaml.safe_dump(engines, sort_keys=False, width=100))
        print(f"{path}: {engine} now lists {len(names)} arguments")
        return 0
    for name in engines[engine]["args"]:
        print(name)
    return 0
