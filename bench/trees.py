"""Side-by-side benchmarks of two trees: an export of a git revision, byte-compiled as an installed package is,
and the `--base REF` option that asks for one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def compile_tree(tree: Path) -> None:
    """Bytecode for bot/ and cogs/ (this workspace sets PYTHONDONTWRITEBYTECODE; an installed package has it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", "bot", "cogs"], cwd=tree, env=env, check=True)


def export(ref: str, into: Path) -> Path:
    """The tree of git revision `ref` under `into`, byte-compiled."""
    tree = into / "base"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    compile_tree(tree)
    return tree


def pop_base(argv: list[str]) -> str | None:
    """Take `--base REF` out of `argv` (the remaining arguments are the benchmark's own)."""
    if "--base" not in argv:
        return None
    at = argv.index("--base")
    ref = argv[at + 1]
    del argv[at : at + 2]
    return ref
