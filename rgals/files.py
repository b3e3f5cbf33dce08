"""Writing files without losing any: atomic writes and the checks before them.

Every file is written to a temporary name beside its target (`.NAME.XXXXXXXX.tmp`) and
renamed into place, with the mode an ordinary `open()` gives (0666 less the umask). A
group of files that belong together (a saved model) is written by `write_together`, with
a marker renamed into place last: a directory holding some of the files without the
marker is an interrupted save.
"""

import os
import secrets
from pathlib import Path


def write_atomic(path, write):
    """Write through `write(file)` into a temporary file beside `path`, then rename."""
    path = Path(path)
    temporary = _staged(path, write)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_together(directory, writers, marker, remove=()):
    """Write the files {name: write(file)} of `writers` as one group: each into its
    temporary first; only once every one is written, the old `marker` is removed, the
    others are renamed into place, the files named in `remove` deleted (an older group's
    that this one replaces) and the marker renamed last. A failed write leaves the
    previous files as they were; a crash among the renames leaves no marker (an
    interrupted save)."""
    directory = Path(directory)
    staged = {}
    try:
        for name, write in writers.items():
            staged[name] = _staged(directory / name, write)
    except BaseException:
        for temporary in staged.values():
            temporary.unlink()
        raise
    if (directory / marker).exists():
        (directory / marker).unlink()
    for name in sorted(staged, key=lambda name: name == marker):
        if name == marker:
            for stale in remove:
                (directory / stale).unlink(missing_ok=True)
        os.replace(staged[name], directory / name)


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
    """Create `directory` if needed and make sure a file can be written there, before any
    long work whose result goes there."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe, handle = _temporary(directory / "write-test")
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
