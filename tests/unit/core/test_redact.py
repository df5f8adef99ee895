"""Secret redaction rules (runner.redact): by name, in URLs, by value; and the spool applies them."""

import json

import pytest

from runner.core import redact
from runner.results import spool


@pytest.mark.parametrize("name", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "hf_token", "engine_args.hf_token",
                                  "api_key", "engine_args.api-key", "AWS_SECRET_ACCESS_KEY", "MY_SECRET",
                                  "MLFLOW_TRACKING_PASSWORD", "db_passwd", "token", "GOOGLE_CREDENTIALS"])
def test_secret_names(name):
    assert redact.secret_name(name)


@pytest.mark.parametrize("name", ["max_tokens", "engine_args.max_num_batched_tokens", "kv_cache_dtype",
                                  "input_len", "runner.trial_id", "skip_tokenizer_init", "monkey", "keys",
                                  "MLFLOW_TRACKING_USERNAME", "dataset_hash"])
def test_ordinary_names(name):
    assert not redact.secret_name(name)


@pytest.mark.parametrize("raw, shown", [
    ("https://user:pa55@host/x", "https://user:***@host/x"),
    ("http://ghp_abc123@github.com/o/r", "http://***@github.com/o/r"),
    ("at http://u:p@127.0.0.1:5000 could not", "at http://u:***@127.0.0.1:5000 could not"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("mail me: a@b.c", "mail me: a@b.c"),
])
def test_urls(raw, shown):
    assert redact.url(raw) == shown


def test_values_from_env_and_remembered_are_scrubbed(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-aaaa-1111")
    monkeypatch.setenv("HOME_DIR_PLAIN", "tok-bbbb-2222")
    redact.remember_args({"models": [{"engine_args": {"hf_token": "hf_rememberedXYZ"}}],
                          "engine_args.api_key": ["k-one-1", "k-two-2"], "engine_args": {"max_tokens": 77777}})
    s = redact.text("args: hf_rememberedXYZ tok-aaaa-1111 k-one-1 k-two-2 tok-bbbb-2222 77777")
    assert s == "args: *** *** *** *** tok-bbbb-2222 77777"


def test_clean_masks_by_key_recursively():
    obj = {"engine_args": {"hf_token": "x" * 10, "max_num_seqs": 4}, "list": [{"api_key": "k"}, "https://a:b@h"],
           "n": 1.5, "empty_token": ""}
    assert redact.clean(obj) == {"engine_args": {"hf_token": "***", "max_num_seqs": 4},
                                 "list": [{"api_key": "***"}, "https://a:***@h"], "n": 1.5, "empty_token": ""}


def test_spool_writes_are_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_envSecret123")
    spool.write_json(tmp_path / "a.json", {"note": "used hf_envSecret123", "HF_TOKEN": "hf_envSecret123"})
    spool.write_text(tmp_path / "b.txt", "log: token=hf_envSecret123 url=https://u:pw@x")
    blob = (tmp_path / "a.json").read_text() + (tmp_path / "b.txt").read_text()
    assert "hf_envSecret123" not in blob and ":pw@" not in blob
    assert json.loads((tmp_path / "a.json").read_text()) == {"note": "used ***", "HF_TOKEN": "***"}


def test_stream_redacts_every_write_and_delegates_the_rest(monkeypatch):
    import io

    monkeypatch.setenv("SOME_API_KEY", "key-zzzz-9999")
    inner = io.StringIO()
    s = redact.Stream(inner)
    print("using key-zzzz-9999 at https://u:pw@h", file=s)
    assert inner.getvalue() == "using *** at https://u:***@h\n"
    assert s.isatty() is False and s.getvalue() == inner.getvalue()
