"""The local node's FallbackToLogsOnError termination message is a kubelet's: the log's last 80 lines, 2048 bytes."""

from __future__ import annotations

from localkube.node.containers import _log_tail


def test_the_tail_of_the_log_is_the_termination_message(tmp_path):
    log = tmp_path / "0.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(200)))
    tail = _log_tail(log)
    assert tail.splitlines()[0] == "line 120" and tail.splitlines()[-1] == "line 199"
    log.write_bytes(b"x" * 5000 + b"\nlast words")
    assert len(_log_tail(log).encode()) == 2048 and _log_tail(log).endswith("last words")
    assert _log_tail(tmp_path / "missing.log") == ""
