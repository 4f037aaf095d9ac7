#!/usr/bin/env bash
# Sets up what the tests need, then runs them all: a .venv beside the project with the package and its
# dev tools, and (as root, when missing) LibreOffice Calc, CJK fonts, poppler and Dovecot (the IMAP server
# the mailbox tests start on 127.0.0.1) from Debian's packages.
# Fails when a static check or a test fails, and when no test ran at all. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

need_packages=0
for program in soffice pdftoppm pdftotext chromium openssl; do
  have "$program" || need_packages=1
done
if ! have dovecot && [ ! -x /usr/sbin/dovecot ]; then
  need_packages=1
fi
if have dpkg-query && ! dpkg-query -W -f='${Status}' libreoffice-writer-nogui 2>/dev/null | grep -q "ok installed"; then
  need_packages=1  # the Word summary is converted to PDF by LibreOffice Writer
fi
if have fc-list && [ -z "$(fc-list :lang=zh family 2>/dev/null)" ]; then
  need_packages=1  # without a CJK font, PDFs of the forms print empty boxes
fi
if [ "$need_packages" -eq 1 ]; then
  if [ "$(id -u)" -eq 0 ] && have apt-get; then
    echo "scripts/test.sh: installing LibreOffice Calc and Writer, Chromium, CJK fonts, poppler and Dovecot (apt-get)…"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends libreoffice-calc-nogui libreoffice-writer-nogui fonts-noto-cjk poppler-utils chromium openssl dovecot-imapd >/dev/null
    # The package's own service is not wanted: the tests start their own Dovecot on a free port.
  else
    echo "scripts/test.sh: soffice, poppler or CJK fonts missing and not root: LibreOffice tests will be" \
      "skipped (or fail under CI=true). As root: apt-get install --no-install-recommends" \
      "libreoffice-calc-nogui libreoffice-writer-nogui fonts-noto-cjk poppler-utils dovecot-imapd" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
  "$PY" -m venv .venv
fi
# Reinstall only when the declared dependencies change: the stamp holds pyproject.toml's digest.
stamp=.venv/.installed-dev
digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ] || [ ! -x .venv/bin/pipeline ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$digest" > "$stamp"
fi

# The static checks first: lint, format, types of the library, and the layer contract (pyproject.toml).
status=0
check() {
  echo "scripts/test.sh: $*"
  "$@" || { echo "scripts/test.sh: FAILED: $*" >&2; status=1; }
}
check .venv/bin/ruff check .
check .venv/bin/ruff format --check .
check .venv/bin/mypy
check .venv/bin/lint-imports --no-cache

tests=0
.venv/bin/python -m pytest -q "$@" || tests=$?
if [ "$tests" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests; that is a failure, not a pass" >&2
fi
if [ "$tests" -ne 0 ]; then
  status=$tests
fi
exit "$status"
