"""One owner of the embedded warehouse: with `cloudact serve` running (a real subprocess on a temp home),
CLI commands on the same home run inside it over the admin channel; a killed server's socket does
not break the CLI; only the operator's account can use the channel."""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import pyarrow.parquet as pq
import pytest

from cli import admin
from tests.server_kit import free_port
from tests.test_stripe_webhook import SECRET, event, product, sign

REPO = Path(__file__).resolve().parent.parent
CLOUDACT = str(Path(sys.executable).with_name("cloudact"))
SAAS = "subscription/costs/subscription_cost"


class Serve:
    def __init__(self, home: Path, log: Path):
        self.home, self.port = home, free_port()
        self.env = {**os.environ, "CLOUDACT_HOME": str(home), "CLOUDACT_BACKEND": "embedded",
                    "STRIPE_WEBHOOK_SECRET": SECRET}
        self.env.pop("CLOUDACT_DEFAULT_PLAN", None)
        self.log = log
        self.proc = subprocess.Popen([CLOUDACT, "serve", "--port", str(self.port)], cwd=REPO, env=self.env,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cloudact serve did not start: {log.read_text()}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture()
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture()
def serve(home, tmp_path):
    servers = []

    def start() -> Serve:
        servers.append(Serve(home, tmp_path / "serve.log"))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def cloudact(srv: Serve, *args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([CLOUDACT, *args], cwd=cwd, env=srv.env, capture_output=True, text=True, timeout=180)
    assert "lock" not in out.stderr.lower(), out.stderr
    if ok:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def test_cli_commands_work_while_serve_runs_on_the_same_home(serve, tmp_path):
    srv = serve()
    work = tmp_path / "work"  # the client's folder, not the server's (REPO): relative paths are the client's
    work.mkdir()
    (work / "openai.json").write_text(json.dumps({"admin_key": "sk-admin-test", "base_url": "http://127.0.0.1:9/v1"}))
    (work / "slack.json").write_text(json.dumps({"provider": "slack", "plan": "pro", "seats": 2, "unit_price": "8.75",
                                                 "currency": "USD", "billing_cycle": "monthly",
                                                 "start_date": "2026-01-01"}))
    cloudact(srv, "orgs", "create", "acme", cwd=work)
    key = cloudact(srv, "keys", "create", "acme", cwd=work).stdout.strip().splitlines()[-1]
    cred = cloudact(srv, "credentials", "add", "acme", "openai", "--from-json", "openai.json", cwd=work)
    cred_id = cred.stdout.strip().splitlines()[-1]
    assert cred_id in cloudact(srv, "credentials", "list", "acme", cwd=work).stdout
    cloudact(srv, "subscriptions", "add", "acme", "--from-json", "slack.json", cwd=work)
    run = cloudact(srv, "run", "acme", SAAS, "--start", "2026-01-01", "--end", "2026-01-31", "--wait", cwd=work)
    assert "succeeded" in run.stdout
    run_id = run.stdout.split("queued ", 1)[1].split()[0]
    assert run_id in cloudact(srv, "runs", "acme", cwd=work).stdout
    verify = cloudact(srv, "verify", "acme", cwd=work).stdout
    assert SAAS[:20] in verify and "17.50" in verify  # 2 seats x 8.75 for January
    cloudact(srv, "export", "acme", "--out", "out/focus.parquet", cwd=work)
    table = pq.read_table(work / "out" / "focus.parquet")
    assert table.num_rows == 31 and set(table.column("x_run_id").to_pylist()) == {run_id}

    # the server saw the same warehouse: the key, the run
    r = httpx.get(f"{srv.url}/api/v1/pipelines/runs/acme/{run_id}", headers={"X-API-Key": key})
    assert (r.status_code, r.json()["status"]) == (200, "succeeded")
    # errors keep their exit code and message
    bad = cloudact(srv, "keys", "revoke", "acme", "nope", cwd=work, ok=False)
    assert bad.returncode == 1 and "no active key" in bad.stderr
    missing = cloudact(srv, "credentials", "add", "acme", "openai", "--from-json", "gone.json", cwd=work, ok=False)
    assert missing.returncode == 2 and str(work / "gone.json") in missing.stderr

    # POST /webhooks/stripe is served, with a real signed event
    payload = json.dumps(event("product.created", product(pid="prod_served", daily_runs=9)))
    r = httpx.post(f"{srv.url}/webhooks/stripe", content=payload, headers={"Stripe-Signature": sign(payload)})
    assert r.status_code == 200, r.text
    assert "prod_served" in r.json()["outcome"]

    # only the operator's account can reach the channel
    folder = admin.channel_dir(srv.home)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder / "cli.sock").st_mode) == 0o600


def test_a_killed_servers_socket_does_not_break_the_cli_and_a_restart_takes_over(serve, tmp_path):
    srv = serve()
    cloudact(srv, "orgs", "create", "acme", cwd=tmp_path)
    srv.stop(signal.SIGKILL)
    sock = admin.socket_path(srv.home)
    assert sock.exists()  # nobody cleaned up
    listed = cloudact(srv, "orgs", "list", cwd=tmp_path)  # runs here, on the file the dead server left
    assert "acme" in listed.stdout
    cloudact(srv, "orgs", "create", "globex", cwd=tmp_path)

    again = serve()
    assert "globex" in cloudact(again, "orgs", "list", cwd=tmp_path).stdout
    cloudact(again, "orgs", "create", "initech", cwd=tmp_path)  # forwarded: the warehouse is the server's
    assert "initech" in cloudact(again, "orgs", "list", cwd=tmp_path).stdout


def test_a_second_serve_on_the_same_home_is_refused_and_the_first_keeps_serving(serve, home, tmp_path):
    srv = serve()
    second = subprocess.run([CLOUDACT, "serve", "--port", str(free_port())], cwd=REPO, env=srv.env,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and "another `cloudact serve`" in " ".join(second.stderr.split())
    assert httpx.get(f"{srv.url}/health").status_code == 200
    cloudact(srv, "orgs", "create", "acme", cwd=tmp_path)


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0 or not Path("/usr/bin/python3").exists(),
                    reason="needs root to try the channel as another user")
def test_another_user_cannot_use_the_channel(tmp_path):
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp())  # pytest's own temp folders are closed to other users anyway
    srv = Serve(top / "home", tmp_path / "serve.log")
    try:
        _try_as_nobody(srv, top, tmp_path)
    finally:
        srv.stop()
        shutil.rmtree(top, ignore_errors=True)


def _try_as_nobody(srv: Serve, top: Path, tmp_path: Path) -> None:
    folder = admin.channel_dir(srv.home)
    probe = ("import json, socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('denied'); sys.exit()\n"
             "try:\n"
             "    s.sendall(json.dumps({'argv': ['orgs', 'create', 'mallory'], 'cwd': '/'}).encode() + b'\\n')\n"
             "    print('answer:', s.recv(65536) or 'closed')\n"
             "except (BrokenPipeError, ConnectionResetError):\n    print('answer: closed')\n")
    as_nobody = dict(user=65534, group=65534, cwd="/", capture_output=True, text=True, timeout=30)
    out = subprocess.run(["/usr/bin/python3", "-c", probe, str(folder / "cli.sock")], **as_nobody)
    assert out.stdout.strip() == "denied", out
    # even with the folder and socket opened up, the server checks the peer's uid
    for path, mode in ((top, 0o755), (srv.home, 0o755), (folder, 0o755), (folder / "cli.sock", 0o777)):
        os.chmod(path, mode)
    out = subprocess.run(["/usr/bin/python3", "-c", probe, str(folder / "cli.sock")], **as_nobody)
    assert out.stdout.strip() == "answer: closed", out
    assert "mallory" not in cloudact(srv, "orgs", "list", cwd=tmp_path).stdout


def run_in_process(command: click.Command):
    """The channel's `run` for `command`, in this process: the command's exit code, 0 when it returns."""
    def run(argv, tty, width):
        try:
            command.main(args=argv, standalone_mode=False)
        except SystemExit as e:
            return e.code
        return 0
    return run


def test_an_interrupt_reaches_the_forwarded_command_as_ctrl_c(tmp_path, monkeypatch):
    """The client's Ctrl-C ({"interrupt": true}) is a KeyboardInterrupt inside the server's command."""
    @click.group()
    def root():
        pass

    @root.command()
    def wait():
        try:
            click.echo("started")
            for _ in range(600):
                time.sleep(0.1)
        except KeyboardInterrupt:
            click.echo("interrupted")
            sys.exit(3)

    with admin.AdminChannel(tmp_path / "h", root, run_in_process(root)) as channel:
        channel.ready()
        with socket.socket(socket.AF_UNIX) as s, s.makefile("rb") as rfile:
            s.connect(str(channel.path))
            s.sendall(json.dumps({"argv": ["wait"], "cwd": str(tmp_path)}).encode() + b"\n")
            assert json.loads(rfile.readline()) == {"out": "started\n"}
            t0 = time.monotonic()
            s.sendall(b'{"interrupt": true}\n')
            s.settimeout(10)
            messages = [json.loads(rfile.readline())]
            while "exit" not in messages[-1]:
                messages.append(json.loads(rfile.readline()))
            assert time.monotonic() - t0 < 10
    assert messages == [{"out": "interrupted\n"}, {"exit": 3}]


def test_a_home_too_deep_for_a_socket_path_gets_a_private_folder_under_tmp(tmp_path):
    @click.command()
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    def show(path):
        click.echo(Path(path).read_text())

    home = tmp_path / ("deep" * 30) / "home"
    (tmp_path / "note.txt").write_text("hello from the client")
    with admin.AdminChannel(home, show, run_in_process(show)) as channel:
        channel.ready()
        sock = admin.socket_path(home)
        assert sock == channel.path and len(str(sock)) < 108 and not str(sock).startswith(str(home))
        assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
        with socket.socket(socket.AF_UNIX) as s, s.makefile("rb") as rfile:
            s.settimeout(10)
            s.connect(str(sock))
            s.sendall(json.dumps({"argv": ["note.txt"], "cwd": str(tmp_path)}).encode() + b"\n")
            assert json.loads(rfile.readline()) == {"read": str(tmp_path / "note.txt")}
            s.sendall(admin._file_reply(str(tmp_path / "note.txt")))  # what the client answers
            assert json.loads(rfile.readline()) == {"out": "hello from the client\n"}
            assert json.loads(rfile.readline()) == {"exit": 0}
