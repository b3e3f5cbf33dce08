"""Writing files without losing any: atomic writes and the checks before them."""

import os
import tempfile
from pathlib import Path


def write_atomic(path, write):
    """Write through `write(file)` into a temporary file beside `path`, then rename."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def check_directory(directory, names, overwrite):
    """`directory` as a Path, once writing the files `names` there is known to lose nothing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory; choose a "
                                 "directory path for the output files")
    existing = [name for name in names if (directory / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{directory} already holds {', '.join(existing)}; pass "
                              "overwrite=True (--overwrite on the command line) to replace "
                              "them, or choose another directory")
    return directory


def require_files(directory, names, problem):
    """`directory` as a Path, once every file of `names` is known to be there."""
    directory = Path(directory)
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} {problem}: missing {', '.join(missing)}")
    return directory
