"""The embedded state ($CLOUDACT_HOME, warehouse.duckdb and its WAL, secret.key) is owner-only: the folder
0700, every file in it 0600, whatever the umask of the shell that ran the command."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDACT_")}
    env.update(CLOUDACT_HOME=str(home), CLOUDACT_BACKEND="embedded")
    return env


def cloudact(home: Path, *args: str) -> subprocess.CompletedProcess:
    # umask 022 as in most shells: what the process would create 0644/0755 unless it takes care
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=_env(home), text=True,
                          capture_output=True, timeout=120, preexec_fn=lambda: os.umask(0o022), check=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(home: Path) -> dict[str, int]:
    return {str(p.relative_to(home)): mode(p) for p in [home, *home.rglob("*")]}


def test_a_fresh_home_is_0700_with_0600_files_after_real_cli_commands(tmp_path):
    home = tmp_path / "nested" / "home"  # parents missing too
    cloudact(home, "orgs", "create", "acme")
    cred = tmp_path / "openai.json"
    cred.write_text(json.dumps({"admin_key": "sk-admin-" + "a1b2c3d4" * 6}))
    cloudact(home, "credentials", "add", "acme", "openai", "--from-json", str(cred))

    got = modes(home)
    assert {".", "warehouse.duckdb", "secret.key"} <= set(got), got
    for name, m in got.items():
        want = 0o700 if (home / name).is_dir() else 0o600
        assert m == want, f"{name} is {oct(m)}, want {oct(want)}: {got}"


def test_the_wal_and_spill_files_duckdb_creates_itself_are_owner_only(tmp_path):
    """DuckDB writes warehouse.duckdb.wal (again after every checkpoint) and spills to warehouse.duckdb.tmp/;
    both are looked at while the warehouse is open, from a process started with umask 022."""
    home = tmp_path / "home"
    probe = (
        "import json, stat, sys\n"
        "from pathlib import Path\n"
        "from shared.warehouse.duckdb import DuckDBWarehouse\n"
        "home = Path(sys.argv[1])\n"
        "con = DuckDBWarehouse(home / 'warehouse.duckdb')._con\n"
        "seen = {}\n"
        "def look():\n"
        "    for p in [home, *home.rglob('*')]:\n"
        "        seen.setdefault(str(p.relative_to(home)), stat.S_IMODE(p.stat().st_mode))\n"
        "con.execute('CREATE TABLE t AS SELECT range AS i FROM range(10)')\n"
        "con.execute('CHECKPOINT')\n"
        "con.execute('CREATE TABLE u AS SELECT range AS a, md5(range::VARCHAR) AS b FROM range(2000000)')\n"
        "look()  # the WAL, recreated after the checkpoint\n"
        "con.execute('SELECT b, count(*) FROM u GROUP BY b ORDER BY b LIMIT 1').fetchall()  # over 64MB: spills\n"
        "look()\n"
        "print(json.dumps(seen))\n"
    )
    env = dict(_env(home), CLOUDACT_DUCKDB_MEMORY_LIMIT="64MB", CLOUDACT_DUCKDB_THREADS="1")
    res = subprocess.run([sys.executable, "-c", probe, str(home)], cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=120, preexec_fn=lambda: os.umask(0o022))
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert "warehouse.duckdb.wal" in seen, seen
    assert any(name.startswith("warehouse.duckdb.tmp/") for name in seen), f"nothing spilled: {seen}"
    for name, m in seen.items():
        want = 0o700 if name == "." or name == "warehouse.duckdb.tmp" else 0o600
        assert m == want, f"{name} is {oct(m)}, want {oct(want)}: {seen}"


def test_a_home_left_readable_by_an_older_version_is_tightened(tmp_path):
    home = tmp_path / "home"
    cloudact(home, "orgs", "create", "acme")
    home.chmod(0o755)
    (home / "warehouse.duckdb").chmod(0o644)
    cloudact(home, "orgs", "list")
    assert mode(home) == 0o700 and mode(home / "warehouse.duckdb") == 0o600


def test_a_users_own_folder_keeps_its_mode_but_not_its_files(tmp_path):
    """CLOUDACT_HOME pointed at a folder with other things in it: the folder is the user's, not ours to
    chmod; what CloudAct creates in it is still 0600."""
    home = tmp_path / "shared-folder"
    home.mkdir()
    home.chmod(0o755)
    (home / "notes.txt").write_text("the user's")
    cloudact(home, "orgs", "create", "acme")
    assert mode(home) == 0o755
    assert mode(home / "warehouse.duckdb") == 0o600
