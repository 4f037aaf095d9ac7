"""The README's Python example is the library's documented face: saved as a script and run in a campaign
folder, it works as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_example_runs_a_campaign_from_a_script(tmp_path: Path) -> None:
    example = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert example is not None and "from pipeline import Campaign" in example.group(1)
    shutil.copy(ROOT / "rules.yaml", tmp_path / "rules.yaml")
    # What the script saw, printed at its end so the test can read it.
    report = """
    print(json.dumps({"verdicts": [str(r.verdict) for r in results],
                      "units": sorted({row["unit"] for row in status.as_json()["rows"]}),
                      "consolidated": sorted(c["by_unit"].query("level == 'unit'")["code"])}))
"""
    script = tmp_path / "example.py"
    script.write_text("import json\n" + example.group(1) + report, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_HOME"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(seen["verdicts"]) == 3 and set(seen["verdicts"]) <= {"accepted", "rejected", "unreadable"}
    assert len(seen["units"]) == 21 and set(seen["consolidated"]) <= set(seen["units"])
    assert (
        tmp_path / "outbox" / "报送情况.txt"
    ).is_file()  # written in the campaign folder, not the checkout
