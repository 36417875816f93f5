"""OpenAPI 3.x and Swagger 2.0 operations -> FunctionSpecs.

One function per operation. Its name is the `operationId` made a Python identifier, or method
and path (`GET /pets/{petId}` -> `get_pets_by_petId`) when there is none; names are made unique
in document order (`x`, `x_2`, ...). Arguments, in this order: path, query, header and cookie
parameters as listed (path-item parameters first, overridden by the operation's), then the
request body. A JSON (or form) body whose schema is an object with properties contributes one
argument per property (`readOnly` ones are left out); any other body is one `body` argument.
`Accept`, `Content-Type` and `Authorization` header parameters are left out, as OpenAPI says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import GrammarError
from .names import NameTable, identifier
from .refs import RefTable, check_refs, escape_token
from .spec import NO_DEFAULT, FunctionSpec, Parameter

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
LOCATIONS = ("path", "query", "header", "cookie")
IGNORED_HEADERS = {"accept", "content-type", "authorization"}
# Swagger 2.0 parameter fields that belong to the parameter's schema
SWAGGER_SCHEMA_KEYS = ("type", "format", "items", "enum", "default", "minimum", "maximum",
                       "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
                       "minItems", "maxItems", "uniqueItems", "multipleOf")


def is_openapi(doc: Any) -> bool:
    return isinstance(doc, Mapping) and ("openapi" in doc or "swagger" in doc)


def _version(doc: Mapping[str, Any], source: str) -> int:
    if "openapi" in doc:
        if not str(doc["openapi"]).startswith("3"):
            raise GrammarError(f"unsupported OpenAPI version {doc['openapi']!r} (3.x is supported)", f"{source}#/openapi")
        return 3
    if str(doc.get("swagger")) != "2.0":
        raise GrammarError(f"unsupported Swagger version {doc.get('swagger')!r} (2.0 is supported)", f"{source}#/swagger")
    return 2


def _path_name(method: str, path: str) -> str:
    parts = [method]
    for segment in path.strip("/").split("/"):
        m = re.fullmatch(r"\{(.+)\}", segment)
        parts.append(f"by_{m.group(1)}" if m else segment)
    return identifier("_".join(p for p in parts if p), fallback=method)


def iter_operations(doc: Mapping[str, Any], source: str = "") -> Iterator[tuple[str, "FunctionSpec | GrammarError"]]:
    """(location, FunctionSpec or the GrammarError that stopped it) for every operation, in
    document order. Document-level problems (no `paths`, bad version) raise GrammarError."""
    if not isinstance(doc, Mapping):
        raise GrammarError("an OpenAPI document must be an object", f"{source}#")
    version = _version(doc, source)
    paths = doc.get("paths")
    if paths is None:
        raise GrammarError("missing 'paths': the document declares no operations", f"{source}#")
    if not isinstance(paths, Mapping):
        raise GrammarError("'paths' must be an object", f"{source}#/paths")
    table = RefTable(doc, source)
    names = NameTable()
    operations = []
    for path, item in paths.items():
        where = f"{source}#/paths/{escape_token(path)}"
        if not isinstance(item, Mapping):
            continue  # vendor extensions (x-...) and junk under paths are not operations
        item_ref = None
        if "$ref" in item:  # a path item may be a reference
            try:
                item_ref, item = item["$ref"], table[item["$ref"]]
            except (KeyError, TypeError):
                operations.append((where, None, None, None, GrammarError(
                    f"$ref {item.get('$ref')!r} does not resolve to anything in the document", where, "$ref")))
                continue
            if not isinstance(item, Mapping):
                continue
        for method, op in item.items():
            if method not in METHODS:
                continue
            op_where = f"{where}/{method}"
            if not isinstance(op, Mapping):
                operations.append((op_where, None, None, None, GrammarError("an operation must be an object", op_where)))
                continue
            op_id = op.get("operationId")
            base = identifier(op_id, fallback=method) if isinstance(op_id, str) and op_id.strip() else _path_name(method, path)
            operations.append((op_where, names.take(base), (path, method, item, op), op_id, None))
    for op_where, name, parts, op_id, error in operations:
        if error is not None:
            yield op_where, error
            continue
        path, method, item, op = parts
        try:
            yield op_where, _operation(name, op_id, path, method, item, op, table, version, op_where,
                                       source, doc)
        except GrammarError as e:
            yield op_where, e
        except RecursionError:
            yield op_where, GrammarError("schemas nest too deeply to import", op_where)


def _resolve(table: RefTable, node: Any, where: str, what: str) -> tuple[Any, str]:
    """Follow a chain of $refs (parameters, request bodies); returns (object, its location)."""
    seen = set()
    while isinstance(node, Mapping) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or ref in seen:
            raise GrammarError(f"{what}: $ref {ref!r} loops or is not a string", where, "$ref")
        seen.add(ref)
        try:
            node = table[ref]
        except (KeyError, TypeError):
            raise GrammarError(f"{what}: $ref {ref!r} does not resolve to anything in the document", where, "$ref") from None
        where = table.location(ref)
    return node, where


def _operation(name: str, op_id: Any, path: str, method: str, item: Mapping, op: Mapping,
               table: RefTable, version: int, where: str, source: str,
               doc: Mapping[str, Any]) -> FunctionSpec:
    merged: dict[tuple[str, str], tuple[Mapping, str]] = {}
    for level, params in (("item", item.get("parameters")), ("op", op.get("parameters"))):
        if params is None:
            continue
        if not isinstance(params, list):
            raise GrammarError("'parameters' must be a list", f"{where}/parameters" if level == "op" else where)
        for i, raw in enumerate(params):
            at = f"{where}/parameters/{i}" if level == "op" else f"{where.rsplit('/', 1)[0]}/parameters/{i}"
            param, at = _resolve(table, raw, at, "parameter")
            if not isinstance(param, Mapping):
                raise GrammarError("a parameter must be an object", at)
            pname, pin = param.get("name"), param.get("in")
            if not isinstance(pname, str) or not pname:
                raise GrammarError("parameter without a 'name'", at)
            if pin not in LOCATIONS + ("body", "formData"):
                raise GrammarError(f"parameter {pname!r} has an invalid 'in': {pin!r}", at, "in")
            merged[(pname, pin)] = (param, at)

    taken = NameTable()
    out: list[Parameter] = []
    body_params = []
    for (pname, pin), (param, at) in merged.items():
        if pin == "header" and pname.lower() in IGNORED_HEADERS:
            continue
        if pin == "body":
            body_params.append((param, at))
            continue
        schema, schema_at = _param_schema(param, pname, version, at)
        check_refs(schema, table, schema_at)
        required = bool(param.get("required")) or pin == "path"
        default = _default(schema, table)
        arg = taken.take(identifier(pname))
        style, explode = _serialization(param, pin, version)
        # compared with the name taken, not the identifier: `id` renamed `id_2` by a collision
        # still has to be sent as `id`
        out.append(Parameter(arg, schema, required, default,
                             _text(param.get("description")), "body" if pin == "formData" else pin,
                             pname if arg != pname else None, schema_at, style, explode))
    body = None
    media_type = None
    if version == 3 and op.get("requestBody") is not None:
        body = _body_v3(op["requestBody"], table, f"{where}/requestBody")
        if body is not None:
            body, media_type = body[:-1], body[-1]
    elif body_params:
        param, at = body_params[0]
        if "schema" not in param:
            raise GrammarError(f"body parameter {param.get('name')!r} has no 'schema'", at, "schema")
        body = (param["schema"], f"{at}/schema", bool(param.get("required")), param.get("name") or "body",
                _text(param.get("description")))
        media_type = _swagger_media(op, doc, form=False)
    elif any(p.location == "body" for p in out):  # Swagger 2.0 formData parameters
        media_type = _swagger_media(op, doc, form=True, files=any(
            param.get("type") == "file" for (_, pin), (param, _) in merged.items() if pin == "formData"))
    body_parameter = None
    if body is not None:
        added = _body_parameters(body, table, taken)
        if len(added) == 1 and added[0].source == body[1]:  # the whole body, not its properties
            body_parameter = added[0].name
        out += added
    description = _text(op.get("summary")) or _text(op.get("description"))
    return FunctionSpec(name=name, description=description, parameters=tuple(out), defs=table,
                        api_name=op_id if isinstance(op_id, str) and op_id != name else None,
                        endpoint=f"{method.upper()} {path}", source=where,
                        server=_server(doc, item, op, version), media_type=media_type,
                        body_parameter=body_parameter)


# Swagger 2.0 collectionFormat -> OpenAPI 3 (style, explode); "csv" is its default
_COLLECTION_FORMATS = {"csv": (None, False), "multi": ("form", True), "ssv": ("spaceDelimited", False),
                       "pipes": ("pipeDelimited", False), "tsv": ("tabDelimited", False)}


def _serialization(param: Mapping, pin: str, version: int) -> tuple[str | None, bool | None]:
    """(style, explode) as the document states them; None where it says nothing."""
    if version == 3:
        style, explode = param.get("style"), param.get("explode")
        return (style if isinstance(style, str) else None,
                explode if isinstance(explode, bool) else None)
    fmt = param.get("collectionFormat", "csv")
    return _COLLECTION_FORMATS.get(fmt, (None, False)) if pin != "formData" else (None, None)


def _swagger_media(op: Mapping, doc: Mapping, *, form: bool, files: bool = False) -> str:
    consumes = op.get("consumes", doc.get("consumes"))
    listed = [c for c in consumes if isinstance(c, str)] if isinstance(consumes, list) else []
    if form:
        wanted = ("multipart/form-data",) if files else ("application/x-www-form-urlencoded", "multipart/form-data")
        default = "multipart/form-data" if files else "application/x-www-form-urlencoded"
    else:
        wanted, default = ("application/json",), "application/json"
    for w in wanted:
        for c in listed:
            if c.split(";")[0].strip().lower() == w:
                return c
    if not form:
        for c in listed:
            if "json" in c.lower():
                return c
    return default


def _server(doc: Mapping, item: Mapping, op: Mapping, version: int) -> str | None:
    """The operation's base URL: the first server (operation, path item, then document), its
    variables at their defaults; Swagger 2.0: scheme, host and basePath. May be relative."""
    if version == 2:
        base = doc.get("basePath") if isinstance(doc.get("basePath"), str) else ""
        host = doc.get("host")
        if not isinstance(host, str) or not host:
            return base or None
        schemes = op.get("schemes", doc.get("schemes"))
        schemes = [x for x in schemes if isinstance(x, str)] if isinstance(schemes, list) else []
        scheme = "https" if "https" in schemes or not schemes else schemes[0]
        return f"{scheme}://{host}{base}"
    for level in (op, item, doc):
        servers = level.get("servers")
        if isinstance(servers, list) and servers and isinstance(servers[0], Mapping):
            url = servers[0].get("url")
            if not isinstance(url, str):
                return None
            variables = servers[0].get("variables")
            for key, var in (variables.items() if isinstance(variables, Mapping) else ()):
                if isinstance(var, Mapping) and "default" in var:
                    url = url.replace("{" + str(key) + "}", str(var["default"]))
            return url
    return None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _default(schema: Any, table: RefTable) -> Any:
    if isinstance(schema, Mapping) and "default" in schema:
        return schema["default"]
    return NO_DEFAULT


def _param_schema(param: Mapping, pname: str, version: int, at: str) -> tuple[Any, str]:
    if "schema" in param:
        schema = param["schema"]
        if not isinstance(schema, (Mapping, bool)):
            raise GrammarError(f"parameter {pname!r}: 'schema' must be an object", f"{at}/schema", "schema")
        return schema, f"{at}/schema"
    if "content" in param and version == 3:
        content = param["content"]
        if isinstance(content, Mapping) and content:
            media, entry = next(iter(content.items()))
            if isinstance(entry, Mapping) and "schema" in entry:
                return entry["schema"], f"{at}/content/{escape_token(media)}/schema"
        raise GrammarError(f"parameter {pname!r}: 'content' holds no schema", f"{at}/content", "content")
    if version == 2 and "type" in param:
        schema = {k: param[k] for k in SWAGGER_SCHEMA_KEYS if k in param}
        if schema.get("type") == "file":
            schema = {"type": "string", "format": "binary"}
        return schema, at
    raise GrammarError(f"parameter {pname!r} has no schema (neither 'schema' nor 'content'"
                       + (" nor 'type'" if version == 2 else "") + ")", at, "schema")


_MEDIA_PREFERENCE = ("application/json", "json", "application/x-www-form-urlencoded", "multipart/form-data")


def _pick_media(content: Mapping) -> str:
    keys = [k for k in content if isinstance(k, str)]
    for wanted in _MEDIA_PREFERENCE:
        for k in keys:
            if k.split(";")[0].strip().lower() == wanted or (wanted == "json" and "json" in k.lower()):
                return k
    return keys[0]


def _body_v3(raw: Any, table: RefTable, where: str):
    body, where = _resolve(table, raw, where, "requestBody")
    if not isinstance(body, Mapping):
        raise GrammarError("a requestBody must be an object", where)
    content = body.get("content")
    if not isinstance(content, Mapping) or not content:
        return None  # nothing to send
    media = _pick_media(content)
    entry = content[media]
    schema_at = f"{where}/content/{escape_token(media)}/schema"
    if isinstance(entry, Mapping) and "schema" in entry:
        schema = entry["schema"]
    else:  # e.g. application/octet-stream without a schema: raw content
        schema = {"type": "string", "format": "binary"}
    return schema, schema_at, bool(body.get("required")), "body", _text(body.get("description")), media


def _object_properties(schema: Any, table: RefTable, where: str):
    """(properties, required, location) when the body schema is a plain object with properties
    (following $refs and flattening allOf of such objects); None otherwise."""
    parts, pending = [], [(schema, where)]
    while pending:
        node, at = pending.pop(0)
        node, at = _resolve(table, node, at, "request body schema")
        if not isinstance(node, Mapping) or "anyOf" in node or "oneOf" in node or "not" in node:
            return None
        if node.get("type") not in (None, "object") or node.get("nullable") is True:
            return None
        if "allOf" in node:
            if not isinstance(node["allOf"], list):
                return None
            pending += [(m, f"{at}/allOf/{i}") for i, m in enumerate(node["allOf"])]
        parts.append((node, at))
    props: dict[str, tuple[Any, str]] = {}
    required: list[str] = []
    for node, at in parts:
        p = node.get("properties")
        if p is not None and not isinstance(p, Mapping):
            return None
        for key, sub in (p or {}).items():
            props[key] = (sub, f"{at}/properties/{escape_token(key)}")
        if isinstance(node.get("required"), list):
            required += [r for r in node["required"] if isinstance(r, str)]
    if not props:
        return None
    return props, required


def _body_parameters(body, table: RefTable, taken: NameTable) -> list[Parameter]:
    schema, schema_at, body_required, body_name, description = body
    check_refs(schema, table, schema_at)
    flat = _object_properties(schema, table, schema_at)
    if flat is None:
        name = taken.take(identifier(body_name))
        return [Parameter(name, schema, body_required, _default(schema, table), description, "body",
                          body_name if name != body_name else None, schema_at)]
    props, required = flat
    out = []
    for key, (sub, at) in props.items():
        resolved, _ = _resolve(table, sub, at, "property")
        if isinstance(resolved, Mapping) and resolved.get("readOnly") is True:
            continue  # the server sets it; requests do not send it
        name = taken.take(identifier(key))
        out.append(Parameter(name, sub, key in required, _default(resolved, table),
                             _text(resolved.get("description") if isinstance(resolved, Mapping) else None),
                             "body", key if name != key else None, at))
    return out


def from_openapi(doc: Mapping[str, Any], source: str = "", *, strict: bool = False,
                 on_error=None) -> list[FunctionSpec]:
    """All operations of the document. An operation that cannot be imported raises in strict
    mode; otherwise it is passed to `on_error(location, error)` (default: a GrammarWarning)."""
    import warnings

    from .errors import GrammarWarning
    specs = []
    for where, result in iter_operations(doc, source):
        if isinstance(result, GrammarError):
            if strict:
                raise result
            if on_error is not None:
                on_error(where, result)
            else:
                warnings.warn(GrammarWarning(f"operation skipped: {result.message}", result.location or where),
                              stacklevel=3)
            continue
        specs.append(result)
    return specs
