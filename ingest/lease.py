"""The ingest lease (server mode): one `psyqa ingest` at a time writes a collection on a Chroma server.

The file lock under the index folder keeps two ingests of one machine apart; ingests from two
machines (two data folders) against one server meet only in the server. So an ingest records that
it is in progress in the collection metadata (`index.LEASE_KEYS`: host, pid, start time, a
heartbeat it renews every `ingest_lease_s / 4` seconds, and a random token), and another ingest
refuses while that record is fresh. A record whose heartbeat is older than `ingest_lease_s` (or
whose pid is gone, when it names this host) belongs to a crashed ingest and is taken over: the
next run's plan repairs whatever the crashed one half-wrote, as after any kill.

Reading the record and writing one's own must not interleave with another ingest doing the same,
and Chroma has no compare-and-set on metadata; creating a collection is atomic, though (a second
create of the same name fails). So the read-and-write happens while holding a short-lived claim
collection `<name>__claim`, deleted right after (one left by a process killed in those
milliseconds is broken after `CLAIM_STALE_S`).

Taken over while still alive (its heartbeat stalled longer than the lease): the heartbeat notices
another token and every later write batch and the commit stop (`fence`), so the stalled run never
commits over the one that took over.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from assistant import index, store
from assistant.errors import IngestBusyError
from assistant.settings import Settings

CLAIM_SUFFIX = "__claim"
CLAIM_STALE_S = 30.0
CLAIM_WAIT_S = 15.0


def _host() -> str:
    return socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def is_stale(record: dict, settings: Settings, now: float | None = None) -> bool:
    """Whether the lease `record` belongs to an ingest that stopped without finishing."""
    now = time.time() if now is None else now
    try:
        pid, beat = int(record.get("ingest_pid") or 0), float(record.get("ingest_heartbeat") or 0)
    except (TypeError, ValueError):
        return True
    if record.get("ingest_host") == _host() and pid and not _pid_alive(pid):
        return True
    return now - beat > settings.ingest_lease_s


def describe(record: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    try:
        age = f"{max(0.0, now - float(record.get('ingest_heartbeat') or 0)):.0f} s ago"
    except (TypeError, ValueError):
        age = "unknown"
    return (f"host {record.get('ingest_host')}, pid {record.get('ingest_pid')}, started "
            f"{record.get('ingest_started')}, last heartbeat {age}")


class Lease:
    """This run's lease on one collection of a Chroma server; `acquire` makes one."""

    def __init__(self, client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.token = uuid.uuid4().hex
        self.host, self.pid, self.started = _host(), os.getpid(), index.now()
        self.took_over: dict | None = None      # the stale record this run replaced
        self.lost: dict | None = None           # the record that replaced ours
        self.lock = threading.Lock()            # metadata writes of this process, one at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def fields(self) -> dict:
        """The lease record as collection metadata, with a fresh heartbeat."""
        return {"ingest_host": self.host, "ingest_pid": self.pid, "ingest_started": self.started,
                "ingest_heartbeat": time.time(), "ingest_token": self.token}

    def _live(self):
        return store.get_collection(self.client, self.settings.collection)

    def _write(self, col, meta: dict) -> None:
        meta = dict(meta)
        meta.pop("hnsw:space", None)  # fixed at creation; Chroma refuses to modify it
        col.modify(metadata=meta)

    def beat(self) -> None:
        """Renew the heartbeat, or notice that another ingest took the lease over."""
        with self.lock:
            col = self._live()
            if col is None:
                return  # between a --rebuild's delete and rename; the commit carries the lease
            record = index.lease_of(col.metadata)
            if record is None or record.get("ingest_token") != self.token:
                self.lost = record or {}
                return
            self._write(col, dict(col.metadata or {}) | self.fields())

    def fence(self) -> None:
        """Stop (before a write batch or the commit) when the lease was taken over."""
        if self.lost is not None:
            raise self._lost_error()

    def confirm(self) -> None:
        """Read the record from the server now (right before the commit) and fence on it."""
        col = self._live()
        record = index.lease_of(col.metadata) if col is not None else None
        if record is not None and record.get("ingest_token") != self.token:
            self.lost = record
        self.fence()

    def _lost_error(self) -> IngestBusyError:
        who = describe(self.lost) if self.lost else "someone (the record was removed)"
        return IngestBusyError(
            f"This ingest's lease on {store.where_is(self.settings)} (collection "
            f"'{self.settings.collection}') was taken over by another ingest ({who}) while its "
            f"heartbeat was stalled for more than {self.settings.ingest_lease_s:.0f} s; nothing "
            "more was written and nothing was committed. Run 'psyqa ingest' again when that one "
            "has finished.")

    def start(self) -> None:
        interval = max(0.5, self.settings.ingest_lease_s / 4)

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.beat()
                except Exception:  # noqa: BLE001 - the server is down or busy: try again
                    pass
                if self.lost is not None:
                    return

        self._thread = threading.Thread(target=run, daemon=True, name="psyqa-ingest-lease")
        self._thread.start()

    def release(self) -> None:
        """Remove the record (when it is still ours); a server that is down keeps it, and the
        next run takes it over once it is stale."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self.lock, contextlib.suppress(Exception):
            col = self._live()
            if col is not None and (index.lease_of(col.metadata) or {}).get("ingest_token") == self.token:
                self._write(col, index.without_lease(col.metadata))


def acquire(client, settings: Settings) -> Lease:
    """Record this run's lease in the collection (created when missing), or refuse with
    IngestBusyError while another ingest's record is fresh. Starts the heartbeat."""
    lease = Lease(client, settings)
    with _claim(client, settings, lease.token):
        col = store.get_collection(client, settings.collection)
        if col is None:
            try:
                col = store.create_collection(client, settings.collection, settings)
            except Exception:  # noqa: BLE001 - created meanwhile by a reader-less path: read it
                col = store.get_collection(client, settings.collection)
                if col is None:
                    raise
        record = index.lease_of(col.metadata)
        if record is not None and record.get("ingest_token"):
            if not is_stale(record, settings):
                raise IngestBusyError(
                    f"Another 'psyqa ingest' is writing to {store.where_is(settings)} (collection "
                    f"'{settings.collection}'): {describe(record)}. Wait for it to finish, then run "
                    "again (a run that stopped without finishing is taken over once its heartbeat "
                    f"is {settings.ingest_lease_s:.0f} s old).")
            lease.took_over = record
        lease._write(col, dict(col.metadata or {}) | lease.fields())
    lease.start()
    return lease


@contextlib.contextmanager
def _claim(client, settings: Settings, token: str):
    """Hold `<collection>__claim` (an atomic create) while reading and writing the record."""
    name = settings.collection + CLAIM_SUFFIX
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        try:
            client.create_collection(name, metadata={"token": token, "created": time.time(),
                                                     "host": _host(), "pid": os.getpid()})
            break
        except Exception as exc:  # noqa: BLE001 - Chroma raises InternalError or UniqueConstraintError
            if "exist" not in str(exc).lower():
                raise
        held = store.get_collection(client, name)
        if held is not None and time.time() - float((held.metadata or {}).get("created", 0)) > CLAIM_STALE_S:
            with contextlib.suppress(Exception):
                client.delete_collection(name)  # left by a process killed while holding it
            continue
        if time.monotonic() > deadline:
            raise IngestBusyError(
                f"Another 'psyqa ingest' is starting against {store.where_is(settings)} (it holds "
                f"'{name}'). Run again in a moment.")
        time.sleep(0.2)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.delete_collection(name)
