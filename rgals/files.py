"""Writing files without losing any: atomic writes and the checks before them.

Every file is written to a temporary name beside its target (`.NAME.XXXXXXXX.tmp`) and
renamed into place, with the mode an ordinary `open()` gives (0666 less the umask). A
group of files that belong together (a saved model) is written by `write_together`, with
a marker renamed into place last that holds every other file's SHA-256: a reader checks
each file against it, so that it never takes files of two saves for one (`read_together`).
While the new files replace the old ones, the old group stays readable under
`.NAME.previous` (hard links): an interrupted save leaves the model saved before it.
One save at a time per directory: `save_lock` (a `.rgals.lock` file, locked while saving).
"""

import contextlib
import hashlib
import json
import os
import secrets
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer at a time is then up to the user
    fcntl = None

LOCK = ".rgals.lock"
PREVIOUS = ".{}.previous"  # the name of a file of the group a save is replacing
READ_ATTEMPTS = 50  # a read that met a save under way tries again, 0.1 s apart


def write_atomic(path, write):
    """Write through `write(file)` into a temporary file beside `path`, then rename."""
    path = Path(path)
    temporary = _staged(path, write)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(path, value, indent=1):
    """`value` as JSON text (and a final newline) in `path`, written atomically."""
    text = json.dumps(value, indent=indent) + "\n"
    write_atomic(path, lambda file: file.write(text.encode()))


def write_together(directory, writers, marker, describe, remove=()):
    """Write the files {name: write(file)} of `writers` and the marker, whose content is
    `describe({name: its SHA-256})`, as one group (call it holding `save_lock`).

    Each file goes into its temporary first. Only once all are written: the group in
    place (the marker and the files of `writers` and `remove`) is linked to its
    `.NAME.previous` names, the old marker removed, the new files renamed into place,
    the names in `remove` deleted (an older group's that this one replaces), the marker
    renamed last and the previous links removed. A failed write leaves the old group as
    it was; a crash among the renames leaves no marker, and the old group readable
    under its previous names (`read_together` takes it)."""
    directory = Path(directory)
    staged = {}
    try:
        for name, write in writers.items():
            staged[name] = _staged(directory / name, write)
        digests = {name: file_digest(path) for name, path in staged.items()}
        staged[marker] = _staged(directory / marker,
                                 lambda file: file.write(describe(digests)))
    except BaseException:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)
        raise
    group = [marker, *writers, *remove]
    if (directory / marker).exists():  # else the previous links (if any) are the last model
        _link_previous(directory, group)
    (directory / marker).unlink(missing_ok=True)
    for name in writers:
        os.replace(staged[name], directory / name)
    for stale in remove:
        (directory / stale).unlink(missing_ok=True)
    os.replace(staged[marker], directory / marker)
    for name in group:  # the previous marker first: its files stay until it is gone
        (directory / PREVIOUS.format(name)).unlink(missing_ok=True)


def _link_previous(directory, names):
    """Hard links .NAME.previous to the files `names` in place, the marker (`names[0]`)
    last, so that a previous marker always comes with its files. Where the file system
    has no hard links the old group is not kept during the renames."""
    (directory / PREVIOUS.format(names[0])).unlink(missing_ok=True)
    for name in [*names[1:], names[0]]:
        link = directory / PREVIOUS.format(name)
        link.unlink(missing_ok=True)
        try:
            os.link(directory / name, link)
        except FileNotFoundError:
            continue
        except OSError:
            return


@contextlib.contextmanager
def save_lock(directory):
    """Hold `directory`'s save lock (creating the directory): a second save into it,
    from any process, fails at once with a clear error instead of mixing its files
    with this one's. The lock goes with the process, also when it is killed; its file
    is removed when the save is done."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory; choose a "
                                 "directory path for the output files")
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield directory
        return
    lock = directory / LOCK
    while True:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the lock file a finished save removed meanwhile would lock nothing: again
            if os.path.samestat(os.fstat(handle), os.stat(lock)):
                break
        except BlockingIOError:
            os.close(handle)
            raise BlockingIOError(
                f"another save into {directory} is under way (it holds {lock}); wait "
                "until it is done, or save into another directory") from None
        except FileNotFoundError:
            pass
        os.close(handle)
    try:
        yield directory
    finally:
        lock.unlink(missing_ok=True)
        os.close(handle)


def save_under_way(directory):
    """Whether a save into `directory` holds its lock now."""
    if fcntl is None:
        return False
    try:
        handle = os.open(Path(directory) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(handle)


def file_digest(source):
    """The SHA-256 of a file (a path, or an open binary file from where it stands), as
    hex."""
    if not hasattr(source, "read"):
        with open(source, "rb") as file:
            return file_digest(file)
    digest = hashlib.sha256()
    for chunk in iter(lambda: source.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


class ChangedWhileRead(Exception):
    """A file did not match the marker read with it, and the marker has changed since:
    a save replaced the group while it was read."""


def read_together(directory, marker, read):
    """`read(name_of)` of the group whose marker is `marker`, where `name_of(name)` is
    the path to read the file `name` from: the group in place, or, while a save is
    replacing it (or after a save was interrupted), the previous group it keeps. It is
    read again (up to READ_ATTEMPTS times) when `read` raises ChangedWhileRead (what it
    read does not match the marker, which has changed since: see `marker_changed`), or
    a file was missing while a save was under way or the marker changed meanwhile.
    Returns (the result, whether it came from the previous group)."""
    directory = Path(directory)
    for _ in range(READ_ATTEMPTS):
        before = _stamp(directory / marker)
        try:
            if before is not None:
                return read(lambda name: directory / name), False
            if (directory / PREVIOUS.format(marker)).is_file():
                return read(lambda name: directory / PREVIOUS.format(name)), True
            return read(lambda name: directory / name), False  # the caller's missing-files error
        except ChangedWhileRead:
            pass
        except FileNotFoundError:
            if not save_under_way(directory) and _stamp(directory / marker) == before:
                raise
        time.sleep(0.1)
    raise RuntimeError(f"{directory} changed each of the {READ_ATTEMPTS} times it was read: "
                       "saves into it keep replacing the model; load it once they are done")


def _stamp(path):
    """(inode, modification time) of a file, None when it is not there."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


def marker_changed(path, text):
    """Whether the marker at `path` no longer holds `text` (or is gone)."""
    try:
        return path.read_bytes() != text
    except FileNotFoundError:
        return True


def _staged(path, write):
    """A temporary file beside `path` holding what `write(file)` wrote, synced to disk."""
    temporary, handle = _temporary(path)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return temporary


def _temporary(path):
    """(name, descriptor) of a new temporary file beside `path`; mode 0666 less the umask,
    as open() gives (tempfile.mkstemp would give 0600, unreadable to anyone else)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        name = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return name, os.open(name, flags, 0o666)
        except FileExistsError:  # 2^32 names: a clash is rare, and the next try differs
            continue


def stray_temporaries(directory, names):
    """Temporary files that an interrupted write of `names` left in `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(path for name in names for path in directory.glob(f".{name}.*.tmp"))


def check_directory(directory, names, overwrite, marker=None):
    """`directory` as a Path, once writing the files `names` there is known to lose nothing.

    `marker`: the file of `names` written last; files without it are an interrupted
    write, which the error says.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory; choose a "
                                 "directory path for the output files")
    existing = [name for name in names if (directory / name).exists()]
    if existing and not overwrite:
        incomplete = marker is not None and marker not in existing
        what = (f"the files of an interrupted save ({', '.join(existing)}; no {marker})"
                if incomplete else ", ".join(existing))
        stray = stray_temporaries(directory, names)
        leftovers = f" and {len(stray)} temporary files of an interrupted write" if stray else ""
        raise FileExistsError(f"{directory} already holds {what}{leftovers}; pass "
                              "overwrite=True (--overwrite on the command line) to replace "
                              "them, or choose another directory")
    return directory


def prepare_directory(directory, names, overwrite, marker=None):
    """check_directory, then create the directory; when overwriting, also remove the
    temporaries that interrupted writes of `names` left there."""
    directory = check_directory(directory, names, overwrite, marker)
    directory.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for path in stray_temporaries(directory, names):
            path.unlink()
    return directory


def check_writable(directory):
    """Make sure `directory` can be written (or created: its nearest existing parent can
    be written), before any long work whose result goes there; nothing is created, so
    that work interrupted before its save leaves no empty directory behind."""
    directory = Path(directory)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        probe, handle = _temporary(existing / "write-test")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise PermissionError(f"cannot write to {directory} ({error.strerror or error}); "
                              "choose a directory you can write to") from error
    return directory


def require_files(directory, names, problem):
    """`directory` as a Path, once every file of `names` is known to be there."""
    directory = Path(directory)
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} {problem}: missing {', '.join(missing)}")
    return directory
