"""Help text for `polydiff <domain> <verb> --help`, read from the comments of the verb's YAML.

Convention in `conf/<domain>/<verb>.yaml`: a trailing `# comment` on a key's line (or a comment
block on the lines just above it) is that option's help. Defaults come from the composed config,
so they are exactly what the verb would run with.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*)\s*:(?P<rest>.*)$")
_SKIP = ("defaults", "hydra")


def _trailing_comment(rest: str) -> str:
    # A comment starts at " #" outside quotes; config values here never contain "#" in strings.
    quote = None
    for j, ch in enumerate(rest):
        if ch in "'\"":
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None and (j == 0 or rest[j - 1].isspace()):
            return rest[j + 1 :].strip()
    return ""


def option_comments(yaml_file: Path) -> dict[str, str]:
    """Map dotted key -> help text for every key of the YAML file, in file order."""
    helps: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in yaml_file.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if not stripped.startswith("# @package"):
                pending.append(stripped.lstrip("#").strip())
            continue
        match = _KEY.match(line)
        if not match:
            pending = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        path = ".".join(k for _, k in stack)
        helps[path] = _trailing_comment(match["rest"]) or " ".join(pending)
        pending = []
    return {k: v for k, v in helps.items() if k.split(".")[0] not in _SKIP}


def _fmt(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def options_help(cfg: DictConfig, yaml_file: Path) -> str:
    """Lines `key=default   help` for the leaves of `cfg`, with section comments as headings."""
    helps = option_comments(yaml_file)
    lines: list[str] = []

    def walk(node: dict, prefix: str, depth: int) -> None:
        indent = "  " * (depth + 1)
        for key, value in node.items():
            path = f"{prefix}{key}"
            text = helps.get(path, "")
            if isinstance(value, dict) and value:
                lines.append(f"{indent}{path}:" + (f"  # {text}" if text else ""))
                walk(value, f"{path}.", depth + 1)
            else:
                shown = f"{indent}{path}={_fmt(value)}"
                lines.append(shown + (" " * max(1, 36 - len(shown)) + text if text else ""))

    plain = OmegaConf.to_container(cfg, resolve=False)
    walk({k: v for k, v in plain.items() if k not in _SKIP}, "", 0)
    return "\n".join(lines)
