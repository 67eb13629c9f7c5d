"""Write every inline script once per page.

Sphinx 7.4 adds a script that an extension registers after the builder started (an
inline ``body`` with no file, as sphinx-thebe does in ``env-before-read-docs``) twice:
once as given (``filename=None``) and once from its registry (``filename=''``), and its
de-duplication tells the two apart. Twice ``const THEBE_JS_URL = ...`` is a
SyntaxError in the reader's console, which the browser test (tests/browser) reports.
This drops the second copy of any script with the same file, priority and attributes.
"""

from __future__ import annotations

from typing import Any, Dict

from sphinx.application import Sphinx


def _unique(app: Sphinx, pagename: str, templatename: str, context: Dict[str, Any], doctree: Any) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen = set()
    unique = []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", script) or "", getattr(script, "priority", 500),
               tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> Dict[str, Any]:
    app.connect("html-page-context", _unique, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
