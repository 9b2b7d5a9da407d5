"""The README stays true: its configuration table is the one the code declares."""

from pathlib import Path

from entrypoints.settings import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings() -> None:
    text = README.read_text()
    start = text.index("<!-- config-table:start -->") + len("<!-- config-table:start -->")
    end = text.index("<!-- config-table:end -->")
    assert text[start:end].strip() == settings_table().strip(), (
        "README configuration table is stale: paste the output of `bulwark config`"
    )
