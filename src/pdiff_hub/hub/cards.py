"""Model and dataset cards rendered from the templates shipped in ``pdiff_hub/hub/templates/`` (package data)."""

from __future__ import annotations

import jinja2
import yaml

__all__ = ["render_card"]

# StrictUndefined: a variable the caller forgot raises instead of leaving a blank in a published card.
_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("pdiff_hub.hub", "templates"),
                                undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def render_card(template: str, metadata: dict, **values) -> str:
    """Render ``templates/<template>.md`` with ``values`` under a Hub metadata header built from ``metadata``.

    Every variable the template uses must be given: a missing one raises ``jinja2.UndefinedError`` instead of
    leaving a placeholder in a published card. Metadata entries that are ``None`` are left out.

    Raises:
        FileNotFoundError: no template of that name ships with the package.
    """
    try:
        body = _TEMPLATES.get_template(f"{template}.md").render(**values)
    except jinja2.TemplateNotFound as err:
        raise FileNotFoundError(f"No card template {template!r} in pdiff_hub/hub/templates/") from err
    header = yaml.safe_dump({k: v for k, v in metadata.items() if v is not None}, sort_keys=False).strip()
    return f"---\n{header}\n---\n\n{body}"
