"""Settings parsing in process: each option's parser, the flag > variable > default order, and
the one Settings value that validates every number once (the CLI's exit 2 is in test_config)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from pipeline._cli import options
from pipeline._cli.main import build_parser
from pipeline.errors import ConfigError
from pipeline.output.exports import Outputs
from pipeline.output.segments import Rules
from pipeline.settings import Settings
from pipeline.types import Limits

pytestmark = pytest.mark.pure


def run_settings(*argv: str, **environ: str) -> Settings:
    args = build_parser().parse_args(["run", "x.mp4", "--out", "o", *argv])
    return options.settings(args, environ, run=True)


@pytest.mark.parametrize("text,expected", [(" YES ", True), ("on", True), ("1", True),
                                           ("True", True), ("Off", False), ("no", False),
                                           ("0", False), ("FALSE", False)])
def test_yes_no_reads_the_eight_words_in_any_case_and_spacing(text: str, expected: bool) -> None:
    """1/true/yes/on and 0/false/no/off, whatever the case, with spaces around."""
    assert options.yes_no(text, "X") is expected


@pytest.mark.parametrize("text", ["maybe", "", "y", "2"])
def test_anything_else_is_not_a_yes_or_a_no(text: str) -> None:
    """Other words are an error that names where the value came from."""
    with pytest.raises(ConfigError) as caught:
        options.yes_no(text, "VIDEO_PIPELINE_FORCE")
    assert str(caught.value) == ("VIDEO_PIPELINE_FORCE takes yes or no (1/true/yes/on or "
                                 f"0/false/no/off), not {text!r}")


def test_numbers_are_parsed_whole_or_finite_and_errors_name_their_source() -> None:
    """' 12 ' is 12 and ' 2.5' is 2.5; '1.5' is not whole, 'abc' not a number, nan and inf
    not finite: each error names the flag or variable and quotes the value."""
    assert options.whole_number(" 12 ", "--sample-ms") == 12
    assert options.number(" 2.5", "--rate-limit") == 2.5
    cases = [(options.whole_number, "1.5", "--sample-ms takes a whole number, not '1.5'"),
             (options.number, "abc", "--rate-limit takes a number, not 'abc'"),
             (options.number, "nan", "--rate-limit takes a finite number, not 'nan'"),
             (options.number, "-inf", "--rate-limit takes a finite number, not '-inf'")]
    for parse, text, message in cases:
        with pytest.raises(ConfigError) as caught:
            parse(text, message.split()[0])
        assert str(caught.value) == message


def test_choices_and_exports_are_checked() -> None:
    """A choice outside its list, or an unknown export, is an error naming the option; exports
    come back in their fixed order, whatever order and case they were given in."""
    assert options.one_of("bytes", "url")("url", "--mode") == "url"
    with pytest.raises(ConfigError) as caught:
        options.one_of("bytes", "url")("ftp", "--mode")
    assert str(caught.value) == "--mode must be one of bytes, url, not 'ftp'"
    assert options.exports("vtt, CSV", "--export") == ("csv", "vtt")
    with pytest.raises(ConfigError) as caught:
        options.exports("csv,pdf", "VIDEO_PIPELINE_EXPORT")
    assert str(caught.value) == ("VIDEO_PIPELINE_EXPORT: unknown export pdf "
                                 "(choose from csv, jsonl, vtt, srt, otio)")
    assert options.text(" as is ", "--model") == " as is "


def test_each_option_has_its_variable_and_says_so_in_its_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--s3-endpoint-url is s3_endpoint_url and VIDEO_PIPELINE_S3_ENDPOINT_URL; run --help
    names every option's variable."""
    option = next(o for o in options.RUN if o.flag == "--s3-endpoint-url")
    assert (option.dest, option.env) == ("s3_endpoint_url", "VIDEO_PIPELINE_S3_ENDPOINT_URL")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for o in (*options.LIMITS, *options.RUN, *options.SEGMENTS, *options.OUTPUTS):
        assert f"{o.help} (env {o.env})" in text, o.flag
        assert f"{o.flag} {o.metavar}" in text if o.metavar else f"{o.flag} " in text, o.flag


def test_with_nothing_set_a_run_gets_the_documented_defaults() -> None:
    """No flag and no variable: exactly Settings()'s defaults, progress on, no key."""
    got = run_settings()
    assert got == Settings()
    assert (got.batch.progress, got.api.api_key, got.api.user_id, got.api.app_id) == (
        True, None, "clarifai", "main")


def test_a_flag_wins_over_its_variable_which_wins_over_the_default() -> None:
    """Flag first, then VIDEO_PIPELINE_<NAME>, then the default, option by option."""
    env = {"VIDEO_PIPELINE_SAMPLE_MS": "2000", "VIDEO_PIPELINE_RATE_LIMIT": "2.5",
           "VIDEO_PIPELINE_EXPORT": "vtt", "VIDEO_PIPELINE_MODE": "url"}
    got = run_settings("--sample-ms", "500", "--mode", "bytes", **env)
    assert (got.sample_ms, got.api.rate_limit, got.outputs.exports, got.limits.mode) == (
        500, 2.5, ("vtt",), "bytes")


def test_switches_are_on_when_given_and_read_yes_no_from_their_variables() -> None:
    """--force is on whatever VIDEO_PIPELINE_FORCE says; the variable alone is read as yes/no;
    --no-progress and VIDEO_PIPELINE_NO_PROGRESS=1 turn the progress bar off."""
    assert run_settings("--force", VIDEO_PIPELINE_FORCE="0").batch.force is True
    assert run_settings(VIDEO_PIPELINE_FORCE="no").batch.force is False
    assert run_settings(VIDEO_PIPELINE_KEEP_AUDIO="on").strategy.keeps_audio is True
    assert run_settings("--no-progress").batch.progress is False
    assert run_settings(VIDEO_PIPELINE_NO_PROGRESS="1").batch.progress is False
    assert run_settings(VIDEO_PIPELINE_NO_PROGRESS="0").batch.progress is True


def test_a_bad_value_names_the_flag_or_the_variable_it_came_from() -> None:
    """--sample-ms abc names the flag; VIDEO_PIPELINE_SAMPLE_MS=abc and
    VIDEO_PIPELINE_INSECURE=maybe name the variable."""
    with pytest.raises(ConfigError, match="^--sample-ms takes"):
        run_settings("--sample-ms", "abc")
    with pytest.raises(ConfigError, match="^VIDEO_PIPELINE_SAMPLE_MS takes"):
        run_settings(VIDEO_PIPELINE_SAMPLE_MS="abc")
    with pytest.raises(ConfigError, match="^VIDEO_PIPELINE_INSECURE takes yes or no"):
        run_settings(VIDEO_PIPELINE_INSECURE="maybe")


def test_a_switchs_variable_reads_yes_or_no_whatever_the_options_parser() -> None:
    """A switch is given or not on the command line; its variable is a yes/no, never text."""
    option = options.Option("--dry", options.text, False, "h", switch=True)
    args = argparse.Namespace(dry=None)
    assert option.resolve(args, {"VIDEO_PIPELINE_DRY": "yes"}) is True
    assert option.resolve(args, {"VIDEO_PIPELINE_DRY": "off"}) is False
    assert option.resolve(argparse.Namespace(dry=True), {"VIDEO_PIPELINE_DRY": "no"}) is True
    assert option.resolve(args, {}) is False


def test_credentials_and_download_settings_come_from_the_environment() -> None:
    """CLARIFAI_PAT (trimmed; blank is none), CLARIFAI_USER_ID and CLARIFAI_APP_ID (blank is
    the default), and the two download variables that have no flag."""
    got = run_settings(CLARIFAI_PAT="  key  ", CLARIFAI_USER_ID="me", CLARIFAI_APP_ID="app",
                       VIDEO_PIPELINE_DOWNLOAD_MAX_BYTES="5000",
                       VIDEO_PIPELINE_DOWNLOAD_TIMEOUT="2.5")
    assert (got.api.api_key, got.api.user_id, got.api.app_id) == ("key", "me", "app")
    assert (got.downloads.max_bytes, got.downloads.timeout) == (5000, 2.5)
    blank = run_settings(CLARIFAI_PAT="  ", CLARIFAI_USER_ID="", CLARIFAI_APP_ID="")
    assert (blank.api.api_key, blank.api.user_id, blank.api.app_id) == (None, "clarifai", "main")


def test_split_reads_only_the_limits_and_report_only_the_segment_rules() -> None:
    """`split` takes the limit options and the copy strategy's (a broken run variable does not
    matter to it); `report` takes the segment rules, validated like a run's."""
    args = build_parser().parse_args(["split", "x.mp4", "--out", "o", "--max-bytes", "2000000",
                                      "--keep-audio"])
    env = {"VIDEO_PIPELINE_SAMPLE_MS": "abc", "VIDEO_PIPELINE_MAX_SECONDS": "90"}
    assert options.settings(args, env, run=False, split=True) == Settings.from_options(
        max_bytes=2_000_000, max_seconds=90.0, keep_audio=True)
    args = build_parser().parse_args(["report", "d", "--min-confidence", "0.8"])
    got = options.segment_settings(args, {"VIDEO_PIPELINE_MAX_GAP_MS": "2500"})
    assert got == Settings.from_options(min_confidence=0.8, max_gap_ms=2500)
    with pytest.raises(ConfigError, match="--min-confidence"):
        options.segment_settings(build_parser().parse_args(
            ["report", "d", "--min-confidence", "2"]), {})


def test_the_log_format_resolves_like_any_option() -> None:
    """--log-format from the flag, else VIDEO_PIPELINE_LOG_FORMAT, else text; checked."""
    args = build_parser().parse_args(["probe", "x.mp4"])
    assert options.LOG_FORMAT.resolve(args, {}) == "text"
    assert options.LOG_FORMAT.resolve(args, {"VIDEO_PIPELINE_LOG_FORMAT": "json"}) == "json"
    with pytest.raises(ConfigError, match="VIDEO_PIPELINE_LOG_FORMAT"):
        options.LOG_FORMAT.resolve(args, {"VIDEO_PIPELINE_LOG_FORMAT": "xml"})


BAD: list[tuple[dict[str, Any], str]] = [
    ({"backend": "gpu"}, "--backend must be local or clarifai, not 'gpu'"),
    ({"mode": "ftp"}, "--mode must be bytes or url, not 'ftp'"),
    ({"max_bytes": 99_999}, "--max-bytes must be at least 100000, not 99999"),
    ({"max_seconds": 0.5}, "--max-seconds must be at least 1, not 0.5"),
    ({"max_seconds": float("nan")}, "--max-seconds must be a finite number, not nan"),
    ({"max_seconds": float("inf")}, "--max-seconds must be a finite number, not inf"),
    ({"sample_ms": 99}, "--sample-ms must be between 100 and 60000, not 99"),
    ({"sample_ms": 60_001}, "--sample-ms must be between 100 and 60000, not 60001"),
    ({"concurrency": 0}, "--concurrency must be at least 1, not 0"),
    ({"lock_wait": -0.5}, "--lock-wait must be at least 0, not -0.5"),
    ({"rate_limit": 0}, "--rate-limit must be above 0, not 0"),
    ({"rate_limit": -1}, "--rate-limit must be above 0, not -1"),
    ({"min_confidence": 1.01}, "--min-confidence must be between 0 and 1, not 1.01"),
    ({"min_confidence": -0.1}, "--min-confidence must be between 0 and 1, not -0.1"),
    ({"max_gap_ms": -1}, "--max-gap-ms must be at least 0, not -1"),
    ({"min_segment_ms": -1}, "--min-segment-ms must be at least 0, not -1"),
    ({"export": ("csv", "pdf", "gif")}, "--export: unknown export gif, pdf"),
    ({"download_max_bytes": 0}, "VIDEO_PIPELINE_DOWNLOAD_MAX_BYTES must be at least 1, not 0"),
    ({"download_timeout": 0}, "VIDEO_PIPELINE_DOWNLOAD_TIMEOUT must be above 0, not 0"),
    ({"stage": "bucket/prefix"}, "--stage takes s3://BUCKET/PREFIX, not 'bucket/prefix'"),
    ({"s3_endpoint_url": "ftp://x"}, "--s3-endpoint-url takes an http(s) URL, not 'ftp://x'"),
    ({"strategy": "gif"}, "--strategy must be one of copy, compact, frames, not 'gif'"),
    ({"proxy_size": 63}, "--proxy-size must be between 64 and 4096, not 63"),
    ({"proxy_size": 4097}, "--proxy-size must be between 64 and 4096, not 4097"),
    ({"proxy_crf": -1}, "--proxy-crf must be between 0 and 51, not -1"),
    ({"proxy_crf": 52}, "--proxy-crf must be between 0 and 51, not 52"),
    ({"image_size": 63}, "--image-size must be between 64 and 4096, not 63"),
    ({"image_size": 4097}, "--image-size must be between 64 and 4096, not 4097"),
    ({"image_quality": 49}, "--image-quality must be between 50 and 95, not 49"),
    ({"image_quality": 96}, "--image-quality must be between 50 and 95, not 96"),
    ({"images_per_request": 0}, "--images-per-request must be between 1 and 128, not 0"),
    ({"images_per_request": 129}, "--images-per-request must be between 1 and 128, not 129"),
]


@pytest.mark.parametrize("kwargs,message", BAD, ids=[m.split()[0] for _, m in BAD])
def test_a_setting_out_of_its_range_is_one_sentence_naming_it(kwargs: dict[str, Any],
                                                               message: str) -> None:
    """Each bound is checked once, in Settings, with one message naming the option."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_options(**kwargs)
    assert str(caught.value) == message


def test_every_bound_itself_is_allowed() -> None:
    """The edges of every range are inside it."""
    Settings.from_options(
        max_bytes=100_000, max_seconds=1, sample_ms=100, concurrency=1, lock_wait=0,
        rate_limit=0.01, min_confidence=0, max_gap_ms=0, min_segment_ms=0, export=(),
        download_max_bytes=1, download_timeout=0.001, stage="s3://b/p",
        s3_endpoint_url="HTTPS://minio.local")
    Settings.from_options(sample_ms=60_000, min_confidence=1,
                          s3_endpoint_url="http://127.0.0.1:9000")
    for name in ("copy", "compact", "frames"):
        Settings.from_options(strategy=name)
    Settings.from_options(proxy_size=64, proxy_crf=0, image_size=64, image_quality=50,
                          images_per_request=1)
    Settings.from_options(proxy_size=4096, proxy_crf=51, image_size=4096, image_quality=95,
                          images_per_request=128)


def test_limits_follow_the_mode_unless_given() -> None:
    """URL mode is 80 MB, bytes mode 10 MB, both 600 s; given values win (seconds to ms)."""
    assert Settings().limits == Limits("bytes", 10_000_000, 600_000)
    assert Settings.from_options(mode="url", max_seconds=90.5).limits == Limits(
        "url", 80_000_000, 90_500)
    assert Settings.from_options(max_bytes=2_000_000).limits == Limits(
        "bytes", 2_000_000, 600_000)


def test_only_url_mode_to_clarifai_sends_urls() -> None:
    """The local backend reads chunks where they are, whatever the mode."""
    assert [Settings.from_options(backend=b, mode=m).sends_urls for b in ("local", "clarifai")
            for m in ("bytes", "url")] == [False, False, False, True]
    assert [Settings.from_options(backend="clarifai", mode="url", strategy=name).sends_urls
            for name in ("copy", "compact", "frames")] == [True, True, False]


def test_outputs_carry_the_segment_rules_and_the_exports_in_their_order() -> None:
    """The rules, the chosen exports in csv, jsonl, vtt order, and the report switch."""
    got = Settings.from_options(min_confidence=0.7, max_gap_ms=3000, min_segment_ms=500,
                   export=("vtt", "csv"), report=True).outputs
    assert got == Outputs(Rules(0.7, 3000, 500), ("csv", "vtt"), True)


def test_chunks_in_flight_default_by_backend() -> None:
    """4 requests for clarifai at a fixed rate, up to 32 at a learned one (as many as the rate
    needs), 2 decoders for local, unless --concurrency says otherwise."""
    assert [Settings.from_options(backend="clarifai", rate_limit=10.0).api.workers,
            Settings.from_options(backend="clarifai").api.workers, Settings().api.workers,
            Settings.from_options(concurrency=7).api.workers] == [4, 32, 2, 7]


def test_the_api_key_is_never_shown() -> None:
    """repr(settings) leaves the key out."""
    assert "secret" not in repr(Settings.from_options(api_key="secret"))
