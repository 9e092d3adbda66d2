"""The README's test command is the one CI runs, verbatim."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_verbatim():
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    marker = lines.index("# --- README test command (verbatim) ---")
    command = lines[marker + 1].strip()
    assert "pytest" in command
    assert command in (REPO / "README.md").read_text().splitlines()
