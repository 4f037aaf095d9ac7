"""The library's face: a campaign and one level's folders, and everything the `pipeline` command does,
callable from Python (a test, a notebook, another program) without the command line.

    from pipeline import Campaign
    campaign = Campaign.load("rules.yaml")
    result = campaign.run(as_of="2017-02-01T12:00")
    print(campaign.status().as_json())
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.campaign.config import PROVINCE, Rules
from pipeline.io.workspace import Folders, Workspace, find
from pipeline.runs.context import Options, Progress, RunResult, moment

if TYPE_CHECKING:
    from pipeline.consolidation.consolidate import Consolidation
    from pipeline.consolidation.status import Status
    from pipeline.demo import DemoInbox
    from pipeline.model import Submission
    from pipeline.runs.check import FileResult
    from pipeline.runs.fetching import Fetched
    from pipeline.runs.watch import Round


PROJECT = Path(__file__).resolve().parent.parent  # the checkout, whose rules.yaml is the demo campaign


@dataclass
class Campaign:
    """A loaded rules.yaml, and the folders of the level it is run for (the province, or a unit such as ZX
    that consolidates the units below it)."""

    rules: Rules
    folders: Folders = field(default_factory=lambda: Folders(Path("inbox"), Path("outbox"), Path("state")))
    level: str = PROVINCE

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        workspace: Path | None = None,
        inbox: Path | None = None,
        outbox: Path | None = None,
        state: Path | None = None,
        level: str = PROVINCE,
    ) -> Campaign:
        """Load a campaign: its rules.yaml, its rules compiled (`ConfigError` names the YAML path of a
        mistake), and the level's folders under the campaign folder (see io/workspace.py: `workspace`,
        else $PIPELINE_HOME, else the folder of `path`, else the current folder when it holds a rules.yaml,
        else the checkout's demo campaign). Folders given explicitly win."""
        from pipeline import checks
        from pipeline.model import Refused

        place = find(workspace, Path(path) if path is not None else None, project=PROJECT)
        rules = checks.load(place.rules)
        if level != PROVINCE:
            found = rules.find_unit(level)
            if found is None or not rules.children(found.code):
                codes = "、".join(f"{u.code}({u.name})" for u in rules.units if rules.children(u.code))
                raise Refused(f"--for {level}:不是有下属报送单位的单位;可用:{codes}")
            level = found.code
        return cls(rules, place.folders(level, inbox=inbox, outbox=outbox, state=state), level)

    def _has_ledger(self) -> None:
        """Commands that only read the ledger say so when there is none yet, and create nothing."""
        from pipeline.io import ledger
        from pipeline.model import Refused

        state = self.folders.state
        if not (state / ledger.FILE).exists() and not ledger.backups(state):
            raise Refused(
                f"{state} 中还没有台账:本级还没有运行过 pipeline run"
                "(或者不在活动文件夹中:请用 --workspace 指明活动文件夹)"
            )

    @property
    def workspace(self) -> Workspace:
        return Workspace(Path(self.rules.source).resolve().parent, Path(self.rules.source).resolve())

    def moment(self, when: str | dt.datetime | None = None) -> dt.datetime:
        """A moment in the campaign's time zone: the clock, an ISO text, or a datetime."""
        if isinstance(when, dt.datetime):
            return when if when.tzinfo else when.replace(tzinfo=self.rules.campaign.tz)
        return moment(when, self.rules)

    def templates(self, out: Path, unit: str | None = None) -> Iterable[Path]:
        """Each unit's blank templates (or one unit's), written into `out` as they are made."""
        from pipeline.runs import templates

        return templates.write_all(self.rules, out, unit)

    def demo(self, inbox: Path | None = None, seed: int = 2017) -> DemoInbox:
        """A demo inbox filled the way units fill their forms, mistakes included; and last year's consolidated
        workbook where rules.yaml names one (`consolidation.previous`) and the demo declares it."""
        from pipeline import demo
        from pipeline.io import atomic, previous

        target = inbox or self.folders.inbox
        made = demo.make(self.rules, target, seed)
        path = previous.path_of(self.rules)
        # Last year's workbook goes beside rules.yaml, so only when the demo fills this campaign folder's own
        # inbox: a demo inbox elsewhere (a test's, a trial's) leaves the campaign as it was.
        if path is not None and Path(target).resolve().is_relative_to(
            Path(self.rules.source).resolve().parent
        ):
            last = demo.previous_year(self.rules, made)
            if last is not None:
                atomic.write_bytes(path, last)
                made.previous = path
        return made

    def check(self, paths: Sequence[Path], *, isolated: bool = True) -> list[FileResult]:
        """Check files as one batch; `isolated` reads each in a limited worker process."""
        from pipeline.runs import check

        return check.check_paths(paths, self.rules, isolated=isolated)

    def run(
        self,
        as_of: str | dt.datetime | None = None,
        *,
        send: bool = False,
        final: bool = False,
        password: str | None = None,
        sign: dict[str, object] | None = None,
        allow_missing: str = "",
        progress: Progress | None = None,
        fetch: bool = False,
        imap_password: str | None = None,
    ) -> RunResult:
        """The weekly run (raises `RunLocked` when another holds the lock, `NotYetFinal` for --final before
        the deadline); with `fetch`, the campaign mailbox is fetched first."""
        from pipeline.runs import weekly

        when = self.moment(as_of)
        options = Options(
            send=send,
            final=final,
            password=password,
            sign=dict(sign or {}),
            allow_missing=allow_missing,
            fetch=fetch,
            imap_password=imap_password,
        )
        return weekly.run(
            self.rules, self.folders, when, level=self.level, options=options, progress=progress
        )

    def fetch(
        self,
        as_of: str | dt.datetime | None = None,
        *,
        send: bool = False,
        password: str | None = None,
        imap_password: str | None = None,
    ) -> tuple[Fetched, Counter[str]]:
        """Take what is new in the campaign mailbox into the inbox (raises `imap.MailboxError` when it cannot
        be read); the notices it calls for are written, and sent with `send`. What was taken, and how the
        sending went."""
        from pipeline.runs import fetching
        from pipeline.runs.context import opened
        from pipeline.runs.delivery import deliver

        options = Options(send=send, password=password, imap_password=imap_password)
        with opened(self.rules, self.folders, self.moment(as_of), self.level, options) as run:
            got = fetching.fetch(run, imap_password)
            return got, deliver(run)

    def watch(
        self,
        stop: threading.Event,
        *,
        send: bool = False,
        password: str | None = None,
        imap_password: str | None = None,
        report: Callable[[str], None] = print,
        rounds: Callable[[Round], None] | None = None,
    ) -> None:
        """Answer the campaign mailbox as messages arrive, until `stop` is set (see runs/watch.py)."""
        from pipeline.runs import watch

        options = Options(send=send, password=password, imap_password=imap_password)
        watch.watch(self.rules, self.folders, options, stop, level=self.level, report=report, rounds=rounds)

    def held(self) -> list[Any]:
        """The files held as 待确认 (mailed from an address not on file for their unit), as rows."""
        from pipeline.io import mailbook
        from pipeline.io.ledger import Ledger

        book = Ledger(self.folders.state)
        try:
            return mailbook.held(book)
        finally:
            book.close()

    def confirm(self, keys: Sequence[str]) -> list[Any]:
        """Staff's word that held files come from their unit: counted from now on (`keys`: the start of each
        one's number as `held` gives it). Returns the rows confirmed."""
        from pipeline.runs import senders
        from pipeline.runs.context import opened

        with opened(self.rules, self.folders, self.moment(), self.level) as run:
            return senders.confirm(run, keys)

    def send_templates(
        self,
        unit: str | None = None,
        as_of: str | dt.datetime | None = None,
        *,
        send: bool = False,
        password: str | None = None,
    ) -> tuple[list[str], Counter[str]]:
        """Each unit its own blank templates by e-mail, once per template version; the units written to,
        and how the sending went."""
        from pipeline.runs import templates
        from pipeline.runs.context import opened

        options = Options(send=send, password=password)
        with opened(self.rules, self.folders, self.moment(as_of), self.level, options) as run:
            return templates.mail_all(run, unit)

    def accept(self, unit: str, item: str, reason: str, *, by: str | None = None) -> Submission:
        """Staff accept the unit's latest version of `item` despite its errors (省总接受): its figures are
        consolidated, marked with `reason`. `unit`: a code, name or alias; `by`: who (else the OS user)."""
        from pipeline.model import ACCEPT

        return self._review(unit, item, ACCEPT, reason, by)

    def return_(self, unit: str, item: str, reason: str, *, by: str | None = None) -> Submission:
        """Staff return the unit's latest version of `item` although it was usable (退回): its figures are
        no longer consolidated."""
        from pipeline.model import RETURN

        return self._review(unit, item, RETURN, reason, by)

    def _review(self, unit: str, item: str, action: str, reason: str, by: str | None) -> Submission:
        from pipeline.runs import reviews
        from pipeline.runs.context import opened

        self._has_ledger()
        with opened(self.rules, self.folders, self.moment(), self.level) as run:
            return reviews.decide(run, unit, item, action, reason, by)

    def status(self, as_of: str | dt.datetime | None = None) -> Status:
        from pipeline.runs import reporting
        from pipeline.runs.context import opened

        self._has_ledger()
        with opened(self.rules, self.folders, self.moment(as_of), self.level, lock=False) as run:
            return reporting.current_status(run)

    def remind(
        self, as_of: str | dt.datetime | None = None, *, send: bool = False, password: str | None = None
    ) -> list[str]:
        """Reminders to the units still owing an item (once per unit and day); the names of those reminded."""
        from pipeline.runs import feedback
        from pipeline.runs.context import opened

        options = Options(send=send, password=password)
        with opened(self.rules, self.folders, self.moment(as_of), self.level, options) as run:
            return feedback.remind(run)

    def consolidate(self, as_of: str | dt.datetime | None = None) -> Consolidation:
        """The consolidated tables (pandas DataFrames) of the level as its ledger stands."""
        from pipeline.consolidation import consolidate, history
        from pipeline.runs.context import opened

        with opened(self.rules, self.folders, self.moment(as_of), self.level, lock=False) as run:
            every = history.checked_by(run.ledger.submissions(), run.as_of)
            return consolidate.consolidate(self.rules, every, self.rules.children(self.level))

    def messages(self, statuses: tuple[str, ...] | None = None) -> list[Any]:
        """The e-mails the ledger holds (those in `statuses` only, if given), as rows."""
        from pipeline.io.ledger import Ledger

        self._has_ledger()
        book = Ledger(self.folders.state, level=self.level)
        try:
            return book.messages(statuses)
        finally:
            book.close()

    def resolve_message(self, key: str, *, sent: bool) -> str:
        """Staff's word on a message whose delivery is unknown: it arrived (`sent`), or it is to be sent again.
        `key` may be the start of the number `pipeline mail --unknown` shows. Returns its subject."""
        from pipeline.model import MessageStatus, Refused
        from pipeline.runs.context import opened

        with opened(self.rules, self.folders, self.moment(), self.level) as run:
            found = [
                r
                for r in run.ledger.messages((MessageStatus.UNKNOWN,))
                if r["key"] == key or r["key"].split(":")[-1].startswith(key)
            ]
            if len(found) != 1:
                raise Refused(
                    f"送达不明的邮件中{'没有' if not found else '有多封'}编号为 {key} 的邮件;"
                    "请用 pipeline mail --unknown 查看编号"
                )
            status, detail = (
                (MessageStatus.SENT, "工作人员确认已送达")
                if sent
                else (MessageStatus.TEMPFAIL, "工作人员确认未送达,下次 --send 时重发")
            )
            run.ledger.set_message(found[0]["key"], status, run.as_of, detail=detail)
            return str(found[0]["subject"])

    def rebuild(self) -> Path:
        """The ledger restored from its newest sound automatic backup; returns the backup used."""
        from pipeline.io import ledger

        return ledger.restore(self.folders.state)

    def verify(self) -> tuple[int, list[str]]:
        """Every kept file hashed again against the ledger: how many were checked, and each difference."""
        from pipeline.io.ledger import Ledger

        self._has_ledger()
        book = Ledger(self.folders.state, level=self.level)
        try:
            return len(book.submissions()), book.verify()
        finally:
            book.close()
