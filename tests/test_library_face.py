"""The README's Python example is the library's documented face: it runs as written in a campaign folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_example_runs_a_campaign_from_python(tmp_path: Path, monkeypatch) -> None:
    example = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert example is not None and "from pipeline import Campaign" in example.group(1)
    shutil.copy(ROOT / "rules.yaml", tmp_path / "rules.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PIPELINE_HOME", raising=False)
    scope: dict[str, object] = {}
    exec(compile(example.group(1), "README.md", "exec"), scope)

    assert [r.verdict for r in scope["results"]]  # three files checked
    outbox = tmp_path / "outbox"
    assert (outbox / "报送情况.txt").is_file()  # the run wrote into the campaign folder, not the checkout
    frame = scope["c"]["by_unit"]
    units = {row["unit"] for row in scope["status"].as_json()["rows"]}
    assert set(frame[frame["level"] == "unit"]["code"]) <= units and len(units) == 21
