"""`$ref` resolution: JSON pointers, the per-document reference table, and the reference graph
(which schemas lie on a cycle, so that only those are unrolled to `max_depth`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from .errors import GrammarError

# Keywords whose value is a schema, a list of schemas, or a map of name -> schema.
SUBSCHEMA = ("items", "additionalProperties", "not", "contains", "if", "then", "else",
             "propertyNames", "additionalItems", "unevaluatedItems", "unevaluatedProperties")
SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
SUBSCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas")


def escape_token(token: str) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(*tokens: Any) -> str:
    return "".join("/" + escape_token(t) for t in tokens)


def resolve_pointer(root: Any, ref: str) -> Any:
    """The value `ref` ("#/a/b~1c/0") names inside `root`; raises KeyError when it names nothing."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise KeyError(ref)
    path = unquote(ref[1:])
    node = root
    if not path:
        return node
    if not path.startswith("/"):
        raise KeyError(ref)
    for token in path[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise KeyError(ref)
    return node


class RefTable(Mapping):
    """Resolves the local `$ref`s of one document on demand. All FunctionSpecs imported from the
    document share it (and the caches keyed on it), so a big document is walked once."""

    def __init__(self, root: Any, source: str = ""):
        self.root, self.source = root, source
        self._resolved: dict[str, Any] = {}
        self.graph: RefGraph | None = None  # built lazily by graph_of()
        self.checked: set[str] = set()  # refs whose whole closure resolves

    def __getitem__(self, ref: str) -> Any:
        try:
            return self._resolved[ref]
        except (KeyError, TypeError):
            pass
        value = resolve_pointer(self.root, ref)
        self._resolved[ref] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._resolved))

    def __len__(self) -> int:
        return len(self._resolved)

    def __contains__(self, ref: object) -> bool:
        try:
            self[ref]  # type: ignore[index]
        except (KeyError, TypeError):
            return False
        return True

    def location(self, ref: str) -> str:
        return f"{self.source}{ref}"

    # identity semantics: the table is a cache key
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


def iter_subschemas(schema: Any, path: str = "") -> Iterator[tuple[Any, str]]:
    """(subschema, pointer suffix) for each schema directly nested in `schema`."""
    if not isinstance(schema, Mapping):
        return
    for key in SUBSCHEMA:
        value = schema.get(key)
        if isinstance(value, (Mapping, bool)):
            yield value, f"{path}/{key}"
    for key in SUBSCHEMA_LISTS:
        value = schema.get(key)
        if isinstance(value, list):
            for i, sub in enumerate(value):
                yield sub, f"{path}/{key}/{i}"
    for key in SUBSCHEMA_MAPS:
        value = schema.get(key)
        if isinstance(value, Mapping):
            for name, sub in value.items():
                yield sub, f"{path}/{key}/{escape_token(name)}"


def direct_refs(schema: Any) -> list[tuple[str, str]]:
    """(ref, pointer suffix of the schema holding it) for every `$ref` in `schema`, without
    following references."""
    out, stack = [], [(schema, "")]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, Mapping):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.append((ref, path))
        stack.extend(iter_subschemas(node, path))
    return out


class RefGraph:
    """The reference graph of one `defs` mapping: direct dependencies and cycle membership."""

    def __init__(self, defs: Mapping[str, Any]):
        self.defs = defs
        self._deps: dict[str, tuple[str, ...]] = {}
        self.cyclic: dict[str, bool] = {}
        self._index: dict[str, int] = {}

    def deps(self, ref: str) -> tuple[str, ...]:
        if ref not in self._deps:
            try:
                target = self.defs[ref]
            except (KeyError, TypeError):
                target = None
            self._deps[ref] = tuple(dict.fromkeys(r for r, _ in direct_refs(target)))
        return self._deps[ref]

    def on_cycle(self, ref: str) -> bool:
        """True when `ref` can reach itself (its schema is recursive)."""
        if ref not in self.cyclic:
            self._tarjan(ref)
        return self.cyclic[ref]

    def _tarjan(self, root: str) -> None:
        index, low, stack, on_stack = self._index, {}, [], set()
        counter = len(index)

        def visit(v: str) -> None:
            nonlocal counter
            index[v] = low[v] = counter
            counter += 1
            stack.append(v)
            on_stack.add(v)

        visit(root)
        work = [(root, iter(self.deps(root)))]
        while work:
            v, edges = work[-1]
            descended = False
            for w in edges:
                if w in self.cyclic or w not in self.defs:
                    continue
                if w not in index:
                    visit(w)
                    work.append((w, iter(self.deps(w))))
                    descended = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if descended:
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                cyclic = len(component) > 1 or v in self.deps(v)
                for w in component:
                    self.cyclic[w] = cyclic


def graph_of(defs: Mapping[str, Any]) -> RefGraph:
    """The (cached, for a RefTable) reference graph of `defs`."""
    if isinstance(defs, RefTable):
        if defs.graph is None:
            defs.graph = RefGraph(defs)
        return defs.graph
    return RefGraph(defs)


def _where(defs: Mapping[str, Any], ref: str) -> str:
    return defs.location(ref) if isinstance(defs, RefTable) else ref


def check_refs(schema: Any, defs: Mapping[str, Any], location: str) -> None:
    """Raise GrammarError at the first `$ref` reachable from `schema` that names nothing."""
    checked = defs.checked if isinstance(defs, RefTable) else set()
    pending: list[tuple[str, str]] = [(ref, location + path) for ref, path in direct_refs(schema)]
    seen: set[str] = set()
    while pending:
        ref, where = pending.pop()
        if ref in checked or ref in seen:
            continue
        seen.add(ref)
        if not ref.startswith("#"):
            raise GrammarError(f"external $ref {ref!r} is not supported (bundle the document into one file first)",
                               where, "$ref")
        try:
            target = defs[ref]
        except (KeyError, TypeError):
            raise GrammarError(f"$ref {ref!r} does not resolve to anything in the document", where, "$ref") from None
        if not isinstance(target, (Mapping, bool)):
            raise GrammarError(f"$ref {ref!r} names a {type(target).__name__}, not a schema", where, "$ref")
        pending += [(r, _where(defs, ref) + path) for r, path in direct_refs(target)]
    checked |= seen


def export_schema(schema: Any, defs: Mapping[str, Any], out: dict[str, Any],
                  names: dict[str, str]) -> Any:
    """`schema` with every `$ref` rewritten to ``#/$defs/<name>``; the named schemas are added
    (rewritten too) to `out`, `names` maps each original ref to its name there. Names come
    from the last pointer token, made unique."""

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        if not isinstance(node, Mapping):
            return node
        result = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                result[key] = "#/$defs/" + name_of(value)
            elif key in ("enum", "const", "default", "example", "examples"):
                result[key] = value
            else:
                result[key] = rewrite(value)
        return result

    def name_of(ref: str) -> str:
        if ref not in names:
            base = ref.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~") or "schema"
            name, n = base, 1
            while name in out:
                n += 1
                name = f"{base}_{n}"
            names[ref] = name
            out[name] = None
            out[name] = rewrite(defs[ref])
        return names[ref]

    return rewrite(schema)
