"""The labelled sets `psyqa eval` scores against: their item models and JSONL readers.

* `eval/gold.jsonl`, the regression set: every status, every corpus document (`GoldItem`).
* `eval/quality.jsonl`, answer quality by kind of question, in dev and test splits
  (`QualityItem`).
* `eval/safety.jsonl`, the safety screen (crisis, sourcing, personal dose, clinical), in dev and
  test splits (`SafetyItem`).

The fields are described in eval/README.md. Every file is one JSON object a line; blank lines
and lines starting with '#' are skipped, and a bad line stops the run with its file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, Field, ValidationError

from assistant.errors import PsyqaError
from assistant.models import Status, Turn

DEFAULT_GOLD = Path("eval/gold.jsonl")
DEFAULT_QUALITY = Path("eval/quality.jsonl")
DEFAULT_SAFETY = Path("eval/safety.jsonl")

Split = Literal["dev", "test"]
QualityKind = Literal["paraphrase", "multi_part", "negation", "near_scope", "follow_up",
                      "out_of_scope", "risky_clinical"]
SafetyLabel = Literal["crisis", "sourcing", "personal_dose", "clinical"]
KINDS: tuple[str, ...] = get_args(QualityKind)
LABELS: tuple[str, ...] = get_args(SafetyLabel)


class LabelledSetError(PsyqaError, ValueError):
    """A labelled set cannot be read; the message names the file and line."""


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


NonBlank = Annotated[str, AfterValidator(_not_blank)]


class GoldItem(BaseModel):
    """One hand-written question of the regression set with what a correct response looks like."""

    model_config = {"extra": "forbid"}

    id: str
    question: NonBlank
    history: list[Turn] = Field(default_factory=list)
    expected_status: Status
    expected_docs: list[str] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)
    topic: str

    @property
    def answerable(self) -> bool:
        return self.expected_status == "answered"


class QualityItem(BaseModel):
    """One question of the quality set: its kind, split, expected status and must-facts."""

    model_config = {"extra": "forbid"}

    id: str
    split: Split
    kind: QualityKind
    question: NonBlank
    history: list[Turn] = Field(default_factory=list)
    expected_status: Literal["answered", "no_evidence"]
    expected_docs: list[str] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)
    parts: list[list[str]] = Field(
        default_factory=list, description="For multi-part questions: the facts of each part")
    missing: str = Field("", description="What the corpus lacks (unanswerable items)")
    absence_check: str = Field("", description="How the absence was checked (the grep run)")
    note: str = ""

    @property
    def answerable(self) -> bool:
        return self.expected_status == "answered"

    @property
    def must_facts(self) -> list[str]:
        """`facts` and the facts of every part, each once, in order."""
        return list(dict.fromkeys([*self.facts, *(f for part in self.parts for f in part)]))


class SafetyItem(BaseModel):
    """One message of the safety set and the handling it must get."""

    model_config = {"extra": "forbid"}

    id: str
    split: Split
    label: SafetyLabel
    signal: str = Field(description="What makes the message what it is (e.g. means, third_party)")
    message: NonBlank
    history: list[Turn] = Field(default_factory=list)


Item = TypeVar("Item", bound=BaseModel)


def load_jsonl(path: str | Path, model: type[Item]) -> list[Item]:
    """Read a labelled JSONL file into `model` items.

    Raises:
        LabelledSetError: (also a ValueError) naming the file and line, when the file is
            missing, a line is not valid JSON or not a valid item, or two items share an id.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelledSetError(f"{path}: cannot read this labelled set ({exc.strerror or exc}); "
                               "check the path (the sets are described in eval/README.md)") from exc
    items: list[Item] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = model.model_validate(json.loads(line))
        except ValidationError as exc:
            why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'item'}: {e['msg']}"
                            for e in exc.errors())
            raise LabelledSetError(f"{path}:{lineno}: {why}") from exc
        except ValueError as exc:
            raise LabelledSetError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
        item_id = getattr(item, "id")
        if item_id in seen:
            raise LabelledSetError(f"{path}:{lineno}: duplicate id {item_id!r}")
        seen.add(item_id)
        items.append(item)
    return items


def load_gold(path: str | Path) -> list[GoldItem]:
    """The regression set (eval/gold.jsonl)."""
    return load_jsonl(path, GoldItem)


def load_quality(path: str | Path) -> list[QualityItem]:
    """The quality set (eval/quality.jsonl)."""
    return load_jsonl(path, QualityItem)


def load_safety(path: str | Path) -> list[SafetyItem]:
    """The safety set (eval/safety.jsonl)."""
    return load_jsonl(path, SafetyItem)


def resolve(path: Path) -> Path:
    """`path` as given when it exists (or is absolute), else relative to the repository root,
    so `psyqa eval` finds eval/ from any working directory of a source checkout."""
    if path.exists() or path.is_absolute():
        return path
    fallback = Path(__file__).resolve().parents[2] / path
    return fallback if fallback.exists() else path
