"""The README's permission matrix is what the code enforces: the table between the markers is the
generator's output (whitespace aside), and read on its own it grants each system role exactly its
permissions, so neither the code nor the document can drift alone."""

import re
from pathlib import Path

from domain.permissions import (
    CATALOG,
    SYSTEM_ROLE_NAMES,
    SYSTEM_ROLE_PERMISSIONS,
    SystemRole,
    permission_matrix_markdown,
)
from domain.roles import Permission

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- permission-matrix:start -->"
END = "<!-- permission-matrix:end -->"


def readme() -> str:
    return README.read_text(encoding="utf-8")


def readme_table() -> str:
    text = readme()
    assert text.count(START) == 1 and text.count(END) == 1, "the README needs exactly one pair of markers"
    return text.split(START, 1)[1].split(END, 1)[0]


def normalised(table: str) -> list[str]:
    """Lines without surrounding or repeated whitespace, blank lines dropped."""
    return [" ".join(line.split()) for line in table.splitlines() if line.strip()]


def matrix_section() -> str:
    text = readme()
    start = text.index("### Permission matrix")
    return text[start : text.index(START)]


def test_the_readme_matrix_is_the_generated_one() -> None:
    assert normalised(readme_table()) == normalised(permission_matrix_markdown())


def test_the_readme_matrix_sits_under_architecture() -> None:
    text = readme()
    architecture = text.index("## Architecture")
    following = text.find("\n## ", architecture + 1)
    assert architecture < text.index("### Permission matrix") < text.index(START) < text.index(END)
    assert following == -1 or text.index(END) < following


def test_read_on_its_own_the_readme_table_grants_each_system_role_exactly_its_permissions() -> None:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")] for line in normalised(readme_table())
    ]
    header, separator, body = rows[0], rows[1], rows[2:]
    assert header[0] == "Permission" and all(set(cell) <= {"-", ":"} for cell in separator)
    roles = list(SystemRole)
    assert header[1:] == [SYSTEM_ROLE_NAMES[role] for role in roles]

    granted: dict[SystemRole, set[Permission]] = {role: set() for role in roles}
    listed: list[Permission] = []
    for row in body:
        match = re.fullmatch(r"`(\w+:\w+)`", row[0])
        assert match, row
        permission = Permission.parse(match.group(1))
        listed.append(permission)
        assert len(row) == 1 + len(roles), row
        for role, cell in zip(roles, row[1:], strict=True):
            assert cell in ("✓", ""), row
            if cell == "✓":
                granted[role].add(permission)
    assert sorted(listed, key=str) == sorted(CATALOG, key=str) and len(listed) == len(set(listed))
    for role in roles:
        assert granted[role] == set(SYSTEM_ROLE_PERMISSIONS[role]), SYSTEM_ROLE_NAMES[role]


def test_the_readme_says_what_each_system_role_is_for() -> None:
    section = matrix_section()
    for role in SystemRole:
        assert f"**{SYSTEM_ROLE_NAMES[role]}**" in section, SYSTEM_ROLE_NAMES[role]
