"""A folder a credential names (`file:///dir` or a plain path) and the files read from it.

Single tenancy: any folder of the host, shown as given (the operator owns the machine). Multi tenancy: the
folder, every entry below it and every file opened or handed to DuckDB lie inside
$CLOUDACT_SOURCE_ROOT/<org>/ (real paths, symlinks followed; see shared.tenancy), and messages show paths
relative to that root, never the host's layout.

A file is opened once and checked by what was opened (the kernel's /proc/self/fd link), and DuckDB or
pyarrow are handed that open descriptor's path: a symlink swapped in between the check and the read
cannot redirect it.
"""
from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from jobs.base import ExtractError
from shared import tenancy

_FD_LINKS = Path("/proc/self/fd")


class SourceFolder:
    def __init__(self, url: str, org_slug: str, what: str = "source folder", must_exist: bool = True):
        self.what = what
        self.root: Path | None = tenancy.org_root(org_slug) if tenancy.is_multi() else None
        if self.root is None:
            parsed = urlparse(str(url))
            self.path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(str(url))
        else:
            self.path = tenancy.source_folder(url, org_slug)
        if must_exist and not self.path.is_dir():
            raise ExtractError(f"{what} {self.shown(self.path)} does not exist or is not a folder")

    # -- names -------------------------------------------------------------------------------------
    def shown(self, path: Path | str) -> str:
        """How a message names `path`: as given (single), relative to the org's root (multi)."""
        if self.root is None:
            return str(path)
        p = Path(path)
        if not p.is_absolute():
            return p.as_posix()
        try:
            return p.relative_to(self.root).as_posix() or "."
        except ValueError:
            return p.name

    def checked(self, path: Path | str, what: str = "a file") -> Path:
        """The path to read for `path` (or for a name `shown` gave): as given (single); resolved and refused
        unless inside the org's root (multi)."""
        if self.root is None:
            return Path(path)
        return tenancy.contained(self.root / path, self.root, what=what)

    # -- listing -------------------------------------------------------------------------------------
    def files(self, recursive: bool = True) -> list[Path]:
        """The files in the folder (below it too when `recursive`), sorted. Multi: every entry, files and
        folders alike, must resolve inside the org's root, so a link to elsewhere fails the run instead of
        being read (or silently skipped)."""
        entries = self.path.rglob("*") if recursive else self.path.iterdir()
        out = []
        for p in entries:
            if self.root is not None:
                tenancy.contained(p, self.root, what="an entry of the source folder")
            if p.is_file():
                out.append(p)
        return sorted(out)

    # -- reading -------------------------------------------------------------------------------------
    def _open_fd(self, path: Path | str) -> int:
        real = self.checked(path)
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        if self.root is not None and _FD_LINKS.is_dir():
            try:
                tenancy.contained(os.readlink(_FD_LINKS / str(fd)), self.root)
            except tenancy.TrustViolation:
                os.close(fd)
                raise tenancy.TrustViolation(
                    f"{self.shown(path)} changed into a link leaving the organization's source folder while it "
                    "was being opened; multi tenancy reads only files inside $CLOUDACT_SOURCE_ROOT/<org>/") from None
        return fd

    def open(self, path: Path | str) -> BinaryIO:
        if self.root is None:
            return open(path, "rb")
        return os.fdopen(self._open_fd(path), "rb")

    def read_bytes(self, path: Path | str) -> bytes:
        with self.open(path) as fh:
            return fh.read()

    def local_path(self, path: Path | str, stack: ExitStack) -> str:
        """A path for readers that open by name (DuckDB, pyarrow), valid while `stack` is open. Multi: the
        descriptor opened and checked here, so what is read is what was checked."""
        if self.root is None:
            return str(path)
        fd = self._open_fd(path)
        stack.callback(os.close, fd)
        return str(_FD_LINKS / str(fd)) if _FD_LINKS.is_dir() else str(self.checked(path))
