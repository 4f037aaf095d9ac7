"""The weekly run: intake → check → feedback → status (→ consolidation), resumable at every step.

Each step reads what the ledger says is left to do, so a run killed anywhere is completed by the next;
a run with nothing new changes nothing and sends nothing.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import os
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.campaign.config import Rules
from pipeline.consolidation import status
from pipeline.io import atomic, intake
from pipeline.io.ledger import Ledger
from pipeline.model import (
    F_IDENTITY,
    F_TOO_LARGE,
    F_UNRECOGNISED,
    Checked,
    Finding,
    Read,
    Report,
    Severity,
    Submission,
    Verdict,
)

if TYPE_CHECKING:  # reading and validating import pandas and pandera: only a run with new files needs them
    from pipeline.consolidation import consolidate

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (stage in Chinese, done, total)
FEEDBACK_DIR = "反馈"
MAIL_DIR = "邮件"
STATUS_TXT = "报送情况.txt"
STATUS_JSON = "报送情况.json"
REPORT = "report"


class RunLocked(Exception):
    """Another run holds the lock."""


def moment(text: str | None, rules: Rules) -> dt.datetime:
    """The run's "now": --as-of as given (ISO date or date and time, campaign time zone), else the clock."""
    tz = rules.campaign.tz
    if not text:
        return dt.datetime.now(tz).replace(microsecond=0)
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("/", "-"))
    except ValueError:
        raise ValueError(f"时间“{text}”无法识别,请写成 2017-02-01 或 2017-02-01T10:00") from None
    return when.replace(tzinfo=tz) if when.tzinfo is None else when.astimezone(tz)


@dataclass
class RunResult:
    as_of: dt.datetime
    intake: intake.Intake
    checked: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    status: status.Status | None = None
    outputs: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage, for the run's last line

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


@contextmanager
def locked(state: Path) -> Iterator[None]:
    """One run at a time: a second one is told who holds the lock instead of corrupting the ledger."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / "run.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "未知进程"
        handle.close()
        raise RunLocked(f"另一个 pipeline 正在运行({holder}),请等它结束后再试。") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"进程 {os.getpid()},开始于 {dt.datetime.now():%Y-%m-%d %H:%M:%S}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def run(
    rules: Rules,
    inbox: Path,
    outbox: Path,
    state: Path,
    as_of: dt.datetime,
    *,
    send: bool = False,
    parent: str = "province",
    progress: Progress | None = None,
    password: str | None = None,
    final: bool = False,
    sign: dict[str, object] | None = None,
) -> RunResult:
    from pipeline.io import sandbox

    limits = rules.limits
    with (_loaded_kept_aside(), locked(state),
          sandbox.kept(rules.source, memory_mb=limits.worker_memory_mb, seconds=limits.worker_seconds)):
        ledger = Ledger(state)
        try:
            return _run(rules, ledger, inbox, outbox, as_of, send, parent, progress, password, final, sign)
        finally:
            ledger.close()


def _get_ready() -> None:
    """There are new files: start the children, so that they load while intake takes the files in."""
    from pipeline.io import sandbox

    sandbox.start_kept()


@contextmanager
def _loaded_kept_aside() -> Iterator[None]:
    """What is loaded by now (modules, the rules and their thousands of units) lives as long as the run:
    the cyclic garbage collector need not walk it again at each full pass over the run's own objects."""
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _keep_aside() -> None:
    """What a stage has loaded and the next ones keep (6,000 read forms, the ledger's submissions) is set
    aside in the same way, so that no full collection walks those millions of live objects again."""
    import gc

    gc.freeze()


def _run(rules: Rules, ledger: Ledger, inbox: Path, outbox: Path, as_of: dt.datetime, send: bool, parent: str,
         progress: Progress | None, password: str | None, final: bool, sign: dict[str, object] | None) -> RunResult:
    result = RunResult(as_of, intake.Intake())
    early = _Early(rules, as_of)
    with result.timed("收取"):
        result.intake = intake.take_in(ledger, inbox, as_of, rules.limits.max_bytes, arriving_files=_get_ready,
                                       read_files=early.check)
    ahead: list[tuple[status.Status, Callable[[], Made]]] = []
    aside = Aside()
    large = len(rules.children(parent)) >= Aside.UNITS
    with result.timed("校验"):
        # The workbook's process loads its imports on the core the schema run leaves idle.
        result.checked = check_pending(rules, ledger, as_of, parent, progress, read=aside.start if large else None,
                                       early=early.results())

    def draft_ahead() -> Callable[[], None]:
        # Alongside the annotating, the draft for the status as it stands: summed by this process while the
        # children annotate and write the e-mails, its workbook then built by a second process (from
        # Aside.UNITS units on) while this one writes the report and the summary. Only a message refused
        # while sending can change the status, and then the draft is built again.
        if large:
            from pipeline.io import sandbox

            aside.start()  # if not yet: its imports load while this process sums the forms
            sandbox.kept_give_way()  # the workbook is what the stage waits for, not the annotated copies

        def draft() -> None:
            now = current_status(rules, ledger, as_of, parent)
            _keep_aside()
            ahead.append((now, consolidation_started(rules, ledger, outbox, now, as_of, final, parent, sign, aside)))

        return draft

    try:
        with result.timed("反馈"):
            result.messages = feedback(rules, ledger, outbox, as_of, send, parent, progress, password,
                                       meanwhile=None if final else draft_ahead)
        with result.timed("报送情况"):
            result.status = current_status(rules, ledger, as_of, parent)
        scope, key = f"draft:{parent}", _outputs_key(rules, ledger, as_of, parent, sign)
        unchanged = None if final else _unchanged_outputs(ledger, outbox, scope, key)
        if unchanged is not None:
            result.outputs += unchanged  # nothing they are made from has changed: a rerun rewrites nothing
            return result
        with result.timed("汇总"):
            made = ahead[0][1]() if ahead and ahead[0][0] == result.status else None
            result.outputs += write_status(rules, result.status, outbox)
            result.outputs += consolidation(rules, ledger, outbox, result.status, as_of, final, parent, sign, made,
                                            aside)
            if not final:
                ledger.set_outputs(scope, key, {p.relative_to(outbox).as_posix(): _sha256(p) for p in result.outputs})
    finally:
        aside.close()
    return result


def _outputs_key(rules: Rules, ledger: Ledger, as_of: dt.datetime, parent: str,
                 sign: dict[str, object] | None) -> str:
    """What the status files and the draft consolidation are made from, as one digest."""
    from pipeline import __version__

    made_from = [__version__, rules.sha256, ledger.generation(), as_of.isoformat(), parent,
                 sorted((k, str(v)) for k, v in (sign or {}).items())]
    return hashlib.sha256(repr(made_from).encode("utf-8")).hexdigest()


def _unchanged_outputs(ledger: Ledger, outbox: Path, scope: str, key: str) -> list[Path] | None:
    """The outputs of the last run when they were made from the same things and nobody has touched them."""
    recorded = ledger.outputs(scope)
    if recorded is None or recorded[0] != key:
        return None
    paths = []
    for rel, digest in recorded[1].items():
        path = outbox / rel
        if not path.is_file() or _sha256(path) != digest:
            return None
        paths.append(path)
    return paths


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- consolidation ---------------------------------------------------------------------------------------

SUMMARY_DIR = "汇总"


class NotYetFinal(Exception):
    """--final before the deadline."""


def consolidation(rules: Rules, ledger: Ledger, outbox: Path, now: status.Status, as_of: dt.datetime,
                  final: bool, parent: str, sign: dict[str, object] | None,
                  made: Made | None = None, aside: Aside | None = None) -> list[Path]:
    """The consolidated workbook, the HTML report and the summary draft; a numbered 终稿 with --final.

    A draft is rewritten each run; a final edition is written once into its own folder and never again.
    `made`: the same, already built by `consolidation_started` for this very status; else built now, the
    workbook by `aside`'s process if given.
    """
    paths, edition, folder = made or consolidation_started(rules, ledger, outbox, now, as_of, final, parent, sign,
                                                           aside)()
    for path, data in paths.items():
        atomic.write_bytes(path, data)
    if final:
        ledger.add_edition(edition, as_of, folder.relative_to(outbox).as_posix())
    return list(paths)


Made = tuple[dict[Path, bytes], int, Path]  # the files of a consolidation, its edition and folder


def consolidation_started(rules: Rules, ledger: Ledger, outbox: Path, now: status.Status, as_of: dt.datetime,
                          final: bool, parent: str, sign: dict[str, object] | None,
                          aside: Aside | None = None) -> Callable[[], Made]:
    """What `consolidation` writes, begun: the forms summed, the workbook under way (by `aside`'s process if
    given) and the report and summary made meanwhile; what it returns makes the rest and gives them all,
    built and not written."""
    from pipeline import demo
    from pipeline.consolidation import consolidate
    from pipeline.render import report, template

    expected = rules.children(parent)
    subs = ledger.submissions()
    every = versions(ledger, as_of, subs=subs)
    c = consolidate.consolidate(rules, every, expected)
    codes = {u.code for u in expected}
    latest: dict[tuple[str, str], Submission] = {}
    for v in every:
        if v.unit in codes and ((v.unit, v.item) not in latest or v.version > latest[(v.unit, v.item)].version):
            latest[(v.unit, v.item)] = v
    by_sha = {s.sha256: s for s in subs}
    findings: dict[str, list[tuple[str, Finding]]] = {}
    for v in sorted(latest.values(), key=lambda v: (v.unit, v.item)):
        for f in by_sha[v.sha256].findings:
            findings.setdefault(v.unit, []).append((v.file, f))
    edition = len(ledger.editions()) + 1 if final else 0
    if final and as_of < rules.campaign.deadline:
        raise NotYetFinal(f"还没到截止时间({rules.campaign.deadline:%Y-%m-%d %H:%M}),只能生成草稿;去掉 --final 再运行")
    level = "" if parent == "province" else f"{rules.unit(parent).name}_"
    if final:
        folder = outbox / SUMMARY_DIR / f"{level}终稿第{edition}版"
        while folder.exists():  # never overwrite an edition, even one the ledger forgot
            edition += 1
            folder = outbox / SUMMARY_DIR / f"{level}终稿第{edition}版"
        suffix = f"(终稿第{edition}版)"
    else:
        folder, suffix = outbox / SUMMARY_DIR, "(草稿)"
    title = rules.campaign.title
    book = (aside or Aside()).workbook(rules, c, now, findings, every, as_of=as_of, final=final, edition=edition)
    # The report and the summary while the workbook is being built.
    paths = {
        folder / f"{level}{title}汇总表{suffix}.xlsx": b"",  # listed first, as before
        folder / f"{level}{title}情况报告{suffix}.html": report.html(
            rules, c, now, findings, as_of=as_of, final=final, edition=edition).encode("utf-8"),
        folder / f"{level}{title}总结(初稿){suffix}.md": report.summary_markdown(
            rules, c, now, as_of=as_of, final=final).encode("utf-8"),
    }

    def finish() -> Made:
        if parent != "province":
            unit = rules.unit(parent)
            form = rules.forms[rules.items["warmth"].form or "warmth"]
            values = consolidate.rollup_values(rules, parent, every, sign or {})
            paths[folder / template.file_name(unit, form)] = demo.fill(rules, form, unit, values)
        paths[folder / f"{level}{title}汇总表{suffix}.xlsx"] = book()
        return paths, edition, folder

    return finish


class Aside:
    """A second process that builds the consolidated workbook (1.4 s of the processor at 3,000 units) while
    this one writes the report and the summary. Started with `start` before it is needed, it loads its
    imports meanwhile; not started, or broken, the workbook is built here as before.

    A plain process and a pipe: it builds one workbook and ends, and leaves nothing for this process to
    wait for or clean up when it exits."""

    # Below this many units the workbook takes less than the second process's start (~1 s of the processor
    # and ~150 MiB for its imports): a province's run builds it here.
    UNITS = 500

    def __init__(self) -> None:
        self.conn: Any = None  # to the process, until it is given its one workbook
        self.given: list[Any] = []

    def start(self) -> None:
        import multiprocessing

        if self.conn is None and not self.given:
            context = multiprocessing.get_context("spawn")
            self.conn, theirs = context.Pipe()
            context.Process(target=_aside, args=(theirs,), name="pipeline-workbook", daemon=True).start()
            theirs.close()

    def workbook(self, rules: Rules, c: consolidate.Consolidation, now: status.Status, findings: dict[str, list[tuple[str, Finding]]],
                 every: list[Submission], **options: Any) -> Callable[[], bytes]:
        """`report.workbook`'s bytes, when called for."""
        import threading

        from pipeline.render import report

        if self.conn is None:
            data = report.workbook(rules, c, now, findings, every, **options)
            return lambda: data
        # The workbook lists the versions, not their figures: 17 MB less to send at 3,000 units.
        bare = [replace(v, values={}) for v in every]
        c = replace(c, used=tuple(replace(v, values={}) for v in c.used))
        failed: list[BaseException] = []
        conn, self.conn = self.conn, None  # one workbook for the process: another one is built here
        self.given.append(conn)

        def send() -> None:  # by a thread: the process may still be loading its imports
            try:
                conn.send((rules, c, now, findings, bare, options))
            except OSError as exc:
                failed.append(exc)

        sending = threading.Thread(target=send, daemon=True)
        sending.start()

        def result() -> bytes:
            sending.join()
            if not failed:
                try:
                    return bytes(conn.recv_bytes())
                except (EOFError, OSError):
                    pass
            # The process died (killed, out of memory): built here instead, the same bytes, nothing for the
            # user to do (for developers only, not on the user's screen).
            log.info("the workbook's process stopped; building it in this one")
            return report.workbook(rules, c, now, findings, bare, **options)

        return result

    def close(self) -> None:
        for conn in [self.conn, *self.given]:
            if conn is not None:
                conn.close()  # the process ends when it finds the pipe closed, whatever it was doing


def _aside(conn: Any) -> None:
    """The workbook's process (see `Aside`): loads report.py's imports, builds the workbook it is sent, ends
    (on any failure too, silently: this process then builds it and says why)."""
    try:
        from pipeline.render import report

        rules, c, now, findings, versions, options = conn.recv()
        conn.send_bytes(report.workbook(rules, c, now, findings, versions, **options))
    finally:
        os._exit(0)


# --- check -----------------------------------------------------------------------------------------------


class _Early:
    """Forms read and normalised by the children while intake keeps them, which they would otherwise wait
    for: `check` takes each batch as intake has read it, `results` gives them by (sha256, file name)."""

    def __init__(self, rules: Rules, as_of: dt.datetime):
        import queue

        self.rules, self.today = rules, as_of.date()
        self.todo: queue.SimpleQueue[list[tuple[str, bytes, str]] | None] = queue.SimpleQueue()
        self.done: dict[tuple[str, str], Checked] = {}
        self.worker: Any = None

    def check(self, files: list[tuple[str, bytes, str]]) -> None:
        import threading

        forms = [f for f in files if not _is_report(self.rules, f[2])]
        if self.worker is None:
            self.worker = threading.Thread(target=self._run, daemon=True)
            self.worker.start()
        self.todo.put(forms)

    def _run(self) -> None:
        from pipeline.io import sandbox

        limits = self.rules.limits
        while (files := self.todo.get()) is not None:
            try:
                checked = sandbox.check_many([(data, name) for _, data, name in files], self.rules.source,
                                             self.today, memory_mb=limits.worker_memory_mb,
                                             seconds=limits.worker_seconds)
            except Exception as exc:  # checked again by check_pending, which tells what went wrong
                log.info("early check of %d files failed: %r", len(files), exc)
                continue
            self.done.update(((sha, name), c) for (sha, _, name), c in zip(files, checked, strict=True))

    def results(self) -> dict[tuple[str, str], Checked]:
        if self.worker is not None:
            self.todo.put(None)
            self.worker.join()
        return self.done


def check_pending(rules: Rules, ledger: Ledger, as_of: dt.datetime, parent: str = "province",
                  progress: Progress | None = None, read: Callable[[], None] | None = None,
                  early: Mapping[tuple[str, str], Checked] | None = None) -> Counter[str]:
    """Check every submission without a verdict, all forms of the batch in one validation; `read` is called
    once the children have read the forms, before the validation in this process. `early`: forms already
    read and normalised, by (sha256, file name)."""
    pending = ledger.unchecked()
    if not pending:
        return Counter()
    import importlib
    import threading

    from pipeline.io import sandbox

    # pandas and pandera (0.55 s of the processor) load while the children read, when this process has
    # little else to do; during intake they held up its own work.
    loading = threading.Thread(target=importlib.import_module, args=("pipeline.checks.validate",), daemon=True)
    loading.start()

    early = early or {}
    results = [(sub.sha256, _report_fields(rules, sub)) for sub in pending if _is_report(rules, sub.file)]
    others = [sub for sub in pending if not _is_report(rules, sub.file)]
    todo = [sub for sub in others if (sub.sha256, sub.file) not in early]
    kept = ledger.kept_bytes([sub.sha256 for sub in todo])
    results += [(sub.sha256, _too_large(sub, rules)) for sub in todo if sub.sha256 not in kept]
    forms = [sub for sub in others if (sub.sha256, sub.file) in early or sub.sha256 in kept]
    fresh = iter(sandbox.check_many(
        [(kept[sub.sha256], sub.file) for sub in todo if sub.sha256 in kept], rules.source,
        as_of.date(), memory_mb=rules.limits.worker_memory_mb, seconds=rules.limits.worker_seconds,
        progress=(lambda i, n: progress("读取", i, n)) if progress else None,
    ))
    prepared = [early.get((sub.sha256, sub.file)) or next(fresh) for sub in forms]
    sandbox.warm_kept("annotate")  # the children would otherwise sit idle until the copies to mark come
    if read:
        read()
    loading.join()
    from pipeline.checks import validate

    _keep_aside()
    companions = _companions(rules, ledger, [c.read for c in prepared], {s.sha256 for s in pending}, as_of)
    checked = validate.validate(prepared + companions, rules)[: len(prepared)]
    for sub, c in zip(forms, checked, strict=True):
        results.append((sub.sha256, _form_fields(rules, c, parent)))
    ledger.record_checks(results)
    return Counter(fields["verdict"] for _, fields in results)


def _is_report(rules: Rules, name: str) -> bool:
    """Whether a file is a written report (by its extension), not a form to read."""
    return Path(name).suffix.lower() in {ext for item in rules.items.values() for ext in item.extensions}


def _report_fields(rules: Rules, sub: Submission) -> dict[str, Any]:
    """A written report is only recorded as received, from the unit its file name names."""
    unit = _unit_from_name(rules, sub.file)
    item = next((i.code for i in rules.items.values() if i.form is None), REPORT)
    findings = [] if unit else [Finding(
        F_UNRECOGNISED, Severity.ERROR, f"无法从文件名“{sub.file}”识别报送单位:请在文件名中写明单位名称,如“海口市总工会送温暖报告.docx”",
    )]
    return dict(kind="report", unit=unit, item=item if unit else None, form=None,
                verdict="received" if unit else Verdict.UNREADABLE, findings=findings)


def _unit_from_name(rules: Rules, name: str) -> str | None:
    names = sorted(((alias, u.code) for u in rules.units for alias in (u.name, *u.aliases)), key=lambda p: -len(p[0]))
    return next((code for alias, code in names if alias in name), None)


def _too_large(sub: Submission, rules: Rules) -> dict[str, Any]:
    finding = Finding(F_TOO_LARGE, Severity.ERROR, f"文件过大({sub.size / 1_048_576:.1f} MB,超过 {rules.limits.max_file_mb:g} MB "
                      "的上限),不像是一张统计表,未予读取")
    return dict(kind="unknown", unit=None, item=None, form=None, verdict=Verdict.UNREADABLE, findings=[finding])


def _form_fields(rules: Rules, c: Report, parent: str) -> dict[str, Any]:
    sub = c.read
    findings = list(c.findings)
    item = rules.item_for_form(sub.form).code if sub.form else None
    unit = rules.unit(sub.unit) if sub.unit and rules.has_unit(sub.unit) else None
    if unit is not None and unit.reports_to != parent and unit.code != parent:
        above = rules.unit(unit.reports_to).name if unit.reports_to != "province" else rules.campaign.issuer
        findings.append(Finding(
            F_IDENTITY, Severity.WARNING,
            f"{unit.name}应向{above}报送,由其汇总上报;本表报错了地方,不计入本级汇总",
        ))
    note = c.values.get(("sign", "", "note"))
    return dict(
        kind="form" if sub.form else "unknown", unit=sub.unit, item=item, form=sub.form, verdict=c.verdict,
        findings=findings, values=c.values if c.verdict == Verdict.ACCEPTED else {},
        explained=bool(note and str(note).strip()),
    )


def _companions(rules: Rules, ledger: Ledger, reads: Sequence[Read], new: set[str],
                as_of: dt.datetime) -> list[Checked]:
    """For cross-form rules: the unit's other form already in the ledger, read again to check against.

    Archived bytes are as untrusted as new ones, so they are read in the sandbox too.
    """
    from pipeline.io import sandbox

    cross = {f for r in rules.rules if len(r.forms) > 1 for f in r.forms}
    found = []
    arriving = {(s.unit, s.form) for s in reads}
    for unit, form in sorted((u, f) for u, f in arriving if u and f and f in cross):
        for other in sorted(cross - {form}):
            if (unit, other) in arriving:
                continue
            latest = ledger.latest(unit, rules.item_for_form(other).code)
            if latest is not None and latest.sha256 not in new:
                found.append(latest)
    kept = ledger.kept_bytes([sub.sha256 for sub in found])
    wanted = [(kept[sub.sha256], sub.file) for sub in found if sub.sha256 in kept]
    return sandbox.check_many(wanted, rules.source, as_of.date(), memory_mb=rules.limits.worker_memory_mb,
                              seconds=rules.limits.worker_seconds)


# --- feedback --------------------------------------------------------------------------------------------


def feedback(rules: Rules, ledger: Ledger, outbox: Path, as_of: dt.datetime, send: bool, parent: str = "province",
             progress: Progress | None = None, password: str | None = None,
             meanwhile: Callable[[], Callable[[], None]] | None = None) -> Counter[str]:
    """An annotated workbook and a message for the latest version of each unit's item that has findings.

    `meanwhile` is called when there is anything to annotate, before the children start; what it returns
    is called while they annotate and write the e-mails."""
    known = {u.code: u for u in rules.units}
    latest: dict[tuple[str, str], Submission] = {}
    for sub in ledger.submissions(values=False):
        if sub.kind == "form" and sub.unit in known and sub.item and sub.verdict:
            key = (sub.unit, sub.item)
            if key not in latest or (sub.version or 0) > (latest[key].version or 0):
                latest[key] = sub
    unsent = []
    for sub in sorted(latest.values(), key=lambda s: (s.unit or "", s.item or "")):
        if not sub.findings:
            continue
        unit = known[sub.unit or ""]
        msg_key = _message_key("feedback", sub.sha256, unit.email)
        if ledger.message(msg_key) is None:
            unsent.append((sub, unit, msg_key))
    kept = ledger.kept_bytes([sub.sha256 for sub, _, _ in unsent])  # not those over the size limit
    due = [(sub, unit, msg_key) for sub, unit, msg_key in unsent if sub.sha256 in kept]
    if due:
        from pipeline.render import mail

        names = [f"{_safe(Path(sub.file).stem)}_校验结果.xlsx" for sub, _, _ in due]  # also the attachments'
        letters = [dict(unit=unit, file_name=sub.file, verdict=sub.verdict or "", findings=sub.findings, now=as_of,
                        version=sub.version or 1, item=sub.item, attachment_name=name)
                   for (sub, unit, _), name in zip(due, names, strict=True)]
        jobs = [(kept[sub.sha256], sub.file, sub.findings, unit.name,
                 f"{unit.name} {rules.forms[sub.form or ''].title} 校验结果", letter)
                for (sub, unit, _), letter in zip(due, letters, strict=True)]
        def write(i: int, got: bytes | tuple[bytes, bytes, str]) -> tuple[str, str, str, str, str, str, str]:
            # As each copy comes back, while the children go on with the others.
            (sub, unit, msg_key), name = due[i], names[i]
            if isinstance(got, bytes):  # the child gave up: its findings listed here, and the e-mail written here
                got = (got, *mail.feedback_eml(rules, letters[i], got))
            annotated, eml_bytes, subject = got
            atomic.write_bytes(_inside(outbox, FEEDBACK_DIR, _safe(unit.name), name), annotated, durable=False)
            eml = _inside(outbox, MAIL_DIR, f"{_safe(unit.name)}_反馈_{msg_key[-12:]}.eml")
            atomic.write_bytes(eml, eml_bytes, durable=False)
            return msg_key, "feedback", unit.code, unit.email, sub.sha256, subject, eml.relative_to(outbox).as_posix()

        written = annotate_many(jobs, rules, progress, meanwhile() if meanwhile else None, write)
        # Made durable together, then recorded together (a crash in between: the next run writes them again).
        atomic.sync(outbox)
        ledger.add_messages(written, as_of)
    return deliver(rules, ledger, outbox, as_of, send, password)


def annotate_many(jobs: Sequence[tuple[Any, ...]], rules: Rules, progress: Progress | None = None,
                  meanwhile: Callable[[], None] | None = None,
                  each: Callable[[int, bytes | tuple[bytes, bytes, str]], Any] | None = None) -> list[Any]:
    """Each unit's own workbook marked with its findings: (data, file name, findings, unit name, title[, letter]),
    with a letter also the e-mail that carries it (see `sandbox.annotate_many`).

    openpyxl opens the unit's whole workbook, so this runs in the sandbox's limited children, on both
    cores; a workbook that exhausts one gets a copy that only lists the findings, and no e-mail yet. The
    calling thread runs `meanwhile` as the children work; `each(i, answer)`, applied to each answer as it
    comes back, gives what is returned instead.
    """
    import threading

    from pipeline.io import sandbox
    from pipeline.render import annotate

    def answer(i: int, got: bytes | tuple[bytes, bytes, str] | None) -> Any:
        if got is None:
            _, name, findings, unit, title, *_ = jobs[i]
            got = annotate.findings_only(name, findings, unit_name=unit, title=title)
        return each(i, got) if each else got

    got: list[list[Any] | BaseException] = []

    def annotate_all() -> None:
        try:
            got.append(sandbox.annotate_many(
                jobs, rules.source, memory_mb=rules.limits.worker_memory_mb, seconds=rules.limits.worker_seconds,
                progress=(lambda i, n: progress("标注", i, n)) if progress else None, each=answer,
            ))
        except BaseException as exc:  # handed to the calling thread
            got.append(exc)

    worker = threading.Thread(target=annotate_all)
    worker.start()
    try:
        if meanwhile:
            meanwhile()
    finally:
        worker.join()
    (marked,) = got
    if isinstance(marked, BaseException):
        raise marked
    return marked


def deliver(rules: Rules, ledger: Ledger, outbox: Path, as_of: dt.datetime, send: bool,
            password: str | None = None) -> Counter[str]:
    """Send what is due once: written or temporarily failed messages; a send cut short becomes unknown."""
    from email import message_from_bytes, policy

    from pipeline.render import mail

    counts: Counter[str] = Counter()
    for row in ledger.messages(("sending",)):
        # The previous run died while talking to the server: the message may have gone. Staff decide.
        ledger.set_message(row["key"], "unknown", as_of, detail="上次发送时中断,无法确定是否已送达")
    pending = [row["key"] for row in ledger.messages(("pending",))]
    if pending:
        ledger.set_messages(pending, "written", as_of)
        if not send:
            counts["written"] += len(pending)  # with --send, what counts is how the sending went
    if not send:
        return counts
    for row in ledger.messages(("written", "tempfail")):
        message = message_from_bytes((outbox / row["eml"]).read_bytes(), policy=policy.SMTP)
        ledger.set_message(row["key"], "sending", as_of)
        outcomes = mail.send(rules.mail, message, password=password)
        outcome = next((o for o in outcomes if o.recipient == row["recipient"]), outcomes[0])
        ledger.set_message(row["key"], outcome.status, as_of, outcome.code, outcome.detail, attempt=True)
        counts[outcome.status] += 1
    return counts


def remind(rules: Rules, state: Path, outbox: Path, as_of: dt.datetime, send: bool, parent: str = "province",
           password: str | None = None) -> list[str]:
    """Remind units whose items are missing or still rejected; once per unit and day."""
    from pipeline.render import mail

    with locked(state):
        ledger = Ledger(state)
        try:
            now = current_status(rules, ledger, as_of, parent)
            owing: dict[str, list[tuple[str, str]]] = {}
            for row in now.rows:
                if row.state in (status.MISSING, status.OVERDUE, status.FAILED):
                    owing.setdefault(row.unit, []).append((row.item_label, row.state))
            reminded = []
            for code, items in owing.items():
                unit = rules.unit(code)
                key = _message_key("reminder", f"{code}:{as_of.date().isoformat()}", unit.email)
                if ledger.message(key) is not None:
                    continue
                message = mail.reminder_message(rules, unit, items=items, now=as_of)
                eml = _inside(outbox, MAIL_DIR, f"{_safe(unit.name)}_催报_{as_of:%Y%m%d}.eml")
                atomic.write_bytes(eml, mail.write_eml(message))
                ledger.add_message(key, "reminder", code, unit.email, None, str(message["Subject"]),
                                   eml.relative_to(outbox).as_posix(), as_of)
                reminded.append(unit.name)
            deliver(rules, ledger, outbox, as_of, send, password)
            return reminded
        finally:
            ledger.close()


def _message_key(kind: str, subject: str, recipient: str) -> str:
    return f"{kind}:{hashlib.sha256(f'{subject}|{recipient}'.encode()).hexdigest()[:24]}"


# --- status ----------------------------------------------------------------------------------------------


def versions(ledger: Ledger, as_of: dt.datetime, values: bool = True,
             subs: Sequence[Submission] | None = None) -> list[Submission]:
    """Every checked submission received by `as_of`, as the status and the consolidation see it (the
    status needs no figures: `values=False` leaves them out; `subs`: the ledger's, already loaded)."""
    return [s for s in (subs if subs is not None else ledger.submissions(values=values))
            if s.unit and s.item and s.verdict and s.received <= as_of]


def current_status(rules: Rules, ledger: Ledger, as_of: dt.datetime, parent: str = "province") -> status.Status:
    problems: dict[str, str] = {}
    for row in ledger.messages(("refused", "unknown")):
        word = "邮件被拒收" if row["status"] == "refused" else "邮件是否送达不明"
        problems[row["unit"]] = f"{word}({row['recipient']}{':' + str(row['code']) if row['code'] else ''})"
    return status.compute(rules, versions(ledger, as_of, values=False), as_of, parent, problems)


def write_status(rules: Rules, now: status.Status, outbox: Path) -> list[Path]:
    import json

    text, data = outbox / STATUS_TXT, outbox / STATUS_JSON
    atomic.write_text(text, status.render_text(now, rules) + "\n")
    atomic.write_text(data, json.dumps(now.as_json(), ensure_ascii=False, indent=2) + "\n")
    return [text, data]


# --- names in the outbox ----------------------------------------------------------------------------------


def _safe(name: str, limit: int = 200) -> str:
    """A file name derived from user input that cannot leave its folder or upset a file system.

    Separators, the characters Windows refuses and control characters become _; invisible and
    direction-changing characters are dropped (U+202E would show 表_\u202exslx.exe as 表_exe.xlsx). The name
    is cut to `limit` bytes of UTF-8, keeping its extension: file systems count bytes (255 on Linux), and
    the default leaves room for what callers append (_校验结果.xlsx).
    """
    kept = []
    for ch in name:
        category = unicodedata.category(ch)
        if category != "Cf":  # format characters: bidi overrides, zero-width spaces and joiners, BOM
            kept.append("_" if ch in '\\/:*?"<>|' or category in ("Cc", "Cs", "Zl", "Zp") else ch)
    cleaned = "".join(kept).strip(" .") or "未命名"
    if len(cleaned.encode("utf-8")) > limit:
        suffix = Path(cleaned).suffix
        suffix = suffix if len(suffix.encode("utf-8")) <= 16 else ""
        stem = cleaned[: len(cleaned) - len(suffix)].encode("utf-8")[: limit - len(suffix.encode("utf-8"))]
        cleaned = (stem.decode("utf-8", "ignore").rstrip(" .") or "未命名") + suffix
    return cleaned


def _inside(outbox: Path, *parts: str) -> Path:
    path = outbox.joinpath(*parts)
    if os.path.commonpath([outbox.resolve(), path.resolve()]) != str(outbox.resolve()):
        raise ValueError(f"路径越出输出目录:{path}")
    return path
