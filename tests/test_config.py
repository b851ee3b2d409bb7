"""Configuration and the conventions a scheduler and a shell rely on: a bad setting is one line
and exit 2, yes/no variables mean what they say, global options go anywhere, pipes may close,
help says what each option does, results honour the umask."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from batch_support import REPO, run_cli, small_disk, start_serve, stop_process, summary

from pipeline._cli import options
from pipeline._cli.main import build_parser
from pipeline.errors import ConfigError

pytestmark = pytest.mark.integration

NUMERIC = ["SAMPLE_MS", "MAX_BYTES", "MAX_SECONDS", "CONCURRENCY", "RATE_LIMIT", "LOCK_WAIT",
           "DOWNLOAD_MAX_BYTES", "DOWNLOAD_TIMEOUT"]


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


@pytest.mark.parametrize("name", NUMERIC)
def test_a_numeric_variable_that_is_not_a_number_is_exit_2(name: str, small_video: Path,
                                                           tmp_path: Path) -> None:
    """VIDEO_PIPELINE_<NAME>=abc: `run` says which variable is wrong and exits 2; `--help` and
    `probe` (which do not use it) still work."""
    env = {f"VIDEO_PIPELINE_{name}": "abc"}
    done = run_cli("run", str(small_video), "--out", str(tmp_path / "out"), env=env)
    no_traceback(done)
    assert done.returncode == 2 and f"VIDEO_PIPELINE_{name}" in done.stderr
    assert not (tmp_path / "out").exists()
    assert run_cli("--help", env=env).returncode == 0
    assert run_cli("probe", str(small_video), env=env).returncode == 0


@pytest.mark.parametrize("flags", [["--max-seconds", "nan"], ["--max-seconds", "inf"],
                                   ["--rate-limit", "nan"], ["--rate-limit", "-inf"],
                                   ["--sample-ms", "1e3"], ["--lock-wait", "nan"]])
def test_numbers_that_are_not_finite_are_exit_2(flags: list[str], small_video: Path,
                                                tmp_path: Path) -> None:
    """nan and inf are refused with one line naming the flag."""
    done = run_cli("run", str(small_video), "--out", str(tmp_path / "out"), *flags)
    no_traceback(done)
    assert done.returncode == 2 and flags[0] in done.stderr


def test_out_naming_a_file_is_exit_2(small_video: Path, tmp_path: Path) -> None:
    """--out is a file: one line, exit 2, nothing processed."""
    a_file = tmp_path / "results"
    a_file.write_text("not a folder")
    done = run_cli("run", str(small_video), "--out", str(a_file))
    no_traceback(done)
    assert done.returncode == 2 and "is a file" in done.stderr


def test_out_on_a_read_only_file_system_is_exit_2(small_video: Path, tmp_path: Path) -> None:
    """--out on a read-only mount: one line, exit 2."""
    with small_disk(tmp_path / "ro", "1m", read_only=True) as disk:
        done = run_cli("run", str(small_video), "--out", str(disk / "out"))
    no_traceback(done)
    assert done.returncode == 2 and "cannot be written" in done.stderr
    assert "read-only" in done.stderr.lower()


def resolved(argv: list[str], environ: dict[str, str]) -> dict[str, object]:
    args = build_parser().parse_args(["run", "x.mp4", "--out", "o", *argv])
    got = options.settings(args, environ, run=True)
    return {"insecure": got.api.insecure, "force": got.batch.force,
            "keep_audio": got.strategy.keeps_audio, "sample_ms": got.sample_ms}


@pytest.mark.parametrize("value,expected", [("0", False), ("false", False), ("No", False),
                                            ("OFF", False), ("1", True), ("TRUE", True),
                                            ("yes", True), ("On", True)])
@pytest.mark.parametrize("name", ["INSECURE", "FORCE", "KEEP_AUDIO"])
def test_yes_no_variables_read_yes_and_no(name: str, value: str, expected: bool) -> None:
    """0/false/no/off mean off, 1/true/yes/on mean on, in any case."""
    got = resolved([], {f"VIDEO_PIPELINE_{name}": value})
    assert got[name.lower()] is expected


@pytest.mark.parametrize("name", ["INSECURE", "FORCE", "KEEP_AUDIO", "NO_PROGRESS"])
def test_a_yes_no_variable_with_another_value_is_a_configuration_error(name: str) -> None:
    """VIDEO_PIPELINE_INSECURE=maybe is not quietly yes."""
    with pytest.raises(ConfigError, match=f"VIDEO_PIPELINE_{name}"):
        resolved([], {f"VIDEO_PIPELINE_{name}": "maybe"})


def test_a_flag_wins_over_its_variable() -> None:
    """--sample-ms 500 with VIDEO_PIPELINE_SAMPLE_MS=2000 is 500; the variable fills in when
    the flag is absent."""
    environ = {"VIDEO_PIPELINE_SAMPLE_MS": "2000"}
    assert resolved(["--sample-ms", "500"], environ)["sample_ms"] == 500
    assert resolved([], environ)["sample_ms"] == 2000


def test_force_0_from_the_environment_does_not_redo_a_done_video(small_video: Path,
                                                                 tmp_path: Path) -> None:
    """VIDEO_PIPELINE_FORCE=0 on a rerun: skipped as already done, not redone."""
    out = tmp_path / "out"
    assert run_cli("run", str(small_video), "--out", str(out)).returncode == 0
    again = run_cli("run", str(small_video), "--out", str(out),
                    env={"VIDEO_PIPELINE_FORCE": "0"})
    assert again.returncode == 0, again.stderr
    (entry,) = summary(out)["inputs"]
    assert entry["status"] == "skipped"


def test_global_options_are_accepted_after_the_subcommand(small_video: Path,
                                                          tmp_path: Path) -> None:
    """`run ... --log-format json -v`: every stderr line is a JSON object, and the summary line
    on stdout is one too."""
    done = run_cli("run", str(small_video), "--out", str(tmp_path / "out"), "--log-format",
                   "json", "-v", "--no-progress")
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert lines and all(isinstance(json.loads(ln), dict) for ln in lines)
    assert json.loads(done.stdout)["done"] == 1


def test_a_closed_pipe_is_not_an_error(small_video: Path) -> None:
    """`plan VIDEO | head -1`: one line out, no traceback, exit 0."""
    shell = (f"{sys.executable} -m pipeline plan {small_video} --max-bytes 100000 | head -1; "
             "echo status=${PIPESTATUS[0]}")
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    no_traceback(done)
    assert done.stdout.splitlines()[-1] == "status=0"
    assert len(done.stdout.splitlines()) == 2


def test_run_help_says_what_every_option_does_and_its_default() -> None:
    """Every run option has a help text that gives its default and its variable."""
    done = run_cli("run", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for option in (*options.LIMITS, *options.RUN):
        assert option.flag in text
        assert option.env in text, option.flag
        assert "default" in option.help, option.flag
    for flag in ("--out", "--backend", "--sample-ms", "--concurrency", "--rate-limit",
                 "--insecure", "--force", "--no-progress"):
        assert f"{flag} " in text


def test_serve_refuses_a_port_in_use_and_a_port_out_of_range() -> None:
    """A second serve on a busy port, or --port 70000: one line, exit 2, never a silent start."""
    first, port = start_serve()
    try:
        busy = run_cli("serve", "--port", str(port), timeout=30)
        assert busy.returncode == 2 and "in use" in busy.stderr, busy.stderr
        wild = run_cli("serve", "--port", "70000", timeout=30)
        assert wild.returncode == 2 and "--port" in wild.stderr
        for done in (busy, wild):
            no_traceback(done)
    finally:
        stop_process(first, 10)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_results_honour_the_umask(small_video: Path, tmp_path: Path, umask: int,
                                  mode: int) -> None:
    """Result files get the umask's mode (teams and Dask workers share them), not 0600."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", str(small_video), "--out",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          umask=umask)
    assert done.returncode == 0, done.stderr
    written = [p for p in out.rglob("*") if p.is_file() and ".locks" not in p.parts]
    assert {"summary.json", "timeline.json", "frames.csv"} <= {p.name for p in written}
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {mode}
