"""Log lines for journald and rotation of build/run logs by size."""
import io
import logging

from spacehooks import config, logs


def _settings(tmp_path, **values):
    path = tmp_path / "config.yaml"
    import yaml
    path.write_text(yaml.safe_dump({"logs": values}))
    return config.load(path, tmp_path / "home")


def test_journal_lines_carry_priority_prefixes():
    stream = io.StringIO()
    logger = logs.setup_logging("DEBUG", stream=stream, journal=True)
    logger.getChild("worker").info("build 3 started")
    logger.warning("disk almost full")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("build 4 crashed")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "<6>spacehooks.worker: build 3 started"
    assert lines[1] == "<4>spacehooks: disk almost full"
    assert lines[2] == "<3>spacehooks: build 4 crashed"
    assert lines[3] == "<3>Traceback (most recent call last):"
    assert lines[-1] == "<3>ValueError: boom"
    assert all(line.startswith("<3>") for line in lines[2:])


def test_plain_lines_without_journal_and_level_filter():
    stream = io.StringIO()
    logger = logs.setup_logging("WARNING", stream=stream, journal=False)
    logger.info("hidden")
    logger.error("shown")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" ERROR spacehooks: shown")
    # a second call replaces the handler instead of doubling every line
    logs.setup_logging("INFO", stream=stream, journal=False)
    logger.info("once")
    assert stream.getvalue().count("once") == 1
    assert logging.getLogger("spacehooks").propagate is False


def test_rotate_by_size_keeps_at_most_keep_files(tmp_path):
    settings = _settings(tmp_path, max_bytes=10, keep=2)
    log = tmp_path / "run.log"
    assert logs.rotate(log, settings) is False  # missing file: nothing to do
    log.write_text("123456789")
    assert logs.rotate(log, settings) is False  # under the limit
    for content in ("first-----", "second----", "third-----"):
        log.write_text(content)
        assert logs.rotate(log, settings) is True
        assert not log.exists()
    assert (tmp_path / "run.log.1").read_text() == "third-----"
    assert (tmp_path / "run.log.2").read_text() == "second----"
    assert not (tmp_path / "run.log.3").exists()


def test_rotate_drops_files_beyond_a_lowered_keep(tmp_path):
    log = tmp_path / "b.log"
    for n in (1, 2, 3, 4):
        (tmp_path / f"b.log.{n}").write_text(str(n))
    log.write_text("x" * 20)
    assert logs.rotate(log, _settings(tmp_path, max_bytes=10, keep=2)) is True
    assert sorted(p.name for p in tmp_path.glob("b.log*")) == ["b.log.1", "b.log.2"]
    assert (tmp_path / "b.log.2").read_text() == "1"


def test_rotate_keep_zero_removes_the_file(tmp_path):
    log = tmp_path / "c.log"
    log.write_text("x" * 20)
    assert logs.rotate(log, _settings(tmp_path, max_bytes=10, keep=0)) is True
    assert list(tmp_path.glob("c.log*")) == []
