#!/usr/bin/env bash
# Sets up the project (a .venv beside it) and runs the main job on the bundled demo inbox:
# blank templates for every unit, a demo inbox filled the way counties fill it, and the check of
# every file in it. Outputs land in outbox/.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e . >/dev/null

.venv/bin/pipeline templates --out outbox/templates | tail -n 1
.venv/bin/pipeline demo --inbox inbox | tail -n 1

mapfile -t files < <(find inbox -type f \( -name '*.xlsx' -o -name '*.xls' -o -name '*.xlsm' -o -name '*.ods' \) | sort)
# check exits 1 when some file is rejected: that is the expected outcome of the demo, not a failure.
status=0
.venv/bin/pipeline check "${files[@]}" > outbox/.校验结果.txt.tmp || status=$?
if [ "$status" -gt 1 ]; then exit "$status"; fi
mv outbox/.校验结果.txt.tmp outbox/校验结果.txt
tail -n 1 outbox/校验结果.txt
echo "输出:outbox/templates/(空白模板)、outbox/校验结果.txt(逐个文件的校验结果);演示收件箱:inbox/"
