"""Model and dataset cards rendered from the templates in ``pdiff_hub/hub/templates/``."""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

__all__ = ["render_card"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"  # package data


def render_card(template: str, metadata: dict, **values) -> str:
    """Render ``templates/<template>.md`` with ``values`` under a Hub metadata header built from ``metadata``.

    Every variable the template uses must be given: a missing one raises ``jinja2.UndefinedError`` instead of
    leaving a placeholder in a published card.
    """
    path = TEMPLATE_DIR / f"{template}.md"
    if not path.is_file():
        raise FileNotFoundError(f"No card template {path}")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    body = env.from_string(path.read_text()).render(**values)
    header = yaml.safe_dump({k: v for k, v in metadata.items() if v is not None}, sort_keys=False).strip()
    return f"---\n{header}\n---\n\n{body}"
