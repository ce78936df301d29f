"""Errors whose messages say how to fix the problem. Caught only at the edges (CLI, app)."""


class PsyqaError(Exception):
    """Base class: the message is shown to the user as is."""


class SettingsError(PsyqaError):
    """A PSYQA_* variable (or .env line) has a value the settings cannot take."""


class IndexEmptyError(PsyqaError):
    """No index yet."""


class IndexMismatchError(PsyqaError):
    """The index was built with another model or chunking."""


class IndexDamagedError(PsyqaError):
    """The stored index cannot be trusted (unreadable files, counts that contradict its metadata);
    the message names the path and says to run 'psyqa ingest --rebuild'. `what` is the damage
    alone (where and what), `aside` where a rebuild keeps the damaged store."""

    what: str = ""
    aside: str = ""


class StoreUnavailableError(PsyqaError):
    """The Chroma server cannot be reached."""


class IngestBusyError(PsyqaError):
    """Another ingest holds the lock."""


class DocumentError(PsyqaError):
    """One corpus file cannot be indexed; the message names file, problem and fix."""

    def __init__(self, path: str, problem: str, fix: str) -> None:
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path}: {problem}; {fix}")
