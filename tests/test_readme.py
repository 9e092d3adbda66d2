"""The README's test command is the one CI runs, verbatim."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_verbatim():
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    marker = lines.index("# --- README test command (verbatim) ---")
    command = lines[marker + 1].strip()
    assert "pytest" in command
    assert command in (REPO / "README.md").read_text().splitlines()


def test_readme_array_api_example_runs():
    """The first Python block of the README's "Python API" section runs as written."""
    import numpy as np

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    block = section[section.index("```python") + len("```python"):]
    block = block[:block.index("```")]
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    fit, ph = namespace["fit"], namespace["ph"]
    assert fit.cbf.shape == ph.signal.shape[:3]
    truth = ph.truth["cbf"]
    expected = truth[ph.masks["tumour"]].mean() / truth[ph.masks["ref"]].mean()
    assert np.isfinite(namespace["ratio"])
    assert abs(namespace["ratio"] / expected - 1) < 0.25


def test_readme_dce_array_example_runs():
    """The README's DCE array example (second Python block of "Python API") runs and
    recovers the tumour's Ktrans."""
    import numpy as np

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    blocks = section.split("```python")[1:3]
    namespace = {}
    for block in blocks:
        exec(compile(block[:block.index("```")], "README.md", "exec"), namespace)
    fit, ph = namespace["fit"], namespace["ph"]
    tumour = ph.masks["tumour"]
    truth = float(np.nanmedian(ph.truth["ktrans"][tumour]))
    assert abs(float(np.nanmedian(fit.ktrans[tumour])) / truth - 1) < 0.1
