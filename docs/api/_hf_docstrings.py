"""A griffe extension (docs tooling, not part of advtrain) that lets mkdocstrings' Google-style parser read advtrain's
Hugging Face-style docstrings.

Two rewrites, on the docstring text only, before it is parsed:

- a grouped parameter section, e.g. ``Parameters that control the perturbation:`` or ``Parameters of the
  operations:``, becomes its title in italics followed by an ``Args:`` section (the Google parser knows ``Args:``, and
  would render an unknown title as an admonition holding one run-on paragraph);
- an HF doc-builder link, ``[`~transformers.Trainer`]`` or ``[`AdversarialTrainer`]``, becomes plain code;
- a parameter's type in the HF form ``name (`int`, *optional*, defaults to `3`):`` keeps only the type, ``name
  (int):`` (the rendered table has its own Default column, filled from the signature).
"""

from __future__ import annotations

import re

import griffe

_GROUP = re.compile(r"^(?P<indent>\s*)(?P<title>Parameters\b[^:\n]*[^:\s]):\s*$")
# [`~transformers.Trainer`] -> `Trainer` (the "~" shows the last name only); [`AdversarialTrainer.x`] keeps the path.
_HF_LINK = re.compile(r"\[`(?P<tilde>~?)(?P<path>[\w.]*\w)`\]")
_PARAM = re.compile(r"^(?P<head>\s+[\w*, ]+ \()(?P<type>[^()\n]*(?:\([^()\n]*\)[^()\n]*)*)(?P<tail>\):)")


def _clean_type(text: str) -> str:
    parts = [p.strip() for p in text.split(",")]
    kept = [p for p in parts if p and p != "*optional*" and not p.startswith("defaults to")]
    return ", ".join(kept).replace("`", "") or text


def rewrite(docstring: str) -> str:
    lines = []
    for line in docstring.splitlines():
        group = _GROUP.match(line)
        if group and group["title"] not in ("Parameters", "Args"):
            lines += [f"{group['indent']}*{group['title']}*", "", f"{group['indent']}Args:"]
            continue
        line = _HF_LINK.sub(lambda m: f"`{m['path'].split('.')[-1] if m['tilde'] else m['path']}`", line)
        lines.append(_PARAM.sub(lambda m: m["head"] + _clean_type(m["type"]) + m["tail"], line, count=1))
    return "\n".join(lines)


class HFDocstrings(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
