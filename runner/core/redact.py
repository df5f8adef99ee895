"""Secrets never reach MLflow, the spool or a printed line.

Three rules, applied to everything the runner writes (``Store._log`` for params and tags,
``spool.write_json`` / ``spool.write_text`` for artifacts, and messages that show a URI):

1. **By name.** A value whose key looks secret is replaced by ``***``. Secret names:
   ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, anything ending in ``TOKEN``, ``KEY`` or
   ``SECRET`` (after ``-``/``.`` become ``_``, case-insensitive, the last dotted part of a
   param name), and anything containing ``PASSWORD``, ``PASSWD`` or ``CREDENTIAL``.
   ``engine_args.hf_token`` and ``MLFLOW_TRACKING_PASSWORD`` are secret; ``max_tokens`` is not
   (plural), nor is ``kv_cache_dtype``.
2. **In URLs.** The userinfo of any ``scheme://user:pass@host`` becomes ``user:***@``; a lone
   ``scheme://token@host`` becomes ``***@``; the value of a secret-looking query parameter
   (``?token=…``, ``&api_key=…``, ``X-Amz-Signature=…``: a secret name by rule 1, or one ending in
   ``SIG``, ``SIGNATURE``, ``AUTH``, ``AUTHORIZATION``, ``PASS``, ``PWD``) becomes ``***``.
   ``public_url`` goes further for identities: it drops the userinfo and those parameters.
3. **By value.** The value of every secret-named environment variable present now (at least 4
   characters), and every value registered with ``remember`` (secret-named engine arguments),
   is replaced wherever it appears in text, e.g. in an engine's log tail that echoed it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
_NAME = re.compile(r"(^|_)(TOKEN|KEY|SECRET|APIKEY)$|PASSWORD|PASSWD|CREDENTIAL")
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s\"']*)(?::(?P<pw>[^/@\s\"']*))?@")
_QUERY_NAME = re.compile(r"(^|_)(SIG|SIGNATURE|AUTH|AUTHORIZATION|PASS|PWD)$")
_QUERY = re.compile(r"(?P<lead>[?&;])(?P<name>[A-Za-z0-9_.~%-]+)=(?P<val>[^&#;\s\"']*)")
_remembered: set[str] = set()


def secret_name(name: str) -> bool:
    """True when a key, env var or param name looks like it holds a secret (rule 1)."""
    last = str(name).rsplit(".", 1)[-1].upper().replace("-", "_")
    return bool(_NAME.search(last))


def remember(values: Iterable[Any]) -> None:
    """Register secret values (rule 3) for the life of this process."""
    _remembered.update(str(v) for v in values if v is not None and len(str(v)) >= 4)


def remember_args(obj: Any, secret: bool = False) -> None:
    """Register the values under secret-named keys anywhere in a nested mapping/list (a sweep
    file's YAML: ``engine_args: {hf_token: x}`` or an axis ``engine_args.api_key: [x, y]``)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            remember_args(v, secret or secret_name(str(k)))
    elif isinstance(obj, list | tuple):
        for v in obj:
            remember_args(v, secret)
    elif secret and obj is not None:
        remember([obj])


def _values() -> list[str]:
    env = {v for k, v in os.environ.items() if secret_name(k) and len(v) >= 4}
    return sorted(env | _remembered, key=len, reverse=True)  # longest first: no partial leftovers


def secret_query_name(name: str) -> bool:
    """True when a URL query parameter's name looks like it carries a credential (rule 2)."""
    from urllib.parse import unquote

    n = unquote(name)
    return secret_name(n) or bool(_QUERY_NAME.search(n.upper().replace("-", "_")))


def url(text: str) -> str:
    """Rule 2 only: userinfo in URLs and secret-looking query values masked."""
    def sub(m: re.Match) -> str:
        if m.group("pw") is not None:
            return f"{m.group('scheme')}{m.group('user')}:{MASK}@"
        return f"{m.group('scheme')}{MASK}@"

    def query(m: re.Match) -> str:
        if m.group("val") and m.group("val") != MASK and secret_query_name(m.group("name")):
            return f"{m.group('lead')}{m.group('name')}={MASK}"
        return m.group(0)
    return _QUERY.sub(query, _USERINFO.sub(sub, text))


def public_url(u: str) -> str:
    """``u`` without its credentials: the userinfo (``user:pass@``, ``token@``) and every
    secret-looking query parameter (``secret_query_name``) removed, everything else byte for
    byte as written; a URL holding no credential is returned unchanged. This is what an
    identity hashes, so changing a password or token never changes a trial id."""
    from urllib.parse import urlsplit

    parts = urlsplit(u)
    if not parts.scheme or not parts.netloc:
        return u
    netloc = parts.netloc.rsplit("@", 1)[-1]
    kept = [p for p in parts.query.split("&") if p and not secret_query_name(p.split("=", 1)[0])]
    query = "&".join(kept)
    if netloc == parts.netloc and query == parts.query:
        return u
    out = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    return out + (f"#{parts.fragment}" if parts.fragment else "")


def text(s: str) -> str:
    """Rules 2 and 3 on free text."""
    s = url(s)
    for v in _values():
        if v in s:
            s = s.replace(v, MASK)
    return s


def value(name: str, v: Any) -> Any:
    """One named value: masked when the name is secret, else its strings cleaned (all rules)."""
    if secret_name(name) and v is not None and v != "":
        return MASK
    return clean(v)


def clean(obj: Any) -> Any:
    """A JSON-like structure with every rule applied; non-string leaves pass unchanged."""
    if isinstance(obj, str):
        return text(obj)
    if isinstance(obj, dict):
        return {k: value(str(k), v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


class Stream:
    """A text stream that applies rules 2 and 3 to every write: the driver's stdout and stderr
    are wrapped in it (``runner.cli``), so no print path, ours or a library's, can leak."""

    def __init__(self, inner: Any):
        self._inner = inner

    def write(self, s: str) -> int:
        self._inner.write(text(s))
        return len(s)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self._inner, name)
