"""`make demo` as a newcomer runs it: the whole story in well under a minute, its own throwaway store."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


async def test_demo_tells_the_story_without_touching_the_real_store(tmp_path):
    workdir = tmp_path / "work"  # where `make demo` would run: `make run`'s pgrst-ops.db lives here
    workdir.mkdir()
    scratch = Path(tempfile.gettempdir())  # the PostgreSQL cluster runs as another user: keep the usual TMPDIR
    before = demo_dirs(scratch)
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "NO_COLOR")}
    env |= {"PYTHONPATH": str(ROOT)}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "scripts.demo"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for step in ("Auto-recovered", "CRITICAL  demo", "resolved after", "=== done"):
        assert step in out, (step, out)
    assert "\x1b[" not in out  # redirected: no ANSI, not even for the narration
    assert not (workdir / "pgrst-ops.db").exists()  # the store `make run` uses is never written
    store = Path(re.search(r"incidents go to (\S+) \(removed at the end\)", out).group(1))
    assert store.parent.parent == scratch and store.name != "pgrst-ops.db"
    assert not store.parent.exists() and demo_dirs(scratch) <= before  # its own store is gone afterwards


def demo_dirs(tmp: Path) -> set[str]:
    return {p.name for p in tmp.iterdir() if p.name.startswith("pgrst-ops-demo-")}
