"""Where a sweep file may point: model and dataset paths, checked when the file loads.

Model ``path``: a local directory or a hub id, decided as the engines decide it.
- It names a local directory when it exists there (relative to the working directory, after
  ``~`` expansion), or when it starts with ``/``, ``./``, ``../`` or ``~``. A local model must
  be a directory holding ``config.json``; a path-looking value that does not exist is an error
  (local paths must exist where the driver runs: on a cluster, shared storage or the same
  path on every node). Engines get it resolved to an absolute path (``resolve_model``).
- Anything else must look like a hub id, ``org/name`` or ``name``: letters, digits, ``._-``,
  at most one ``/``, no ``..``; and a missing value that the working directory's ``.gitignore``
  or ``.rayignore`` names (``models/tiny-llama`` in a job whose upload left ``models/`` behind) is
  a local path that did not arrive, an error, never a hub lookup.
Dataset ``path`` (``kind: file``): an existing regular file, relative to the working
directory (what ``ray job submit --working-dir`` ships to every node) or absolute.
No value may hold control characters. Errors are ``SweepSpecError`` naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path

from runner.core import SweepSpecError

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _looks_local(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..")


def check_model(file: str, key: str, value: str) -> None:
    if _CONTROL.search(value):
        raise SweepSpecError(file, key, value, "a path or hub id without control characters")
    p = Path(value).expanduser()
    if p.exists() or _looks_local(value):
        if not p.is_dir():
            raise SweepSpecError(file, key, value, "an existing model directory (local paths must exist where the "
                                 "driver runs), or a hub id such as org/name",
                                 "build the demo model with `make model`, or check the path")
        if not (p / "config.json").is_file():
            raise SweepSpecError(file, key, value, "a model directory holding config.json")
        return
    if not HUB_ID.match(value) or ".." in value.split("/"):
        raise SweepSpecError(file, key, value, "a hub id such as org/name (letters, digits, ._-) or a local "
                             "path starting with /, ./ or ~")
    ignored = upload_excluded(value)
    if ignored:  # `models/tiny-llama` missing: a local path that never reached here, not a hub id
        raise SweepSpecError(file, key, value, "an existing model directory: this is a local path (the working "
                             f"directory's {ignored} names it), missing here, never a hub id",
                             f"`ray job submit --working-dir` leaves what {ignored} names behind: submit with "
                             "RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1 (the checkout's .rayignore ships the demo model "
                             "and keeps local state out), build it first with `make model`, or write the absolute "
                             "path of a copy every node can read")


def upload_excluded(value: str, root: Path | None = None) -> str | None:
    """The ignore file of the working directory (``root``) that keeps ``value`` out of a
    ``ray job submit --working-dir`` upload (``.gitignore`` or ``.rayignore``), matched with Ray's
    own matcher (``runtime_env/packaging.py`` ``_get_ignore_file``); ``None`` when none does."""
    root = (root or Path.cwd()).absolute()
    try:
        from ray._private.runtime_env.packaging import _get_ignore_file
    except ImportError:  # no Ray here: nothing was uploaded by it either
        return None
    for name in (".gitignore", ".rayignore"):
        match = _get_ignore_file(root, name)
        if match is not None and match(root / value):
            return name
    return None


def resolve_model(value: str) -> str:
    """The value an engine gets: an absolute path for a local model, the hub id unchanged."""
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() or _looks_local(value) else value


def check_dataset(file: str, key: str, value: str) -> None:
    if _CONTROL.search(value):
        raise SweepSpecError(file, key, value, "a file path without control characters")
    p = Path(value).expanduser()
    if not p.is_file():
        near = Path(file).parent / value
        hint = (f"it exists next to the sweep file: run from {Path(file).parent or '.'} or write {near}"
                if near.is_file() else "check the path (relative paths start at the working directory)")
        raise SweepSpecError(file, key, value, "an existing JSONL or ShareGPT file", hint)


#: config.json keys vLLM reads a model's own context length from, smallest wins
#: (``transformers_utils/model_arch_config_convertor.py`` ``derive_max_model_len_and_key``, 0.32/0.33).
MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")
#: RoPE types whose ``factor`` vLLM does not apply again (``config/model.py`` ``_get_and_verify_max_len``).
_ROPE_PRESCALED = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")


def model_config(value: str, *, hub: bool = True) -> tuple[dict | None, str]:
    """(the ``config.json`` dict, where from) of a local model directory or, with ``hub``, a hub
    id (``huggingface_hub.hf_hub_download`` of that one file, cached under ``HF_HOME``; with
    ``HF_HUB_OFFLINE=1`` the cache only; never the weights). ``(None, why)`` when unreadable."""
    import json

    p = Path(value).expanduser()
    if p.is_dir():
        where = p / "config.json"
    elif not hub or p.is_absolute() or value.count("/") != 1:
        return None, f"{value} is not a model directory or a hub id"
    else:
        try:
            where = _hub_config(value)
        except Exception as e:  # offline, gated, no such repo: the planner says it cannot tell
            why = str(e) if isinstance(e, LookupError) and str(e) else type(e).__name__
            return None, f"config.json of {value} not fetched from the hub ({why})"
    try:
        cfg = json.loads(where.read_text())
    except (OSError, ValueError) as e:
        return None, f"{where} unreadable ({type(e).__name__})"
    return (cfg, str(where)) if isinstance(cfg, dict) else (None, f"{where} is not a JSON object")


_HUB_DOWN: list[str] = []  # why the hub was found unreachable, once per process


def _hub_config(repo: str) -> Path:
    """The hub's ``config.json`` of ``repo``: the local hub cache first (no request), then one
    ``hf_hub_download``. Before the first download one TCP connection to the hub (3 s) says
    whether it is reachable at all: ``huggingface_hub`` retries an unreachable hub for ~24 s a
    file, and a plan of a sweep offline must not wait that long per model."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "config.json")
    if isinstance(cached, str):
        return Path(cached)
    if constants.HF_HUB_OFFLINE:
        raise LookupError("not in the hub cache, and HF_HUB_OFFLINE=1")
    proxied = any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"))
    if not _HUB_DOWN and not proxied:  # behind a proxy a direct connection says nothing
        url = urlparse(constants.ENDPOINT)
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
            socket.create_connection((url.hostname, port), timeout=3).close()
        except OSError as e:
            _HUB_DOWN.append(f"{url.hostname} unreachable: {e.strerror or type(e).__name__}")
    if _HUB_DOWN:
        raise LookupError(_HUB_DOWN[0])
    return Path(hf_hub_download(repo_id=repo, filename="config.json"))


def model_max_len(value: str, cfg: tuple[dict | None, str] | None = None) -> tuple[int, str] | None:
    """(tokens, where from) a model's ``config.json`` allows as prompt + output, as vLLM derives
    it: the smallest of ``MAX_LEN_KEYS`` (``model_max_length`` wins when set) times a RoPE scaling
    factor; ``None`` for an unreadable config or one without those keys. ``cfg``: a
    ``model_config`` answer already read; else a local directory only (no hub request)."""
    cfg, where = cfg or model_config(value, hub=False)
    if cfg is None:
        return None
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    found = {k: text[k] for k in MAX_LEN_KEYS if isinstance(text.get(k), int) and not isinstance(text[k], bool)}
    if not found:
        return None
    key = "model_max_length" if "model_max_length" in found else min(found, key=found.get)
    factor = 1.0
    for rope in (text.get("rope_scaling"), text.get("rope_parameters")):
        if isinstance(rope, dict) and rope.get("rope_type", rope.get("type")) not in _ROPE_PRESCALED:
            f = rope.get("factor")
            factor = max(factor, float(f)) if isinstance(f, (int, float)) and not isinstance(f, bool) else factor
    scaled = f" x RoPE factor {factor:g}" if factor != 1 else ""
    return int(found[key] * factor), f"{where} {key}{scaled}"
