"""Repositories in an S3 bucket, against a real S3 server on 127.0.0.1
(moto's `moto_server`, started by the fixture as a subprocess).

The same commands as for a local repository: init, backup, snapshots, the
mount compared with the source tree, restore, check --read-data, prune and
gc; two hosts backing up into one bucket at once; a bucket that does not
exist and wrong credentials are one-line errors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Mount, histfs, reads_across_gc, reap
from tests.trees import source_state, without_ctime

boto3 = pytest.importorskip("boto3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """The endpoint of a moto S3 server, stopped (by its pid) at the end."""
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc, "moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        reap(proc, terminate=True)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    """Until a server the test started accepts connections on `port`."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{what} did not start") from None
            time.sleep(0.05)


@pytest.fixture
def bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
           ) -> str:
    """A new empty bucket; histfs finds the server through the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "histfs-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "histfs-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("HISTFS_S3_ENDPOINT", s3_server)
    monkeypatch.setenv("HISTFS_PASSPHRASE", "s3 test passphrase")
    name = "histfs-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket=name)
    return name


def make_tree(root: Path, seed: int = 0) -> Path:
    (root / "mail" / "cur").mkdir(parents=True)
    for i in range(30):
        (root / "mail" / "cur" / f"{i}.eml").write_bytes(b"Subject: %d\n\n" % i + b"x" * (i * 97))
    (root / "dump.sql").write_bytes(os.urandom(3_000_000) + b"%d" % seed)
    os.symlink("mail/cur/1.eml", root / "link")
    return root


def restored(path: Path) -> dict[bytes, tuple[object, ...]]:
    return without_ctime(source_state(path))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("encryption", ["repokey", "none"])
def test_round_trip_in_a_bucket(bucket: str, tmp_path: Path, encryption: str,
                                mount_repo: Callable[..., Mount]) -> None:
    url = f"s3://{bucket}/repo"
    src = make_tree(tmp_path / "src")
    histfs("init", "--encryption", encryption, url, check=0)
    histfs("backup", "--repo", url, "--host", "mx1", f"data={src}", check=0)
    (src / "mail" / "cur" / "new.eml").write_bytes(b"a new message\n")
    proc = histfs("backup", "--repo", url, "--host", "mx1", "--json", f"data={src}", check=0)
    assert json.loads(proc.stdout)["bytes_added"] < 10_000
    proc = histfs("snapshots", "--repo", url, "--json", check=0)
    assert len(json.loads(proc.stdout)) == 2
    histfs("check", "--repo", url, "--read-data", check=0)
    target = tmp_path / "restored"
    histfs("restore", "--repo", url, "last", "--target", str(target), check=0)
    assert restored(target / "data") == restored(src)
    m = mount_repo(url)
    assert source_state(m.path / "mx1" / "last" / "data") == source_state(src)
    histfs("prune", "--repo", url, "--keep-last", "1", check=0)
    histfs("gc", "--repo", url, "--grace", "0", check=0)
    histfs("check", "--repo", url, "--read-data", check=0)
    proc = histfs("snapshots", "--repo", url, "--json", check=0)
    assert len(json.loads(proc.stdout)) == 1


@pytest.mark.timeout(300)
@pytest.mark.parametrize("encryption", ["repokey", "none"])
def test_reads_across_gc_in_a_bucket(
        bucket: str, tmp_path: Path, mount_repo: Callable[..., Mount], encryption: str) -> None:
    url = f"s3://{bucket}/repo"
    histfs("init", "--encryption", encryption, url, check=0)
    reads_across_gc(url, tmp_path / "src", mount_repo)


@pytest.mark.timeout(300)
def test_two_hosts_into_one_bucket_at_once(bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/repo"
    shared = os.urandom(2_000_000)
    sources = {}
    for host in ("mx1", "mx2"):
        src = make_tree(tmp_path / host, seed=len(host))
        (src / "shared.bin").write_bytes(shared)
        sources[host] = src
    histfs("init", url, check=0)
    procs = {host: subprocess.Popen(
        [sys.executable, "-m", "histfs", "backup", "--repo", url, "--host", host, "--json",
         f"data={src}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for host, src in sources.items()}
    added = {}
    for host, p in procs.items():
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        added[host] = json.loads(out)["bytes_added"]
    histfs("check", "--repo", url, "--read-data", check=0)
    for host, src in sources.items():
        target = tmp_path / f"restored-{host}"
        histfs("restore", "--repo", url, "--host", host, "last", "--target", str(target),
               check=0)
        assert restored(target / "data") == restored(src)
    # Running at once, neither saw the other's packs; from now on every host
    # deduplicates against both.
    assert all(0 < a < 3_000_000 + len(shared) + 100_000 for a in added.values()), added
    third = tmp_path / "mx3"
    third.mkdir()
    (third / "shared.bin").write_bytes(shared)
    proc = histfs("backup", "--repo", url, "--host", "mx3", "--json", f"data={third}",
                  check=0)
    assert json.loads(proc.stdout)["bytes_added"] < 10_000


@pytest.mark.timeout(120)
def test_bucket_problems_are_one_line_errors(bucket: str, tmp_path: Path) -> None:
    proc = histfs("snapshots", "--repo", "s3://no-such-bucket-here/repo")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = histfs("snapshots", "--repo", f"s3://{bucket}/nothing-here")
    assert proc.returncode == 2 and "no histfs repository" in proc.stderr, proc.stderr


@pytest.mark.timeout(120)
def test_a_sealed_index_in_a_bucket_said_to_be_clear_is_refused(
        bucket: str, tmp_path: Path, s3_server: str) -> None:
    """The config object replaced by a clear one and the key object deleted:
    the snapshot index, downloaded into an empty cache, is still sealed,
    and restore refuses it rather than reading it as plain data."""
    from index.format.config import RepoConfig
    from index.format.keys import KEY_FILE

    url = f"s3://{bucket}/repo"
    src = make_tree(tmp_path / "src")
    histfs("init", "--encryption", "repokey", url, check=0)
    histfs("backup", "--repo", url, "--host", "mx1", f"data={src}", check=0)
    client = boto3.client("s3", endpoint_url=s3_server)
    real = json.loads(client.get_object(Bucket=bucket, Key="repo/config")["Body"].read())
    fake = json.loads(RepoConfig.new().to_json())
    fake["id"] = real["id"]
    client.put_object(Bucket=bucket, Key="repo/config", Body=json.dumps(fake).encode())
    client.delete_object(Bucket=bucket, Key=f"repo/{KEY_FILE}")
    fresh = tmp_path / "fresh-cache"
    fresh.mkdir()
    proc = histfs("restore", "--repo", url, "last", "--target", str(tmp_path / "out"),
                  env={"HISTFS_CACHE_DIR": str(fresh)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    error = proc.stderr.splitlines()[-1]
    assert "snapshot index" in error and "is encrypted" in error, proc.stderr
    assert not (tmp_path / "out").exists()


# -- faults between histfs and the bucket ----------------------------------------


class Proxy:
    def __init__(self, endpoint: str, control: Path) -> None:
        self.control = control
        self.port = _free_port()
        upstream = endpoint.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("s3proxy.py")), upstream,
             str(self.port), str(control)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(self.port, self.proc, "s3proxy")
        except BaseException:
            self.stop()  # the fixture never saw this one
            raise

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rules(self, *lines: str) -> None:
        self.control.write_text("".join(f"{line}\n" for line in lines))

    def stop(self) -> None:
        reap(self.proc, terminate=True)

    def kill_while_slow(self, *args: str) -> None:
        """Run `histfs ARGS` through the proxy with every request slowed
        down, and kill -9 it after 3 seconds (it must still be running)."""
        self.rules("every 1 stall 0.2")
        proc = subprocess.Popen([sys.executable, "-m", "histfs", *args],
                                env={**os.environ, "HISTFS_S3_ENDPOINT": self.endpoint},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)
        assert proc.poll() is None, f"histfs {args[0]} ended before it could be killed"
        proc.kill()
        proc.wait()
        self.rules()


@pytest.fixture
def proxy(s3_server: str, tmp_path: Path) -> Iterator[Proxy]:
    p = Proxy(s3_server, tmp_path / "proxy-rules")
    try:
        yield p
    finally:
        p.stop()


def snapshot_count(url: str, endpoint: str) -> int:
    proc = histfs("snapshots", "--repo", url, "--json", check=0,
                  env={"HISTFS_S3_ENDPOINT": endpoint})
    return len(json.loads(proc.stdout))


@pytest.mark.timeout(300)
def test_transient_errors_are_retried(bucket: str, tmp_path: Path, proxy: Proxy,
                                      s3_server: str, figures: Callable[[str], None]) -> None:
    url = f"s3://{bucket}/repo"
    src = make_tree(tmp_path / "src")
    histfs("init", url, check=0)
    proxy.rules("every 4 503", "every 9 reset")
    env = {"HISTFS_S3_ENDPOINT": proxy.endpoint}
    histfs("backup", "--repo", url, "--host", "mx1", f"data={src}", check=0, env=env)
    target = tmp_path / "restored"
    histfs("restore", "--repo", url, "last", "--target", str(target), check=0, env=env)
    proxy.rules()
    histfs("check", "--repo", url, "--read-data", check=0)
    assert restored(target / "data") == restored(src)
    figures("S3 with every 4th request answered 503 and every 9th connection reset: "
            "backup, restore and check succeed by retrying")


@pytest.mark.timeout(300)
def test_permanent_failure_publishes_nothing(bucket: str, tmp_path: Path, proxy: Proxy,
                                            s3_server: str) -> None:
    url = f"s3://{bucket}/repo"
    src = make_tree(tmp_path / "src")
    histfs("init", url, check=0)
    proxy.rules("fail PUT /packs/")
    proc = histfs("backup", "--repo", url, "--host", "mx1", f"data={src}",
                  env={"HISTFS_S3_ENDPOINT": proxy.endpoint})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "denied" in proc.stderr, proc.stderr
    assert snapshot_count(url, s3_server) == 0
    proxy.rules()
    histfs("backup", "--repo", url, "--host", "mx1", f"data={src}", check=0)
    histfs("check", "--repo", url, "--read-data", check=0)
    assert snapshot_count(url, s3_server) == 1


@pytest.mark.timeout(300)
def test_killed_upload_leaves_no_snapshot(bucket: str, tmp_path: Path, proxy: Proxy,
                                          s3_server: str) -> None:
    url = f"s3://{bucket}/repo"
    src = make_tree(tmp_path / "src")
    (src / "big.bin").write_bytes(os.urandom(40_000_000))
    histfs("init", url, check=0)
    proxy.kill_while_slow("backup", "--repo", url, "--host", "mx1", f"data={src}")
    assert snapshot_count(url, s3_server) == 0
    histfs("check", "--repo", url, check=0)
    histfs("backup", "--repo", url, "--host", "mx1", f"data={src}", check=0)
    histfs("check", "--repo", url, "--read-data", check=0)
    assert snapshot_count(url, s3_server) == 1


@pytest.mark.timeout(300)
def test_index_cache_is_bounded(bucket: str, tmp_path: Path, cache_dir: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for no copy beyond the one in use, every snapshot still
    opens (fetched again as needed) and at most one copy stays."""
    from index.model.repository import Repository

    url = f"s3://{bucket}/repo"
    src = make_tree(tmp_path / "src")
    histfs("init", url, check=0)
    for i in range(3):
        (src / f"day-{i}").write_text(f"day {i}\n")
        histfs("backup", "--repo", url, "--host", "mx1", f"data={src}", check=0)
    monkeypatch.setenv("HISTFS_INDEX_CACHE_MB", "0")
    repo = Repository.open(url, passphrase=lambda: "s3 test passphrase")
    try:
        refs = repo.snapshots()
        assert len(refs) == 3
        # The backups cached copies of the indexes they compared against.
        shutil.rmtree(repo.cache.path / "indexes")
        for _ in range(2):
            for i, ref in enumerate(refs):
                with repo.open_snapshot(ref) as snap:
                    entry = snap.resolve(f"data/day-{i}")
                    assert snap.read(entry, 0, 100) == f"day {i}\n".encode()
                copies = list((repo.cache.path / "indexes").glob("*/*.idx"))
                assert len(copies) == 1, [c.name for c in copies]
    finally:
        repo.close()


@pytest.mark.timeout(300)
def test_copy_to_a_bucket_only_what_is_missing(bucket: str, tmp_path: Path,
                                               mount_repo: Callable[..., Mount],
                                               figures: Callable[[str], None]) -> None:
    """An encrypted local repository copied into an unencrypted bucket (other
    keys, other ids): every snapshot reads exactly there; a second copy adds
    only the new snapshot's new chunks; an interrupted copy finishes later."""
    local = tmp_path / "local"
    url = f"s3://{bucket}/offsite"
    src = make_tree(tmp_path / "src")
    histfs("init", str(local), check=0)
    histfs("init", "--encryption", "none", url, check=0)
    states = []
    for i in range(2):
        (src / f"day-{i}.txt").write_text(f"day {i}\n" * 1000)
        histfs("backup", "--repo", str(local), "--host", "mx1", f"data={src}", check=0)
        states.append(restored(src))
    proc = histfs("copy", "--from", str(local), "--to", url, "--json", check=0)
    first = json.loads(proc.stdout)
    assert len(first["copied"]) == 2 and first["skipped"] == []
    (src / "day-2.txt").write_text("day 2\n" * 1000)
    histfs("backup", "--repo", str(local), "--host", "mx1", f"data={src}", check=0)
    states.append(restored(src))
    proc = histfs("copy", "--from", str(local), "--to", url, "--json", check=0)
    second = json.loads(proc.stdout)
    assert len(second["copied"]) == 1 and len(second["skipped"]) == 2
    assert second["bytes_added"] < first["bytes_added"] / 10
    histfs("check", "--repo", url, "--read-data", check=0)
    names = json.loads(histfs("snapshots", "--repo", url, "--json", check=0).stdout)
    for snap, state in zip(names, states, strict=True):
        target = tmp_path / f"restored-{snap['name']}"
        histfs("restore", "--repo", url, snap["name"], "--target", str(target), check=0)
        assert restored(target / "data") == state
    m = mount_repo(url)
    assert source_state(m.path / "mx1" / "last" / "data") == source_state(src)
    figures(f"copy local (encrypted) -> bucket: 2 snapshots {first['bytes_added']} bytes, "
            f"then 1 more {second['bytes_added']} bytes; every snapshot restores exactly")


@pytest.mark.timeout(300)
def test_interrupted_copy_finishes_later(bucket: str, tmp_path: Path, proxy: Proxy,
                                         s3_server: str) -> None:
    local = tmp_path / "local"
    url = f"s3://{bucket}/offsite"
    src = make_tree(tmp_path / "src")
    (src / "big.bin").write_bytes(os.urandom(40_000_000))
    histfs("init", "--encryption", "none", str(local), check=0)
    histfs("backup", "--repo", str(local), "--host", "mx1", f"data={src}", check=0)
    histfs("init", url, check=0)
    proxy.kill_while_slow("copy", "--from", str(local), "--to", url)
    assert snapshot_count(url, s3_server) == 0
    proc = histfs("copy", "--from", str(local), "--to", url, "--json", check=0)
    assert len(json.loads(proc.stdout)["copied"]) == 1
    histfs("check", "--repo", url, "--read-data", check=0)
    target = tmp_path / "restored"
    histfs("restore", "--repo", url, "last", "--target", str(target), check=0)
    assert restored(target / "data") == restored(src)


@pytest.mark.timeout(300)
def test_mount_answers_while_a_pack_read_waits(bucket: str, tmp_path: Path, proxy: Proxy,
                                               mount_repo: Callable[..., Mount],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A read whose pack GET hangs does not hold up the file system: while
    it waits, listings and attributes are answered (from the indexes in the
    local cache), then the read completes with the right bytes."""
    import threading

    url = f"s3://{bucket}/repo"
    src = make_tree(tmp_path / "src")
    histfs("init", url, check=0)
    histfs("backup", "--repo", url, "--host", "mx1", f"data={src}", check=0)
    monkeypatch.setenv("HISTFS_S3_ENDPOINT", proxy.endpoint)
    m = mount_repo(url)
    data = m.path / "mx1" / "last" / "data"
    before = sorted(os.listdir(data))  # fetches the index while nothing is held
    proxy.rules("hold GET /packs/")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append((data / "dump.sql").read_bytes()))
    reader.start()
    try:
        for _ in range(20):
            assert sorted(os.listdir(data)) == before
            assert os.stat(data / "dump.sql").st_size == (src / "dump.sql").stat().st_size
            assert sorted(os.listdir(data / "mail" / "cur")) == sorted(
                os.listdir(src / "mail" / "cur"))
        assert reader.is_alive() and not got  # the read still waits for its pack
    finally:
        proxy.rules()
        reader.join(timeout=60)
    assert got == [(src / "dump.sql").read_bytes()]


@pytest.mark.timeout(300)
def test_dry_run_against_a_bucket_changes_nothing(bucket: str, tmp_path: Path,
                                                  cache_dir: Path, s3_server: str) -> None:
    """`backup --dry-run` of an encrypted repository in a bucket, whose
    previous index is not in the local cache: it is fetched into a temporary
    file; the bucket and the cache are the same afterwards."""
    url = f"s3://{bucket}/repo"
    src = make_tree(tmp_path / "src")
    histfs("init", url, check=0)
    histfs("backup", "--repo", url, "--host", "mx1", f"data={src}", check=0)
    (src / "mail" / "cur" / "new.eml").write_bytes(b"a new message\n")
    for indexes in cache_dir.glob("*/indexes"):
        shutil.rmtree(indexes)
    client = boto3.client("s3", endpoint_url=s3_server)

    def state() -> tuple[list[tuple[str, str]], list[tuple[str, bytes]]]:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        files = sorted((str(p), p.read_bytes() if p.is_file() else b"")
                       for p in cache_dir.rglob("*"))
        return sorted((o["Key"], o["ETag"]) for o in listed), files

    before = state()
    proc = histfs("backup", "--repo", url, "--host", "mx1", f"data={src}", "--dry-run",
                  "--json", check=0)
    assert state() == before
    dry = json.loads(proc.stdout)
    assert (dry["files_new"], dry["files_unchanged"], dry["other_entries"]) == (1, 31, 1)
