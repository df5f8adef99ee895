"""Real SGLang (the CPU lane venv) behind the ``Engine`` protocol, on the tiny model.

The engine actor runs in the lane's python (Ray ``py_executable``) and is driven exactly as
``runner.cluster.scheduler`` drives it: start (sanity request included), one load point, stop, kill.
A second test runs ``SglangEngine`` directly in a lane subprocess (its own process group,
since ``Engine.shutdown`` kills every descendant of its caller) to pin abort and stats.
The lane is built when missing; a failed build fails the test, it is never skipped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap

import pytest
import yaml

from runner.cluster.actor import SANITY_OUTPUT, EngineActor
from runner.plan.trial import LoadPoint, ServingConfig
from tests.integration.conftest import ROOT

LANE_ENV = {"SGLANG_USE_CPU_ENGINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def lane() -> str:
    """The SGLang lane venv (built once, ~1.5 min, when missing)."""
    p = subprocess.run(["bash", "scripts/build-sglang-lane.sh"], cwd=ROOT, capture_output=True, text=True,
                       timeout=3600)
    assert p.returncode == 0, f"building the SGLang lane failed ({p.returncode}):\n{p.stderr[-4000:]}"
    venv = p.stdout.strip().splitlines()[-1]
    assert os.access(f"{venv}/bin/python", os.X_OK), venv
    return venv


def lane_python(lane: str, args: list[str], timeout: float) -> str:
    """Run the lane's python in its own process group; kill that group if it hangs."""
    proc = subprocess.Popen([f"{lane}/bin/python", "-W", "ignore", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **LANE_ENV}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"lane python timed out after {timeout} s:\n{err[-4000:]}")
    assert proc.returncode == 0, f"lane python failed ({proc.returncode}):\n{err[-4000:]}"
    return out


def test_sglang_actor_start_sanity_load_point_stop(ray_local, lane, tiny_model):
    ray = ray_local
    config = ServingConfig(engine="sglang", model="tiny-llama", model_path=tiny_model, hardware="cpu",
                           engine_args={"mem_fraction_static": 0.05})
    actor = ray.remote(EngineActor).options(
        runtime_env={"py_executable": f"{lane}/bin/python", "env_vars": dict(LANE_ENV)},
        num_cpus=1, max_restarts=0).remote(config.model_dump(exclude={"serving_config_id"}), 0)
    try:
        started = ray.get(actor.start.remote(60), timeout=600)
        assert started["ok"], started
        assert started["versions"]["engine"] == "sglang", started["versions"]
        assert started["versions"]["engine_version"] == "0.5.23"
        assert SANITY_OUTPUT == 8  # ok=True above means the sanity request got exactly these many

        load = LoadPoint(input_len=32, output_len=16, concurrency=4, num_prompts=8, warmup=1)
        res = ray.get(actor.run.remote(load.model_dump(), 60), timeout=600)
        assert res["ok"], res
        recs = res["records"]
        assert len(recs) == 8 and res["warmup_count"] == 1
        for r in recs:
            assert r["ok"] and not r["error"], r
            assert sum(r["chunk_tokens"]) == 16 and r["prompt_tokens"] == 32, r
            # one time per streamed chunk; a chunk may carry several tokens when the stream is
            # consumed late (two shared cores), so the token counts, not the chunks, sum to 16
            assert 1 <= len(r["chunk_times"]) == len(r["chunk_tokens"]) <= 16, r
            assert r["chunk_times"] == sorted(r["chunk_times"]), r
            assert r["finish_reason"] == "length", r
        assert res["duration_s"] > 0
        # engine gauges come from SGLang's own load snapshot, sampled during the load
        assert any("kv_cache_usage" in s and "num_running_reqs" in s for s in res["samples"]), res["samples"]
        ray.get(actor.stop.remote(), timeout=60)
    finally:
        ray.kill(actor, no_restart=True)


def test_sglang_argument_catalogue_matches_lane(lane):
    out = lane_python(lane, ["-c", "import json; from runner.engines.sglang import argument_names; "
                                   "print(json.dumps(argument_names()))"], timeout=300)
    installed = set(json.loads(out.strip().splitlines()[-1]))
    entry = yaml.safe_load((ROOT / "configs" / "engines.yaml").read_text())["sglang"]
    listed = set(entry["args"]) | set(entry["reserved"])
    assert listed == installed, sorted(listed ^ installed)
    assert not set(entry["args"]) & set(entry["reserved"])
    assert str(entry["version"]) == "0.5.23"


SCRIPT = """
import asyncio, json, sys, time

from runner.engines.sglang import SglangEngine
from runner.plan.trial import ServingConfig

LONG = 4000  # tokens: 32 + 4000 < the tiny model's 4096 context; no request can end while it is probed


async def wait_for(engine, pred, limit, alive=()):
    # Poll the sampled stats; the requests under test stay in flight meanwhile (they are LONG), so
    # a slow or busy machine only makes this wait longer, it cannot make the state pass.
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if pred(engine.stats()):
            return engine.stats()
        assert not any(t.done() for t in alive), "a request ended before the probe saw it"
        await asyncio.sleep(0.1)
    raise AssertionError(f"stats never matched in {limit} s: {engine.stats()}")


async def main(model):
    engine = SglangEngine()
    await engine.start(ServingConfig(engine="sglang", model="tiny", model_path=model, hardware="cpu",
                                     engine_args={"mem_fraction_static": 0.05}))
    try:
        prompt = list(range(10, 42))
        counts, ends = {}, {}

        async def consume(rid):
            counts[rid] = 0
            async for d in engine.generate(prompt, LONG, ignore_eos=True, temperature=0.0, request_id=rid):
                counts[rid] += d.new_tokens
                if d.finished:
                    ends[rid] = [counts[rid], d.finish_reason]
            return ends.get(rid)

        # "x-1" is a prefix of "x-10" and "x-11": an abort by rid prefix would take all three
        tasks = {rid: asyncio.create_task(consume(rid)) for rid in ("x-1", "x-10", "x-11")}
        busy = await wait_for(engine, lambda s: s.get("num_running_reqs", 0) >= 3, 120, tasks.values())
        await engine.abort("x-1")
        x1 = await asyncio.wait_for(tasks["x-1"], 60)
        # the others go on decoding after x-1 has ended: they were not aborted with it
        after = {rid: counts[rid] for rid in ("x-10", "x-11")}
        t0 = time.monotonic()
        while any(counts[r] < after[r] + 16 for r in after) and time.monotonic() - t0 < 60:
            assert not tasks["x-10"].done() and not tasks["x-11"].done(), ends
            await asyncio.sleep(0.05)
        going = {rid: [counts[rid] - after[rid], tasks[rid].done()] for rid in after}
        for rid in after:
            tasks[rid].cancel()  # closing a stream aborts its request
        await asyncio.gather(*(tasks[r] for r in after), return_exceptions=True)
        await wait_for(engine, lambda s: s.get("num_running_reqs", 1) == 0, 60)

        # a stream closed early aborts its request: the engine goes idle long before LONG tokens,
        # measured against this request's own decode speed
        stream = engine.generate(prompt, LONG, ignore_eos=True, temperature=0.0, request_id="y-1")
        got = (await stream.__anext__()).new_tokens
        t_first = time.monotonic()
        while got < 64:
            got += (await stream.__anext__()).new_tokens
        per_token_s = (time.monotonic() - t_first) / max(got - 1, 1)
        rest_s = (LONG - got) * per_token_s
        await wait_for(engine, lambda s: s.get("num_running_reqs", 0) >= 1, 60)
        t_close = time.monotonic()
        await stream.aclose()
        idle = await wait_for(engine, lambda s: s.get("num_running_reqs", 1) == 0, max(rest_s, 10.0))
        idle_s = time.monotonic() - t_close
        print(json.dumps({"x1": x1, "going": going, "busy": busy, "idle": idle,
                          "idle_s": idle_s, "rest_s": rest_s}))
    finally:
        await engine.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
"""


def test_sglang_abort_is_exact_and_stats_are_sampled(lane, tiny_model, tmp_path):
    script = tmp_path / "abort_probe.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = json.loads(lane_python(lane, [str(script), tiny_model], timeout=600).strip().splitlines()[-1])
    x1, going = out["x1"], out["going"]
    assert x1[1] == "abort" and 0 <= x1[0] < 4000, out
    assert all(n >= 16 and not done for n, done in going.values()), out
    busy, idle = out["busy"], out["idle"]
    # identical prompts share one radix-cached copy: used tokens = 32 + decoded ones
    assert busy["num_running_reqs"] >= 3 and busy["kv_cache_used_tokens"] > 32, busy
    assert 0 <= busy["kv_cache_usage"] <= 1, busy  # a fraction; tiny here (a few hundred of ~850k slots)
    assert set(busy) == {"kv_cache_usage", "num_running_reqs", "num_waiting_reqs", "kv_cache_used_tokens",
                         "prefix_cache_hit_rate_recent"}, busy
    assert idle["num_running_reqs"] == 0, idle
    assert out["idle_s"] < out["rest_s"] / 2, out  # idle well before the rest of its tokens could be decoded
