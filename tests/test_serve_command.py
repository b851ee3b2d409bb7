"""`video-pipeline serve` on the one command line: its options come from the same table as a
run's (the flag, else its VIDEO_PIPELINE_SERVE_<NAME> variable, else the default), its signals
from the same place, its exit codes from the one map; the serve library itself neither prints,
reads the environment, parses arguments nor handles signals."""

from __future__ import annotations

import ast
import json
import signal
import time
from pathlib import Path

import grpc
import pytest
from batch_support import REPO, cli, run_cli
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2

from pipeline._cli import commands, options
from pipeline._cli.exits import ExitCode
from pipeline._cli.main import build_parser
from pipeline.errors import ConfigError
from pipeline.serve.faults import Fault
from pipeline.serve.inputs import InputLimits
from pipeline.serve.server import ServeConfig

pytestmark = pytest.mark.integration

KEY = "serve-command-key"

# Every flag `serve` had when it parsed its own command line; none may be lost.
SERVE_FLAGS = ("--host", "--port", "--api-key", "--max-bytes", "--max-url-bytes",
               "--max-seconds", "--fault-rate", "--fault-seed", "--fault-codes", "--fault-at",
               "--latency-ms", "--request-log", "--allow-local-urls", "--workers",
               "--max-image-pixels", "--max-request-bytes", "--url-timeout", "--key-rate-limit")


def config(*argv: str, **env: str) -> ServeConfig:
    return commands.serve_config(build_parser().parse_args(["serve", *argv]), env)


def test_with_nothing_set_serve_gets_the_library_defaults() -> None:
    """No flag and no variable: exactly ServeConfig()'s defaults (127.0.0.1:50051, no key,
    Clarifai's limits, every retryable fault, 8 workers)."""
    assert config() == ServeConfig()


def test_every_serve_flag_is_in_the_table_with_its_variable(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each flag serve had is an option with VIDEO_PIPELINE_SERVE_<NAME> (the key keeps
    VIDEO_PIPELINE_API_KEY), and `serve --help` names the variable."""
    table = {o.flag: o.env for o in options.SERVE}
    assert tuple(table) == SERVE_FLAGS
    assert table["--api-key"] == "VIDEO_PIPELINE_API_KEY"
    assert table["--max-bytes"] == "VIDEO_PIPELINE_SERVE_MAX_BYTES"
    assert table["--allow-local-urls"] == "VIDEO_PIPELINE_SERVE_ALLOW_LOCAL_URLS"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, env in table.items():
        assert flag in text and f"(env {env})" in text, flag


def test_a_flag_wins_over_its_variable_which_wins_over_the_default() -> None:
    """Flag first, then VIDEO_PIPELINE_SERVE_<NAME>, then the default, option by option; the
    fault lists parse the same from either place."""
    env = {"VIDEO_PIPELINE_SERVE_WORKERS": "3", "VIDEO_PIPELINE_SERVE_LATENCY_MS": "250",
           "VIDEO_PIPELINE_SERVE_ALLOW_LOCAL_URLS": "yes",
           "VIDEO_PIPELINE_SERVE_FAULT_CODES": "UNAVAILABLE,output:21354",
           "VIDEO_PIPELINE_SERVE_FAULT_AT": "2,5", "VIDEO_PIPELINE_SERVE_URL_TIMEOUT": "2.5",
           "VIDEO_PIPELINE_SERVE_MAX_IMAGE_PIXELS": "1000",
           "VIDEO_PIPELINE_SERVE_REQUEST_LOG": "/tmp/requests.jsonl"}
    got = config("--workers", "5", "--fault-at", "7", "--host", "0.0.0.0", **env)
    assert got == ServeConfig(
        host="0.0.0.0", workers=5, latency_ms=250, fault_at=frozenset({7}),
        faults=(Fault(grpc.StatusCode.UNAVAILABLE), Fault(21354, per_output=True)),
        request_log="/tmp/requests.jsonl",
        limits=InputLimits(allow_local_urls=True, url_timeout=2.5, max_image_pixels=1000))
    assert config("--allow-local-urls",
                  VIDEO_PIPELINE_SERVE_ALLOW_LOCAL_URLS="no").limits.allow_local_urls


def test_a_run_variable_does_not_reach_serve() -> None:
    """VIDEO_PIPELINE_MAX_BYTES and _MAX_SECONDS (a run's chunk limits) leave serve's
    Clarifai limits alone; serve's own are VIDEO_PIPELINE_SERVE_MAX_BYTES and _MAX_SECONDS."""
    run_env = {"VIDEO_PIPELINE_MAX_BYTES": "200000", "VIDEO_PIPELINE_MAX_SECONDS": "5"}
    assert config(**run_env).limits == InputLimits()
    assert config(VIDEO_PIPELINE_SERVE_MAX_BYTES="200000",
                  VIDEO_PIPELINE_SERVE_MAX_SECONDS="5").limits == InputLimits(
        max_bytes=200_000, max_seconds=5.0)


def test_the_key_comes_from_the_flag_else_from_video_pipeline_api_key() -> None:
    """--api-key wins; no --api-key, or an empty one (a script's unset $KEY), reads
    VIDEO_PIPELINE_API_KEY; neither holding a key: none is needed."""
    assert config("--api-key", "flag", VIDEO_PIPELINE_API_KEY="env").api_key == "flag"
    assert config(VIDEO_PIPELINE_API_KEY="env").api_key == "env"
    assert config("--api-key", "", VIDEO_PIPELINE_API_KEY="env").api_key == "env"
    assert config("--api-key", "", VIDEO_PIPELINE_API_KEY="").api_key is None
    assert config().api_key is None


BAD: list[tuple[tuple[str, ...], dict[str, str], str]] = [
    (("--port", "70000"), {}, "--port must be between 0 and 65535, not 70000"),
    ((), {"VIDEO_PIPELINE_SERVE_PORT": "70000"},
     "VIDEO_PIPELINE_SERVE_PORT must be between 0 and 65535, not 70000"),
    ((), {"VIDEO_PIPELINE_SERVE_PORT": "http"},
     "VIDEO_PIPELINE_SERVE_PORT takes a whole number, not 'http'"),
    (("--fault-rate", "1.5"), {}, "--fault-rate must be between 0 and 1, not 1.5"),
    ((), {"VIDEO_PIPELINE_SERVE_FAULT_RATE": "-0.1"},
     "VIDEO_PIPELINE_SERVE_FAULT_RATE must be between 0 and 1, not -0.1"),
    (("--workers", "0"), {}, "--workers must be at least 1, not 0"),
    ((), {"VIDEO_PIPELINE_SERVE_LATENCY_MS": "-5"},
     "VIDEO_PIPELINE_SERVE_LATENCY_MS must be at least 0, not -5"),
    ((), {"VIDEO_PIPELINE_SERVE_URL_TIMEOUT": "0"},
     "VIDEO_PIPELINE_SERVE_URL_TIMEOUT must be more than 0, not 0.0"),
    ((), {"VIDEO_PIPELINE_SERVE_MAX_REQUEST_BYTES": "3000000000"},
     "VIDEO_PIPELINE_SERVE_MAX_REQUEST_BYTES must be 1..2147483647 (gRPC's largest "
     "message), not 3000000000"),
    ((), {"VIDEO_PIPELINE_SERVE_FAULT_CODES": "UNAVAILABLE,NOPE"},
     "VIDEO_PIPELINE_SERVE_FAULT_CODES: unknown gRPC status 'NOPE'"),
    (("--fault-at", "1,x"), {}, "--fault-at takes request numbers like 3,7, not '1,x'"),
    ((), {"VIDEO_PIPELINE_SERVE_ALLOW_LOCAL_URLS": "maybe"},
     "VIDEO_PIPELINE_SERVE_ALLOW_LOCAL_URLS takes yes or no (1/true/yes/on or "
     "0/false/no/off), not 'maybe'"),
]


@pytest.mark.parametrize(("argv", "env", "message"), BAD)
def test_a_bad_value_is_a_configuration_error_naming_where_it_came_from(
        argv: tuple[str, ...], env: dict[str, str], message: str) -> None:
    """A value that does not parse or is out of range, from the flag or from the variable:
    a ConfigError whose sentence names that flag or that variable."""
    with pytest.raises(ConfigError) as raised:
        config(*argv, **env)
    assert str(raised.value) == message


def test_a_bad_serve_variable_stops_the_command_with_exit_2_before_listening() -> None:
    """VIDEO_PIPELINE_SERVE_PORT=70000: one line naming the variable, exit 2, never a start."""
    done = run_cli("serve", env={"VIDEO_PIPELINE_SERVE_PORT": "70000"}, timeout=60)
    assert done.returncode == ExitCode.USAGE == 2
    assert done.stderr == ("video-pipeline: error: VIDEO_PIPELINE_SERVE_PORT must be between 0 "
                           "and 65535, not 70000\n")


def _predict(port: int, png: bytes) -> grpc.Future:
    item = resources_pb2.Input(data=resources_pb2.Data(image=resources_pb2.Image(base64=png)))
    channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=port)
    return service_pb2_grpc.V2Stub(channel).PostModelOutputs.future(
        service_pb2.PostModelOutputsRequest(model_id="nsfw", inputs=[item]),
        metadata=(("authorization", f"Key {KEY}"),), timeout=60)


def test_ctrl_c_lets_the_request_in_flight_finish_then_prints_stopped_and_exits_0(
        tmp_path: Path, png: bytes) -> None:
    """serve configured by its variables alone; SIGINT with a request in flight: the request
    is answered, stderr prints exactly `serving on 127.0.0.1:PORT` then `stopped` (besides its
    log lines), exit 0 within 5 s of the signal."""
    log = tmp_path / "requests.jsonl"
    proc = cli("serve", env={"VIDEO_PIPELINE_SERVE_PORT": "0", "VIDEO_PIPELINE_API_KEY": KEY,
                             "VIDEO_PIPELINE_SERVE_LATENCY_MS": "1500",
                             "VIDEO_PIPELINE_SERVE_REQUEST_LOG": str(log)})
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline()]
        while not lines[-1].startswith("serving on") and lines[-1]:
            lines.append(proc.stderr.readline())
        port = int(lines[-1].rsplit(":", 1)[1])
        future = _predict(port, png)
        time.sleep(0.5)
        assert not future.done()  # held by VIDEO_PIPELINE_SERVE_LATENCY_MS
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        assert future.result().status.code == status_code_pb2.SUCCESS
        assert proc.wait(timeout=30) == ExitCode.OK == 0
        took = time.monotonic() - signalled
        lines += proc.stderr.readlines()
        printed = [line for line in lines if not line.startswith("INFO ")]
        assert printed == [f"serving on 127.0.0.1:{port}\n", "stopped\n"], lines
        assert took < 5, took
        (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
        assert entry["status"] == status_code_pb2.SUCCESS
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# What the serve library may not do: the command line (pipeline/_cli) does it.
_FORBIDDEN_CALLS = {"print", "input", "exit"}
_FORBIDDEN_ATTRS = {("os", "environ"), ("os", "getenv"), ("os", "putenv"), ("os", "_exit"),
                    ("sys", "exit"), ("sys", "argv"), ("signal", "signal")}
_FORBIDDEN_MODULES = {"argparse", "signal", "getopt", "optparse"}


def _command_line_work(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _FORBIDDEN_CALLS:
            found.append(f"{path.name}:{node.lineno} {node.func.id}()")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and (node.value.id, node.attr) in _FORBIDDEN_ATTRS:
            found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                else [node.module or ""]
            found += [f"{path.name}:{node.lineno} import {n}" for n in names
                      if n.split(".")[0] in _FORBIDDEN_MODULES]
    return found


def test_the_serve_library_leaves_the_command_line_to_the_cli() -> None:
    """No module of pipeline/serve prints, reads the environment or argv, parses arguments,
    installs a signal handler or exits; and serve/cli.py is gone."""
    modules = sorted((REPO / "pipeline" / "serve").glob("*.py"))
    assert modules and not (REPO / "pipeline" / "serve" / "cli.py").exists()
    assert [hit for path in modules for hit in _command_line_work(path)] == []


def test_the_exit_codes_are_one_map() -> None:
    """0, 1, 2, 3 (reserved for --max-billed-frames) and 130 live in ExitCode alone: no other
    EXIT_ constant is defined in pipeline/."""
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0, "FAILED": 1, "USAGE": 2, "BUDGET": 3, "INTERRUPTED": 130}
    assert "--max-billed-frames" in (ExitCode.__doc__ or "")
    defined = [f"{path.relative_to(REPO)}:{node.lineno}"
               for path in sorted((REPO / "pipeline").rglob("*.py"))
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
               and node.id.startswith("EXIT_")]
    assert defined == []
