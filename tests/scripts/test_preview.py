"""`make preview`: one page with every message kind, rendered from the real builders."""

from __future__ import annotations

import re

from scripts import preview


def test_the_page_shows_every_message_kind_with_its_buttons(tmp_path) -> None:
    out = tmp_path / "preview.html"
    assert preview.main([str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    kinds = re.findall(r'class="kind">([^<]+?) <span', page)
    shown = sum(1 for _, build in preview.SECTIONS for _ in build())
    assert len(kinds) == shown >= 10
    assert any(k.startswith("CRITICAL") for k in kinds) and "The one resolved line" in kinds
    assert 'class="btn primary disabled">Acknowledged<' in page  # the acknowledged alert
    assert "Retry reload" in page and "Restart project" in page
    assert "**" not in page and "<t:" not in page  # rendered, not raw Markdown
    assert "pgrst_ops" not in page  # the alerts' private facts are not part of the message


def test_text_is_escaped_before_it_is_rendered() -> None:
    assert preview.markdown("<script>**x**</script>") == "&lt;script&gt;<b>x</b>&lt;/script&gt;"
