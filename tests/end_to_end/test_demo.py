"""The demo: the URL before training, a trained model served by TensorBoard, Ctrl+C ends it; a taken port is one
line, before any training."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
sys.path.insert(0, EXAMPLES)
import demo  # noqa: E402


def test_demo_prints_the_url_first_serves_the_trained_model_and_stops_on_ctrl_c(tmp_path):
    err = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(EXAMPLES, "demo.py"), "--logdir", str(tmp_path / "runs"), "--steps", "40"],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 180
        while not any(line.startswith("Demo ready after") for line in lines) and time.time() < deadline:
            assert proc.poll() is None, "\n".join(lines)
            time.sleep(0.2)
        url_line = next(i for i, line in enumerate(lines) if "serving the attention dashboard at" in line)
        trained_line = next(i for i, line in enumerate(lines) if line.startswith("trained 40 steps"))
        assert url_line < trained_line  # the URL comes before the training, not after it
        base = re.search(r"(http://127\.0\.0\.1:\d+/)#attention", lines[url_line]).group(1)
        api = base + "data/plugin/attention/"
        served = []
        while served != [0, 20, 40] and time.time() < deadline:  # TensorBoard reloads every few seconds
            runs = json.loads(urllib.request.urlopen(api + "runs", timeout=10).read())["runs"]
            if runs:
                run = urllib.request.quote(runs[0]["run"])
                query = f"steps?run={run}&tag=probe/repeat"
                served = json.loads(urllib.request.urlopen(api + query, timeout=10).read())["steps"]
            time.sleep(0.5)
        assert served == [0, 20, 40]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    err.seek(0)
    stderr = err.read()
    err.close()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert "training: 100%" in stderr  # the progress bar


def test_a_taken_port_is_one_line_before_any_training(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            demo.main(["--logdir", str(tmp_path / "runs"), "--port", str(port)])
    message = exit_info.value.code
    assert message == (
        f"demo: port {port} is in use (another TensorBoard?): pass a different --port, "
        "or leave --port out to use the next free one"
    )
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
