"""The test tiers hold (tests/tiers.py): a module without its tier stops the session before any
test runs, and a test marked pure that starts a process or uses the network fails, however it
did it. Proved by running pytest with the tiers plugin on small test modules written here."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from batch_support import REPO

pytestmark = pytest.mark.integration


def pytest_on(folder: Path, modules: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """pytest, with the tiers plugin and this project's markers, on `modules` in `folder`."""
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    (folder / "pytest.ini").write_text(
        "[pytest]\naddopts = --strict-markers -p tiers -p no:cacheprovider\nmarkers =\n"
        + "".join(f"    {line}\n" for line in ini["markers"]))
    for name, text in modules.items():
        (folder / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rN", str(folder)],
                          cwd=folder, env=env, text=True, capture_output=True, timeout=120)


def test_a_module_without_its_tier_stops_the_session_naming_it(tmp_path: Path) -> None:
    """No tier, two tiers, or pure with a need: a usage error naming each module, exit 4,
    no test run; with their tiers right the same modules run."""
    wrong = {
        "test_none.py": "def test_one():\n    assert True\n",
        "test_both.py": "import pytest\npytestmark = [pytest.mark.pure, pytest.mark.integration]"
                        "\ndef test_one():\n    assert True\n",
        "test_needy.py": "import pytest\npytestmark = [pytest.mark.pure, pytest.mark.browser]\n"
                         "def test_one():\n    assert True\n",
        "test_fine.py": "import pytest\npytestmark = pytest.mark.pure\n"
                        "def test_one():\n    assert True\n"}
    done = pytest_on(tmp_path, wrong)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "test_none.py: a module-level `pytestmark` must carry exactly one of pure, " \
           "integration, not none" in done.stderr
    assert "test_both.py: a module-level `pytestmark` must carry exactly one of pure, " \
           "integration, not ['pure', 'integration']" in done.stderr
    assert "test_needy.py: pure, yet needs browser: that is integration" in done.stderr
    assert "test_fine.py" not in done.stderr and "passed" not in done.stdout
    right = {"test_none.py": "import pytest\npytestmark = pytest.mark.integration\n"
                             "def test_one():\n    assert True\n",
             "test_both.py": "import pytest\npytestmark = pytest.mark.integration\n"
                             "def test_one():\n    assert True\n",
             "test_needy.py": "import pytest\npytestmark = [pytest.mark.integration, "
                              "pytest.mark.browser]\ndef test_one():\n    assert True\n"}
    again = pytest_on(tmp_path, right)
    assert again.returncode == 0 and "4 passed" in again.stdout, again.stdout + again.stderr


IMPURE = '''
import socket, subprocess, sys, threading
from concurrent.futures import ThreadPoolExecutor
import grpc
import pytest
pytestmark = pytest.mark.{tier}

@pytest.fixture(scope="session")
def made():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_process_error_swallowed():
    try:
        subprocess.run(["ffprobe", "-version"], capture_output=True)
    except Exception:
        pass

def test_socket():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))

def test_grpc_server():
    grpc.server(ThreadPoolExecutor(1)).add_insecure_port("127.0.0.1:0")

def test_thread_of_the_test():
    t = threading.Thread(target=subprocess.run, args=([sys.executable, "-c", "pass"],))
    t.start()
    t.join()

def test_fixture(made):
    pass

def test_in_process(tmp_path):
    (tmp_path / "x").write_text("files are fine")
    assert sum(range(4)) == 6
'''


def test_a_pure_test_that_starts_a_process_or_uses_the_network_fails(tmp_path: Path) -> None:
    """Marked pure: a child process (even one whose error the code swallowed, or one a thread
    of the test starts), a bound socket, a gRPC server, a fixture that runs a process: each
    fails, naming what it did; plain in-process work passes. Marked integration: all pass."""
    done = pytest_on(tmp_path, {"test_impure.py": IMPURE.format(tier="pure")})
    last = done.stdout.splitlines()[-1]
    assert all(n in last for n in ("5 failed", "1 passed", "1 error")), done.stdout
    for test, did in (("test_process", "subprocess.Popen"),
                      ("test_process_error_swallowed", "subprocess.Popen"),
                      ("test_socket", "socket.bind"), ("test_grpc_server", "grpc.server()"),
                      ("test_thread_of_the_test", "subprocess.Popen"),
                      ("test_fixture", "subprocess.Popen")):
        line = next(x for x in done.stdout.splitlines()
                    if f"NotPure: test_impure.py::{test} is marked pure but did" in x)
        assert did in line, line
    done = pytest_on(tmp_path, {"test_impure.py": IMPURE.format(tier="integration")})
    assert done.returncode == 0 and "7 passed" in done.stdout, done.stdout + done.stderr
