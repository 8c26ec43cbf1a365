"""The README's example must run as printed."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out
    loss = float(re.search(r"loss ([0-9.]+)", printed).group(1))
    assert loss < 0.1, f"the README's training loop did not learn: {printed}"
