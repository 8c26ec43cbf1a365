"""The README's example must run as printed."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}  # one session, as a reader pasting the blocks in order
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    accuracy = float(re.search(r"train accuracy ([0-9.]+)%", printed).group(1))
    assert accuracy > 95, f"the README's training loop did not learn: {printed}"
