"""Few-shot templates: named sets of example pairs sent as user/assistant turns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import InvalidCommand
from core.i18n import N_


@dataclass(frozen=True, slots=True)
class FewShotTemplate:
    name: str
    description: str
    examples: tuple[tuple[str, str], ...]


SENTIMENT = FewShotTemplate(
    name="sentiment",
    description="Clasifica el sentimiento (seed): answers Positivo or Negativo",
    examples=(
        ('Clasifica el sentimiento:\nTexto: "Me encantó el producto"', "Sentimiento: Positivo"),
        ('Clasifica el sentimiento:\nTexto: "No funcionó como esperaba"', "Sentimiento: Negativo"),
    ),
)
BUILTIN_TEMPLATES: dict[str, FewShotTemplate] = {SENTIMENT.name: SENTIMENT}


def parse_templates(raw: object) -> dict[str, FewShotTemplate]:
    """Operator templates from JSON: ``{name: {description, examples: [[user, bot]]}}``."""
    if not isinstance(raw, Mapping):
        raise ValueError("few-shot file must hold an object of templates")
    templates: dict[str, FewShotTemplate] = {}
    for name, body in raw.items():
        if not isinstance(body, Mapping) or not isinstance(body.get("examples"), list):
            raise ValueError(f"template '{name}' needs a list of examples")
        pairs = tuple(_pair(name, item) for item in body["examples"])
        templates[str(name)] = FewShotTemplate(str(name), str(body.get("description", "")), pairs)
    return templates


def _pair(name: str, item: object) -> tuple[str, str]:
    if isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(s, str) for s in item):
        return item[0], item[1]
    raise ValueError(f"template '{name}': each example is [user text, assistant text]")


class FewShotCatalog:
    """Built-in templates plus the operator's, looked up by name."""

    def __init__(self, extra: Mapping[str, FewShotTemplate] | None = None) -> None:
        self._templates = {**BUILTIN_TEMPLATES, **(extra or {})}

    def get(self, name: str) -> FewShotTemplate:
        try:
            return self._templates[name]
        except KeyError:
            known = ", ".join(sorted(self._templates))
            raise InvalidCommand(
                N_("Unknown few-shot template '{name}'. Templates: {known}."),
                name=name,
                known=known,
            ) from None

    def find(self, name: str | None) -> FewShotTemplate | None:
        return self._templates.get(name) if name else None

    def all(self) -> list[FewShotTemplate]:
        return [self._templates[k] for k in sorted(self._templates)]
