"""The admin channel of `cloudact serve`: CLI commands on the same CLOUDACT_HOME run inside the server.

Why one owner, not "open the file per operation with retries". DuckDB lets one process at a time open
a database file, and `cloudact serve` keeps it open for its whole life: HTTP threads, job threads and
the schedule loop share one connection, and one job holds it for minutes. Per-operation opens would
need the server to let go between operations, which it cannot do while any job runs (a CLI would wait
out whole jobs, or fail anyway), and every open would re-read the catalog. So the server stays the
single owner, and a CLI that finds a live server for its home sends it the command line and prints
what comes back. Without a server the CLI opens the file itself, as before.

Channel. A Unix domain socket `$CLOUDACT_HOME/admin/cli.sock` in a 0700 folder, the socket 0600, and the
server checks that the peer's uid (SO_PEERCRED, where the OS has it) is its own: only the operator's
account can use it; no port and no token to leak. (A home whose socket path would pass the OS limit of
~107 bytes gets its folder under the temp dir instead, `cloudact-<uid>/<hash of home>`, same checks.)
The server holds an flock on `owner.lock` beside the socket for its life, so a second `serve` on the
same home is refused, and a socket left by a killed server (the kernel dropped its lock) is replaced.
A client that finds a socket nobody listens on runs the command locally.

Protocol: JSON lines. Client: {"argv", "cwd", "tty", "width"}. Server: {"out": text} and {"err": text}
as the command writes, {"read": path} when the command takes an input file (the client answers
{"size": n} and n bytes, or {"missing": reason}), finally {"exit": code}. The client sends
{"interrupt": true} on Ctrl-C; the server then raises KeyboardInterrupt in the command's thread, which is
what Ctrl-C does in a local process (a client that disconnects counts as one).

Commands run one at a time, through the same click commands (cli/main.py), in the server's process and
environment. Every click.Path argument is taken relative to the client's working directory, and an
existing input file (click.Path(exists=True, dir_okay=False)) is read by the client and given to the
command as a private temporary copy with the same name, so relative paths, /dev/stdin and process
substitution work as they do locally. `serve` and `demo` are never forwarded.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import socketserver
import stat
import struct
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

import click

NEVER_FORWARDED = frozenset({"serve", "demo"})
MAX_FILE_BYTES = 512 << 20
_SUN_PATH_MAX = 100  # sockaddr_un holds 104-108 bytes depending on the OS

log = logging.getLogger("cloudact.admin")
_local = threading.local()


class AlreadyServing(RuntimeError):
    pass


# -- where ---------------------------------------------------------------------------------------
def _short_root() -> Path:
    return Path(tempfile.gettempdir()) / f"cloudact-{os.getuid()}"


def channel_dir(home: Path) -> Path:
    folder = Path(home) / "admin"
    if len(os.fsencode(folder / "cli.sock")) > _SUN_PATH_MAX:
        folder = _short_root() / hashlib.sha256(os.fsencode(Path(home).resolve())).hexdigest()[:16]
    return folder


def socket_path(home: Path) -> Path:
    return channel_dir(home) / "cli.sock"


def _private_dir(folder: Path) -> None:
    """Create folder (and a temp-dir parent of ours) 0700, and refuse one someone else could enter."""
    for d in ([folder.parent] if folder.parent == _short_root() else []) + [folder]:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(f"{d} is not a folder owned by this user; refusing to put the admin socket there")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(d, 0o700)


# -- server side ------------------------------------------------------------------------------------
def forwarded() -> bool:
    """Is this thread running a command sent by a client over the admin channel?"""
    return getattr(_local, "session", None) is not None


class _ThreadStream(io.TextIOBase):
    """sys.stdout/sys.stderr while serving: a forwarded command's writes go to its client; every
    other thread's go where they always went."""

    def __init__(self, fallback, key: str):
        self._fallback, self._key = fallback, key

    @property
    def encoding(self) -> str:
        return "utf-8"

    @property
    def errors(self) -> str:
        return "replace"

    def write(self, text: str) -> int:
        session = getattr(_local, "session", None)
        if session is None:
            return self._fallback.write(text)
        if not isinstance(text, str):  # a text stream, as click probes it with write(b"")
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            session.send({self._key: text})
        return len(text)

    def flush(self) -> None:
        if getattr(_local, "session", None) is None:
            self._fallback.flush()

    def isatty(self) -> bool:
        session = getattr(_local, "session", None)
        return session.tty if session is not None else self._fallback.isatty()

    def fileno(self) -> int:
        if getattr(_local, "session", None) is not None:
            raise io.UnsupportedOperation("a forwarded command has no file descriptor")
        return self._fallback.fileno()

    def writable(self) -> bool:
        return True


class _ClientPath(click.Path):
    """click.Path as seen by a forwarded command: relative to the client's folder, input files
    fetched from the client. Outside a forwarded command it is exactly click.Path."""

    def convert(self, value, param, ctx):
        session = getattr(_local, "session", None)
        if session is not None and isinstance(value, (str, os.PathLike)) and os.fspath(value) != "-":
            value = session.localize(os.fspath(value), fetch=bool(self.exists and self.file_okay and not self.dir_okay))
        return super().convert(value, param, ctx)


def client_path(value: str) -> str:
    """A path argument as the client of a forwarded command means it (relative to its folder); else unchanged."""
    session = getattr(_local, "session", None)
    return session.localize(value, fetch=False) if session is not None else value


def _localize_paths(command: click.Command) -> None:
    for param in command.params:
        if type(param.type) is click.Path:
            param.type.__class__ = _ClientPath
    for sub in getattr(command, "commands", {}).values():
        _localize_paths(sub)


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise exc in another thread at its next bytecode (None clears a pending one): Ctrl-C, by proxy."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class _Session:
    def __init__(self, conn: socket.socket, rfile, hello: dict):
        self.conn, self.rfile = conn, rfile
        self.cwd = hello["cwd"]
        self.tty = bool(hello.get("tty"))
        self._send_lock, self._state = threading.Lock(), threading.Lock()
        self._thread: int | None = None
        self._replies: list = []
        self._reply_ready = threading.Condition()
        self._closed = False
        self.tmp: Path | None = None

    # transport
    def send(self, msg: dict) -> None:
        try:
            with self._send_lock:
                self.conn.sendall(json.dumps(msg).encode() + b"\n")
        except OSError:
            pass  # the client went away; the listener interrupts the command

    def listen(self) -> None:
        """Read the client's messages while the command runs: interrupts and file replies."""
        try:
            while True:
                line = self.rfile.readline()
                if not line:
                    break
                msg = json.loads(line)
                if msg.get("interrupt"):
                    self.interrupt()
                elif "size" in msg or "missing" in msg:
                    data = self.rfile.read(msg["size"]) if "size" in msg else None
                    with self._reply_ready:
                        self._replies.append((msg, data))
                        self._reply_ready.notify_all()
        except (OSError, ValueError):
            pass
        with self._reply_ready:
            self._closed = True
            self._reply_ready.notify_all()
        self.interrupt()

    # the command's thread
    def begin(self) -> None:
        with self._state:
            self._thread = threading.get_ident()

    def end(self) -> None:
        with self._state:
            if self._thread is not None:
                _raise_in(self._thread, None)
            self._thread = None

    def interrupt(self) -> None:
        with self._state:
            if self._thread is not None:
                _raise_in(self._thread, KeyboardInterrupt)

    def localize(self, value: str, fetch: bool) -> str:
        path = os.path.join(self.cwd, os.path.expanduser(value))
        if not fetch:
            return path
        self.send({"read": path})
        with self._reply_ready:
            while not self._replies and not self._closed:
                self._reply_ready.wait()
            if not self._replies:
                raise click.Abort()
            msg, data = self._replies.pop(0)
        if data is None:
            return path  # click reports it missing, under the client's own path
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix="cloudact-fwd-"))
        copy = self.tmp / str(len(list(self.tmp.iterdir()))) / (os.path.basename(path) or "file")
        copy.parent.mkdir(mode=0o700)
        copy.write_bytes(data)
        copy.chmod(0o600)
        return str(copy)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, channel: AdminChannel):
        self.channel = channel
        super().__init__(path, _Handler)

    def verify_request(self, request, client_address) -> bool:
        creds = getattr(socket, "SO_PEERCRED", None)
        if creds is None:
            return True  # the 0700 folder is the guard where the OS cannot tell the peer
        _pid, uid, _gid = struct.unpack("3i", request.getsockopt(socket.SOL_SOCKET, creds, struct.calcsize("3i")))
        if uid != os.getuid():
            log.warning("admin channel: refused a connection from uid %s", uid)
            return False
        return True


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            hello = json.loads(self.rfile.readline() or b"null")
            if not isinstance(hello, dict) or not isinstance(hello.get("argv"), list) or not hello.get("cwd"):
                return
        except ValueError:
            return
        self.server.channel.run(_Session(self.connection, self.rfile, hello), hello)


class AdminChannel:
    """The server end. `with AdminChannel(home, root, run) as ch: <open the warehouse>; ch.ready(); ...`
    `run(argv, tty, width) -> exit code` runs one command line in the calling thread."""

    def __init__(self, home: Path, root: click.Command, run: Callable[[list[str], bool, int | None], int]):
        self.folder = channel_dir(home)
        self.path = self.folder / "cli.sock"
        self._root, self._run = root, run
        self._one_at_a_time = threading.Lock()
        self._ready, self._failed = threading.Event(), False
        self._lock_file = None
        self._server: _Server | None = None
        self._streams = None

    def __enter__(self) -> AdminChannel:
        _private_dir(self.folder)
        self._lock_file = open(self.folder / "owner.lock", "a")  # noqa: SIM115 - held for the server's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise AlreadyServing(f"another `cloudact serve` owns this CLOUDACT_HOME (admin channel {self.path}); "
                                 "stop it first, or send requests to it") from None
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # left by a server that was killed: it no longer holds the lock
            self._server = _Server(str(self.path), self)
            os.chmod(self.path, 0o600)
            _localize_paths(self._root)
            self._streams = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = _ThreadStream(sys.stdout, "out"), _ThreadStream(sys.stderr, "err")
            threading.Thread(target=self._server.serve_forever, name="cloudact-admin", daemon=True).start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def ready(self) -> None:
        """The warehouse is open: forwarded commands may run."""
        self._ready.set()

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            if self._streams is not None:  # serve_forever was started
                self._server.shutdown()
            self._server.server_close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if self._streams is not None:
            sys.stdout, sys.stderr = self._streams
        self._failed = not self._ready.is_set()
        self._ready.set()  # wake waiting clients: they are told the server stopped
        if self._lock_file is not None:
            self._lock_file.close()

    def run(self, session: _Session, hello: dict) -> None:
        threading.Thread(target=session.listen, name="cloudact-admin-listen", daemon=True).start()
        if not self._one_at_a_time.acquire(timeout=1):
            session.send({"err": "waiting for another cloudact command on the server to finish...\n"})
            self._one_at_a_time.acquire()
        code = 1
        try:
            self._ready.wait()
            if self._failed:
                session.send({"err": "error: the server stopped before it was ready\n"})
                return
            _local.session = session
            try:
                try:
                    session.begin()
                    code = self._run([str(a) for a in hello["argv"]], session.tty, hello.get("width"))
                finally:
                    session.end()
            except KeyboardInterrupt:
                session.end()
                code = 130
        finally:
            _local.session = None
            self._one_at_a_time.release()
            if session.tmp is not None:
                shutil.rmtree(session.tmp, ignore_errors=True)
            session.send({"exit": code})


# -- client side -------------------------------------------------------------------------------------
def _command_name(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def forward(argv: list[str]) -> int | None:
    """Run argv on the live `cloudact serve` of this CLOUDACT_HOME and return its exit code; None when
    there is no such server (or the command is never forwarded): then run it here."""
    from shared.config import settings

    name = _command_name(argv)
    if name is None or name in NEVER_FORWARDED:
        return None
    try:
        s = settings()
    except ValueError:
        return None  # the CLI reports a bad setting itself
    if s.backend != "embedded":
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path(s.home)))
    except OSError:  # no socket, or one left by a server that is gone
        sock.close()
        return None
    with sock, sock.makefile("rb") as rfile:
        tty = sys.stdout.isatty()
        hello = {"argv": argv, "cwd": os.getcwd(), "tty": tty, "width": shutil.get_terminal_size().columns if tty else None}
        sock.sendall(json.dumps(hello).encode() + b"\n")
        interrupted = False
        while True:
            try:
                line = rfile.readline()
                if not line:
                    print("error: the server closed the connection before the command finished", file=sys.stderr)
                    return 1
                msg = json.loads(line)
                if "out" in msg:
                    sys.stdout.write(msg["out"])
                    sys.stdout.flush()
                elif "err" in msg:
                    sys.stderr.write(msg["err"])
                    sys.stderr.flush()
                elif "read" in msg:
                    sock.sendall(_file_reply(msg["read"]))
                elif "exit" in msg:
                    return int(msg["exit"])
            except KeyboardInterrupt:
                if interrupted:
                    return 130  # a second Ctrl-C: stop waiting for the server's answer
                interrupted = True
                with contextlib.suppress(OSError):
                    sock.sendall(b'{"interrupt": true}\n')


def _file_reply(path: str) -> bytes:
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(path)
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return json.dumps({"missing": f"{path} is larger than {MAX_FILE_BYTES} bytes"}).encode() + b"\n"
        return json.dumps({"size": len(data)}).encode() + b"\n" + data
    except OSError as e:
        return json.dumps({"missing": str(e)}).encode() + b"\n"
