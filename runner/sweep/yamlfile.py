"""Reading a sweep file's YAML so that what the file says is what the runner gets.

Plain ``yaml.safe_load`` silently changes an experiment in several ways; ``read`` refuses each
with a ``SweepSpecError`` naming the file, the key path and the line:

- a key written twice in one mapping (YAML keeps the last one): both lines are named;
- aliases that expand beyond ``MAX_VALUES`` values (a "billion laughs" file);
- YAML 1.1 typing a value as something else: timestamps (``2024-01-01``), sets, binary, ordered
  maps and pairs are refused; sexagesimal (``1:30`` = 90) and leading-zero octal (``017`` = 15)
  numbers are not resolved (they stay text, which the schema then rejects where it wants a
  number);
- a mapping key that is not an identifier (``max-num-seqs``, ``"input len"``), at any depth,
  named itself, not its parent. Exempt: ``prices`` (hardware names such as ``RTX-PRO-6000``),
  ``cluster.node_types`` (the cluster launcher's names), and ``exclude`` rules, whose keys are
  dotted identifiers (``engine_args.max_num_seqs``).

Invariants: nothing is executed (safe constructors only); merge keys (``<<``) still work and
are not duplicates of the keys that override them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runner.core import SweepSpecError

#: The most values a file may expand to once aliases are followed.
MAX_VALUES = 100_000
#: YAML types refused: each silently turns what the user typed into another kind of value.
REFUSED_TAGS = {"tag:yaml.org,2002:timestamp": "a date/time", "tag:yaml.org,2002:set": "a set",
                "tag:yaml.org,2002:binary": "binary data", "tag:yaml.org,2002:omap": "an ordered map",
                "tag:yaml.org,2002:pairs": "a list of pairs"}
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-like number resolution and no implicit timestamps."""


# implicit resolvers: SafeLoader's, minus timestamp, with int/float without sexagesimal/octal forms
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int",
                                                   "tag:yaml.org,2002:float")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(
    r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?0o[0-7_]+|[-+]?0b[01_]+)$"), list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def _int(loader: _Loader, node: ScalarNode) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    base = {"0x": 16, "0o": 8, "0b": 2}.get(text[:2].lower(), 10)
    return sign * int(text[2:] if base != 10 else text, base)


_Loader.add_constructor("tag:yaml.org,2002:int", _int)


def read(path: str | Path) -> Any:
    """The file's single YAML document as plain Python data; ``SweepSpecError`` for any problem."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SweepSpecError(file, "", file, "an existing sweep file", "list them with `ls sweeps/`") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepSpecError(file, "", file, f"a readable UTF-8 file ({e})") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(file, node, (), {})
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise SweepSpecError(file, where, getattr(e, "problem", None) or str(e), "valid YAML") from None
    except RecursionError:
        raise SweepSpecError(file, "", "a recursive alias", "aliases that do not contain themselves") from None
    finally:
        loader.dispose()


def _key(path: tuple) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")


def _check(file: str, node: Node, path: tuple, sizes: dict[int, int]) -> int:
    """Walk the composed graph (an alias is the same node object again); return its expanded size."""
    if id(node) in sizes:
        size = sizes[id(node)]
    else:
        size = _walk(file, node, path, sizes)
        sizes[id(node)] = size
    if size > MAX_VALUES:
        raise SweepSpecError(file, _key(path), f"{size:,} values once aliases are expanded",
                             f"at most {MAX_VALUES:,} values (aliases that multiply are refused)")
    return size


def _walk(file: str, node: Node, path: tuple, sizes: dict[int, int]) -> int:
    line = node.start_mark.line + 1
    if node.tag in REFUSED_TAGS:
        raise SweepSpecError(file, f"{_key(path) or '<top level>'} (line {line})", node.value
                             if isinstance(node, ScalarNode) else node.tag,
                             f"plain text, numbers, lists and mappings; YAML reads this as {REFUSED_TAGS[node.tag]} "
                             "(quote it if you meant text)")
    if isinstance(node, SequenceNode):
        return 1 + sum(_check(file, child, (*path, i), sizes) for i, child in enumerate(node.value))
    if not isinstance(node, MappingNode):
        return 1
    seen: dict[Any, int] = {}
    size = 1
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            size += _check(file, value_node, path, sizes)
            continue
        key = key_node.value if isinstance(key_node, ScalarNode) else f"<{key_node.tag.rsplit(':', 1)[-1]}>"
        at = (*path, key)
        if key in seen:
            raise SweepSpecError(file, _key(at), key, f"each key once per mapping (line {seen[key]} and line "
                                                      f"{key_node.start_mark.line + 1} both set it)")
        seen[key] = key_node.start_mark.line + 1
        if not _key_ok(path, key_node):
            raise SweepSpecError(file, f"{_key(at)} (line {key_node.start_mark.line + 1})", key,
                                 "a key made of letters, digits and underscores, not starting with a digit "
                                 "(e.g. max_num_seqs, not max-num-seqs)")
        size += _check(file, value_node, at, sizes)
    return size


def _key_ok(path: tuple, key_node: Node) -> bool:
    if not isinstance(key_node, ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
        return False
    key = key_node.value
    if path in (("prices",), ("cluster", "node_types")):
        return bool(key) and not key.isspace()
    if len(path) == 2 and path[0] == "exclude":
        return bool(_DOTTED.match(key))
    return key.isidentifier()
