"""Write docs/parameters.md from the settings schema (face_expr_ros/config.py).

    .venv/bin/python scripts/gen_param_docs.py          # rewrite the file
    .venv/bin/python scripts/gen_param_docs.py --check  # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from face_expr_ros.config import NODE_SCHEMAS, NodeSettings, describe_schema

DOC = Path(__file__).resolve().parent.parent / "docs" / "parameters.md"


def render() -> str:
    lines = [
        "# Node parameters",
        "",
        "Generated from `face_expr_ros/config.py` by `scripts/gen_param_docs.py`; do not edit by hand.",
        "Parameters are set in ROS 2 parameter files (`config/default.yaml` is the shipped default).",
        "A wrong key, type or value stops the node at start-up with a message naming the file, the",
        "key, the value and what is allowed.",
        "",
    ]
    sections = [("Every node (`/**`)", NodeSettings)] + [(f"`{n}`", s) for n, s in NODE_SCHEMAS.items()]
    base = {row[0]: row[2] for row in describe_schema(NodeSettings)}
    for title, schema in sections:
        lines += [f"## {title}", "", "| parameter | type | default | allowed | meaning |", "|" + "---|" * 5]
        for name, kind, default, allowed, help_text in describe_schema(schema):
            if schema is not NodeSettings and base.get(name, object()) == default:
                continue  # a parameter of every node, with every node's default (listed above)
            lines.append(f"| `{name}` | {kind} | `{default}` | {allowed} | {help_text} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail when docs/parameters.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DOC.is_file() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run scripts/gen_param_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
