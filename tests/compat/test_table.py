"""README.md's compatibility table is exactly what tests/compat/table.py renders from the CASES."""

from __future__ import annotations

from . import table


def test_readme_holds_the_rendered_table():
    text = table.README.read_text(encoding="utf-8")
    assert text.count(table.START) == 1 and text.count(table.END) == 1
    assert table.readme_block(text) == table.render(), "refresh it: python -m tests.compat.table --write"


def test_render_has_one_row_per_case_from_every_cases_module():
    rows = table.render().splitlines()
    assert rows[0] == "| layout | file | ldm | diffusers |"
    assert len(rows) == 2 + len(table.all_cases())
    assert any(c["name"] == "diffusers folder" for c in table.all_cases())


def test_write_refreshes_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{table.START}\nold rows\n{table.END}\nafter\n", encoding="utf-8")
    table.write_readme(readme)
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# title\n\nbefore\n") and text.endswith(f"{table.END}\nafter\n")
    assert table.readme_block(text) == table.render() and "old rows" not in text
