"""The HTTP request an OpenAPI call stands for.

Each argument goes where its `Parameter.location` says, under its API name: path parameters
into the path template (percent-escaped), query parameters into the query string, header and
cookie parameters into headers, body arguments into a JSON, form or multipart body (the
`FunctionSpec.media_type`). Values are written as OpenAPI serializes them: `style` and
`explode` as the document gives them, else the location's default (path and header `simple`,
query and cookie `form` exploded); booleans as `true`/`false`; objects and lists nested inside
a query value or form field as JSON text. A query, header or cookie argument that is None is
left out; arguments left out of the call are not sent (the server applies its defaults).
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from .api_names import function_api_name, grammar_arguments
from .errors import GrammarError
from .spec import FunctionCall, FunctionSpec, Parameter

__all__ = ["HttpRequest", "build_request"]

# cookie-octet (RFC 6265) minus '%', which escapes the rest
_COOKIE_SAFE = "!#$&'()*+-./:<=>?@[]^_`{|}~"
_DELIMITERS = {"spaceDelimited": "%20", "pipeDelimited": "|", "tabDelimited": "%09"}


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request: `url` holds the escaped path and query string; `headers` every header to
    send (`Cookie` and `Content-Type` included); `cookies` the cookie values, unescaped."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the body as text (UTF-8; JSON, form and multipart bodies of text are)."""
        body = None if self.body is None else self.body.decode("utf-8", errors="replace")
        return {"method": self.method, "url": self.url, "headers": dict(self.headers), "body": body}

    def to_text(self) -> str:
        """The request as a reader expects it: request line, headers, blank line, body."""
        lines = [f"{self.method} {self.url}"] + [f"{k}: {v}" for k, v in self.headers.items()]
        body = "" if self.body is None else "\n" + self.body.decode("utf-8", errors="replace")
        return "\n".join(lines) + ("\n" + body if body else "")

    def to_urllib(self) -> urllib.request.Request:
        """A `urllib.request.Request` that sends exactly this request."""
        return urllib.request.Request(self.url, data=self.body, headers=dict(self.headers),
                                      method=self.method)


def build_request(call: FunctionCall, spec: FunctionSpec, base_url: str | None = None) -> HttpRequest:
    """The request for `call` (in the grammar's or the API's names) to the OpenAPI operation
    `spec`, sent to `base_url` (default: the document's server). Raises GrammarError (a
    ValueError) naming the function and argument when the call cannot be one."""
    name = function_api_name(spec)
    if not spec.endpoint:
        raise GrammarError("not an HTTP operation (only functions read from an OpenAPI document "
                           "have a request)", name)
    method, path = spec.endpoint.split(" ", 1)
    arguments = grammar_arguments(call, spec)
    base = base_url if base_url is not None else spec.server
    if not base or not urlsplit(base).scheme or not urlsplit(base).netloc:
        raise GrammarError(f"no absolute base URL to send to (the document gives {spec.server!r}); "
                           "pass base_url", name)
    query: list[str] = []
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    body_fields: dict[str, Any] = {}
    whole_body: list[Any] = []
    for p in spec.parameters:
        if p.name not in arguments:
            continue
        value, api, where = arguments[p.name], p.api_name or p.name, f"{name}.{p.api_name or p.name}"
        if p.location == "path":
            if value is None:
                raise GrammarError("a path parameter cannot be null", where)
            placeholder = "{" + api + "}"
            if placeholder not in path:
                raise GrammarError(f"the path {path} has no {placeholder}", where)
            path = path.replace(placeholder, _path_value(p, api, value))
        elif p.location in ("query", "header", "cookie") and value is None:
            continue
        elif p.location == "query":
            query += _query_pairs(p, api, value)
        elif p.location == "header":
            headers[api] = _header_value(_joined(p, value, p.explode is True), where)
        elif p.location == "cookie":
            cookies[api] = _joined(p, value, False)
        elif p.name == spec.body_parameter:
            whole_body.append(value)
        else:  # a body property or form field
            body_fields[api] = value
    missing = re.findall(r"\{([^{}]+)\}", path)
    if missing:
        raise GrammarError(f"the path parameter {missing[0]!r} has no value", name)
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={quote(v, safe=_COOKIE_SAFE)}" for k, v in cookies.items())
    body = None
    if whole_body or body_fields:
        content = whole_body[0] if whole_body else body_fields
        body, content_type = _body(content, spec.media_type or "application/json", name)
        headers["Content-Type"] = content_type
    url = base.rstrip("/") + "/" + path.lstrip("/")
    if query:
        url += "?" + "&".join(query)
    return HttpRequest(method.upper(), url, headers, body, cookies)


# ----------------------------------------------------------------------------- values

def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, float):
        return json.dumps(value)
    return str(value)


def _esc(value: Any) -> str:
    return quote(_scalar(value), safe="")


def _items(value: Any) -> list[tuple[str, Any]] | None:
    return list(value.items()) if isinstance(value, dict) else None


def _joined(p: Parameter, value: Any, explode: bool, escape=lambda s: s) -> str:
    """simple-style text: `a,b` for lists, `k,v,k2,v2` (or `k=v,k2=v2` exploded) for objects."""
    if isinstance(value, list):
        return ",".join(escape(_scalar(v)) for v in value)
    pairs = _items(value)
    if pairs is not None:
        if explode:
            return ",".join(f"{escape(k)}={escape(_scalar(v))}" for k, v in pairs)
        return ",".join(f"{escape(k)},{escape(_scalar(v))}" for k, v in pairs)
    return escape(_scalar(value))


def _path_value(p: Parameter, api: str, value: Any) -> str:
    style, explode = p.style or "simple", p.explode is True
    esc = lambda s: quote(s, safe="")  # noqa: E731 - a '/' in a value must not split the path
    if style == "label":
        sep = "." if explode else ","
        if isinstance(value, list):
            return "." + sep.join(esc(_scalar(v)) for v in value)
        pairs = _items(value)
        if pairs is not None:
            return "." + sep.join(f"{esc(k)}={esc(_scalar(v))}" if explode else f"{esc(k)},{esc(_scalar(v))}"
                                  for k, v in pairs)
        return "." + esc(_scalar(value))
    if style == "matrix":
        if isinstance(value, list) and explode:
            return "".join(f";{esc(api)}={esc(_scalar(v))}" for v in value)
        pairs = _items(value)
        if pairs is not None and explode:
            return "".join(f";{esc(k)}={esc(_scalar(v))}" for k, v in pairs)
        return f";{esc(api)}=" + _joined(p, value, False, esc)
    return _joined(p, value, explode, esc)


def _query_pairs(p: Parameter, api: str, value: Any) -> list[str]:
    style = p.style or "form"
    explode = p.explode if p.explode is not None else style == "form"
    name = _esc(api)
    pairs = _items(value)
    if style == "deepObject" and pairs is not None:
        return [f"{quote(f'{api}[{k}]', safe='[]')}={_esc(v)}" for k, v in pairs]
    if isinstance(value, list):
        if explode:
            return [f"{name}={_esc(v)}" for v in value]
        return [f"{name}=" + _DELIMITERS.get(style, ",").join(_esc(v) for v in value)]
    if pairs is not None:
        if explode:
            return [f"{_esc(k)}={_esc(v)}" for k, v in pairs]
        return [f"{name}=" + ",".join(f"{_esc(k)},{_esc(v)}" for k, v in pairs)]
    return [f"{name}={_esc(value)}"]


def _header_value(text: str, where: str) -> str:
    if any(c in text for c in "\r\n\0"):
        raise GrammarError("a header value cannot hold a line break or NUL", where)
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise GrammarError("a header value must be Latin-1 text (HTTP headers carry no other)",
                           where) from None
    return text


def _form_pairs(content: Any, name: str) -> list[tuple[str, str]]:
    pairs = _items(content)
    if pairs is None:
        raise GrammarError(f"a form body must be an object, got {type(content).__name__}", name)
    out = []
    for key, value in pairs:
        if value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            out.append((key, _scalar(v)))
    return out


def _body(content: Any, media_type: str, name: str) -> tuple[bytes, str]:
    """(body bytes, Content-Type) for the media type."""
    kind = media_type.split(";")[0].strip().lower()
    if "json" in kind:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), media_type
    if kind == "application/x-www-form-urlencoded":
        return urlencode(_form_pairs(content, name)).encode("utf-8"), media_type
    if kind == "multipart/form-data":
        fields = _form_pairs(content, name)
        # a boundary made from the content: the same call gives the same bytes
        digest = hashlib.sha256(repr(fields).encode("utf-8")).hexdigest()[:24]
        boundary = f"octogram-{digest}"
        parts = []
        for key, value in fields:
            disposition = key.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{disposition}"\r\n\r\n'
                         f"{value}\r\n")
        return ("".join(parts) + f"--{boundary}--\r\n").encode("utf-8"), \
            f"multipart/form-data; boundary={boundary}"
    text = content if isinstance(content, str) else _scalar(content)
    return text.encode("utf-8"), media_type
