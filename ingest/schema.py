"""Front matter: split it from the body and validate it, naming the file and field on error."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import yaml
from pydantic import ValidationError

from assistant.errors import DocumentError
from assistant.models import DocMeta

_FM = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, (list, tuple)):
        return any(_has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    return False


LIST_FIELDS = ("authors", "substances", "conditions", "jurisdictions", "sources", "facts")


def split_front_matter(text: str) -> tuple[str | None, str, int]:
    """Return (yaml text or None, body, offset of the body in `text`)."""
    m = _FM.match(text)
    if not m:
        return None, text, 0
    return m.group(1), text[m.end():], m.end()


def parse_front_matter(raw: str, path: str) -> DocMeta:
    """Validate YAML front matter into DocMeta; errors name `path` and the field."""
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (front matter line {where.line + 1})" if where is not None else ""
        raise DocumentError(path, f"malformed YAML front matter{line}",
                            "fix the YAML between the two '---' lines") from None
    except (ValueError, RecursionError, AttributeError, TypeError) as exc:
        # Impossible dates (2023-02-30), absurd nesting, and tags PyYAML's constructors trip over
        # instead of reporting (an empty `!!timestamp` raises AttributeError inside PyYAML).
        raise DocumentError(path, f"front matter has a value YAML cannot represent ({type(exc).__name__}: "
                            f"{str(exc)[:80]})", "fix the value (dates are YYYY-MM-DD)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DocumentError(path, "front matter is not a mapping of fields",
                            "write 'field: value' lines between the '---' lines")
    return validate_meta(data, path)


def validate_meta(data: dict[str, Any], path: str) -> DocMeta:
    data = dict(data)
    for key, value in data.items():
        if _has_surrogate(value):
            raise DocumentError(path, f"front-matter field '{key}' contains an invalid character "
                                "(a lone UTF-16 surrogate)", f"retype the value of '{key}'")
    for key in LIST_FIELDS:  # a single string is accepted where a list is expected
        if isinstance(data.get(key), str):
            data[key] = [data[key]]
    for key in ("published", "as_of", "reviewed"):  # YAML gives datetimes for timestamps
        if isinstance(data.get(key), dt.datetime):
            data[key] = data[key].date()
    if "title" not in data or data.get("title") in (None, ""):
        raise DocumentError(path, "front matter has no 'title'",
                            "add a line 'title: ...' to the front matter")
    try:
        return DocMeta.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "front matter"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(DocMeta.model_fields)
            raise DocumentError(path, f"unknown front-matter field '{field}'",
                                f"remove it or use one of: {allowed}") from None
        raise DocumentError(path, f"front-matter field '{field}': {err['msg']}",
                            f"fix '{field}' (got {err.get('input')!r})") from None
