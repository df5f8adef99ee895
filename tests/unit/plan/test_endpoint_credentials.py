"""A credential in ``endpoint.base_url`` is never part of an id, nor of params; ids of sweeps without
one are the ones they had before credentials were stripped (pinned)."""

import json

import pytest

from runner.plan.grid import expand
from runner.sweep.spec import load
from tests.unit.conftest import BASE

#: BASE's trial ids and serving-config ids, computed before endpoint credentials were stripped.
PINNED_BASE = [("c13d02953dd20bdd", "73e7a063c78bc256"), ("900421b726da6c46", "73e7a063c78bc256"),
               ("63e7f86849a9ae51", "25d43ccfeea02adc"), ("e1de475b6d465cb2", "25d43ccfeea02adc")]
#: The same for an endpoint sweep whose URL holds no credential.
PINNED_ENDPOINT = [("98ecac1f041faa07", "2a4f04675ab1878e"), ("73c7548e75cf2e6c", "2a4f04675ab1878e")]

NO_ARGS = BASE.replace("engine_args:\n  enforce_eager: true\n  max_num_seqs: [8, 32]\n", "")


def endpoint_sweep(url: str) -> str:
    return NO_ARGS + f"api: endpoint\nendpoint: {{base_url: '{url}', model: served}}\n"


def ids(sweep_file, text, name):
    return [(t.trial_id, t.serving.serving_config_id) for t in expand(load(sweep_file(text, name)))]


def test_ids_without_credentials_are_unchanged(sweep_file):
    assert ids(sweep_file, BASE, "a.yaml") == PINNED_BASE
    assert ids(sweep_file, endpoint_sweep("http://10.0.0.5:8000/v1?model=x"), "b.yaml") == PINNED_ENDPOINT


@pytest.mark.parametrize("url", [
    "http://user:secret@10.0.0.5:8000/v1?model=x",           # userinfo
    "http://user:n3w-pa55@10.0.0.5:8000/v1?model=x",         # the password changed
    "http://sk-abcdef@10.0.0.5:8000/v1?model=x",             # a lone token as userinfo
    "http://10.0.0.5:8000/v1?token=abc123&model=x",          # a token in the query string
    "http://10.0.0.5:8000/v1?model=x&api_key=k-1&X-Amz-Signature=ff00",
])
def test_a_credential_never_changes_the_id(sweep_file, url):
    assert ids(sweep_file, endpoint_sweep(url), "c.yaml") == PINNED_ENDPOINT


def test_host_path_and_ordinary_query_still_count(sweep_file):
    other = {ids(sweep_file, endpoint_sweep(u), f"{i}.yaml")[0][0]
             for i, u in enumerate(["http://10.0.0.6:8000/v1?model=x", "http://10.0.0.5:8000/v2?model=x",
                                    "http://10.0.0.5:8000/v1?model=y"])}
    assert len(other) == 3 and PINNED_ENDPOINT[0][0] not in other


def test_params_and_plan_json_never_hold_the_credential(sweep_file):
    from runner import preflight

    trials = expand(load(sweep_file(endpoint_sweep("http://bob:hunter2pw@h:8000/v1?token=tok9876&m=1"))))
    p = trials[0].params()
    assert p["endpoint.base_url"] == "http://bob:***@h:8000/v1?token=***&m=1"
    blob = json.dumps(preflight.plan_rows(trials)) + json.dumps(trials[0].serving.identity())
    assert "hunter2pw" not in blob and "tok9876" not in blob
    assert trials[0].serving.endpoint["base_url"].startswith("http://bob:hunter2pw@")  # still there to connect
