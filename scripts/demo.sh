#!/usr/bin/env bash
# Sets up the project (a .venv beside it) and runs the main job on the bundled demo inbox:
# blank templates for every unit, a demo inbox filled the way counties fill it, and the
# weekly run over it (check, feedback, status). Outputs land in outbox/.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e . >/dev/null

.venv/bin/pipeline templates --out outbox/templates | tail -n 1
.venv/bin/pipeline demo --inbox inbox | tail -n 1

# The demo's files are dated January 2017: run at a moment of that campaign, before its deadline.
.venv/bin/pipeline run --inbox inbox --outbox outbox --state state --as-of 2017-02-01T12:00
echo "输出:outbox/templates/(空白模板)、outbox/报送情况.txt、outbox/反馈/(批注后的工作簿)、outbox/邮件/(.eml)、outbox/汇总/(汇总表、情况报告、总结 .docx);上年/(演示用的上年汇总表);台账:state/"
