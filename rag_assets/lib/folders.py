"""A local folder as a source: read, list and write below a root without ever following a
symbolic link (docs/architecture.md, Tenancy).

Every path is opened one component at a time from `/`, each with O_NOFOLLOW relative to the
folder before it (openat), so there is no window between a check and the open: a link
anywhere on the way (`acme/steal.txt -> ../globex/payroll.txt`, `acme/env -> /proc/self/environ`,
`.rag-thumbnails -> ../globex`) is refused with `NotFollowed`, never read or written through.
Roots are absolute paths with no links of their own (`source_root` resolves them once, when
the operator names them). Listing walks with directory descriptors (openat, scandir) and does not
descend into linked folders; a linked file is listed, so that reading it fails by name.
"""

from __future__ import annotations

import errno
import heapq
import logging
import os
import stat
from collections.abc import Iterator

log = logging.getLogger(__name__)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (it is then refused).
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
NOT_FOLLOWED = "symlink: not followed"


class NotFollowed(PermissionError):
    """A path through a symbolic link (or a `..`), refused."""

    def __init__(self, path: str, what: str = NOT_FOLLOWED):
        super().__init__(errno.EPERM, what, path)
        self.reason = what


class TooLarge(OSError):
    """A file larger than the caller's limit (checked before it is read)."""

    def __init__(self, path: str, size: int, limit: int):
        super().__init__(errno.EFBIG, f"{size:,} bytes, more than the limit of {limit:,}", path)
        self.size, self.limit = size, limit


def components(path: str) -> list[str]:
    """The names from `/` to `path`. A `..` is refused (a key is never a way out of its root);
    empty and `.` names are dropped. A relative path is taken from the working directory."""
    if not path.startswith("/"):
        path = os.getcwd() + "/" + path
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise NotFollowed(path, "a '..' in the path: not followed")
    return parts


def _refused(error: OSError, name: str, at: int, path: str) -> OSError:
    """The error to raise for a failed open of `name` in the folder `at`: NotFollowed when it is
    a link (O_NOFOLLOW says ELOOP, or ENOTDIR with O_DIRECTORY), else the error itself."""
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=at, follow_symlinks=False).st_mode):
                return NotFollowed(path)
        except OSError:
            pass
    return error


def open_folder(parts: list[str], *, create: bool = False) -> int:
    """A descriptor of the folder `/parts...`, every component opened without following a
    link; missing folders are made when `create`. The caller closes it."""
    fd = os.open("/", _DIR)
    try:
        for n, part in enumerate(parts):
            where = "/" + "/".join(parts[: n + 1])
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    child = os.open(part, _DIR, dir_fd=fd)
                except OSError as e:
                    raise _refused(e, part, fd, where) from None
            except OSError as e:
                raise _refused(e, part, fd, where) from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_file(path: str, max_bytes: int | None = None) -> tuple[bytes, os.stat_result]:
    """A regular file's bytes and its status (taken from the open file: a write during the read
    shows as a new version next time). Raises FileNotFoundError, NotFollowed, TooLarge, or
    IsADirectoryError / OSError for what is not a regular file."""
    *folders, name = components(path) or [""]
    folder = open_folder(folders)
    try:
        try:
            fd = os.open(name, _FILE, dir_fd=folder)
        except OSError as e:
            raise _refused(e, name, folder, path) from None
    finally:
        os.close(folder)
    with os.fdopen(fd, "rb") as f:
        status = os.fstat(f.fileno())
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a folder", path)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe, socket or device)", path)
        if max_bytes is not None and status.st_size > max_bytes:
            raise TooLarge(path, status.st_size, max_bytes)
        os.set_blocking(f.fileno(), True)
        return f.read(), status


def entry_status(path: str) -> os.stat_result | None:
    """The status of the entry at `path` itself (a link is not followed: its own status), or
    None when it does not exist or the way to it goes through a link."""
    try:
        *folders, name = components(path) or [""]
        folder = open_folder(folders)
    except (FileNotFoundError, NotADirectoryError, NotFollowed):
        return None
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(folder)


def write_file(path: str, data: bytes) -> None:
    """Write a file whole (beside it, then renamed into place: a reader never sees half of it),
    making its folders; nothing on the way may be a link (a link at its own name is replaced,
    not followed)."""
    *folders, name = components(path)
    folder = open_folder(folders, create=True)
    try:
        partial = f".{name[:200]}.{os.getpid()}.partial"  # listings skip dot files
        fd = os.open(
            partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder
        )
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(partial, name, src_dir_fd=folder, dst_dir_fd=folder)
    finally:
        os.close(folder)


def remove_file(path: str) -> None:
    """Delete the entry at `path` (a link itself, never what it points to); a missing one is no
    error. Raises NotFollowed when the way to it goes through a link."""
    try:
        *folders, name = components(path)
        folder = open_folder(folders)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        os.unlink(name, dir_fd=folder)
    except (FileNotFoundError, IsADirectoryError):
        pass
    finally:
        os.close(folder)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def list_files(root: str, after: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(key, status) of every file below `root` whose key sorts after `after`: its path below the
    root, `/`-separated, in key order (code point order of the whole key, as S3 lists UTF-8
    keys), so that a listing can go on from the last key it gave. Folders wholly before `after`
    are not opened. Dot files and dot folders are skipped (partial writes, `.rag-thumbnails`); a
    linked folder is not entered; a linked file is listed with its own status (reading it is
    refused); pipes, sockets and devices are skipped; a name that is not UTF-8 is skipped with a
    warning (it cannot become a key)."""
    top = open_folder(components(root))
    try:
        yield from _walk(top, "", after, root)
    finally:
        os.close(top)


def _walk(fd: int, prefix: str, after: str, root: str) -> Iterator[tuple[str, os.stat_result]]:
    """The files below the open folder `fd` (keys starting with `prefix`) after `after`, in key
    order: a folder sorts as its name and a `/`, which is where its keys fall among its
    siblings. Entries wholly before `after` are dropped unsorted, the rest taken from a heap as
    the caller asks for them: a page of a folder of a million files orders its page, not the
    million."""
    entries = []
    with os.scandir(fd) as scan:
        for entry in scan:
            name = entry.name
            if name.startswith("."):
                continue
            if not _utf8(name):
                log.warning("skipped %r in %s: its name is not UTF-8", name, root)
                continue
            try:
                folder = entry.is_dir(follow_symlinks=False)
                if entry.is_symlink() and entry.is_dir():  # a linked folder: neither entered nor listed
                    continue
            except OSError:  # deleted while we walked
                continue
            key = prefix + name + ("/" if folder else "")
            if key < after[: len(key)] if folder else key <= after:  # every key of it sorts before `after`
                continue
            entries.append((key, name, folder))
    heapq.heapify(entries)
    while entries:
        key, name, folder = heapq.heappop(entries)
        if not folder:
            try:
                status = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:  # deleted while we walked
                continue
            if stat.S_ISREG(status.st_mode) or stat.S_ISLNK(status.st_mode):
                yield key, status
            continue
        try:
            child = os.open(name, _DIR, dir_fd=fd)
        except OSError:  # deleted, or replaced by a link, while we walked: not entered
            continue
        try:
            yield from _walk(child, key, after, root)
        finally:
            os.close(child)
