"""How long the demo (examples/demo.py) takes, on an idle machine and with busy processes competing for the cores.

Runs the demo as a user would, in a fresh Python process, and records from its start: the URL printed (TensorBoard
up), training finished, and the last logged step served by that TensorBoard (what the user then sees). Target:
≤ 60 s to a trained model in TensorBoard on a 2-core machine, also when the machine is busy. Numbers in the README.

    python benchmarks/bench_demo.py [--busy 0 2] [--steps 400] [--repeats 1]

`--busy N` starts N pure-Python busy loops (one core each) for the run: a machine with other work running.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LOG_EVERY = 20  # train_copy's default


def cpu_seconds(pid):
    """CPU time (user + system) of a process and its live children (TensorBoard's data server), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(cpu_seconds(int(child)) for child in f.read().split())
    except FileNotFoundError:  # a child that just exited
        pass
    return total


def _get_json(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def run_demo(steps, busy, timeout=600):
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    logdir = tempfile.mkdtemp(prefix="bench-demo-")
    started = time.monotonic()
    demo = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "examples", "demo.py"), "--logdir", logdir, "--steps", str(steps)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # tqdm's bar and TensorBoard's notices
        text=True,
        cwd=ROOT,
    )
    times, lines = {}, []

    def read():
        for line in demo.stdout:
            lines.append(line.rstrip())
            if "serving the attention dashboard at" in line:
                times["url"] = time.monotonic() - started
                times["base"] = re.search(r"(http://\S+?/)#attention", line).group(1)
            elif line.startswith("trained "):
                times["trained"] = time.monotonic() - started
                times["loss"] = float(line.rsplit(" ", 1)[-1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        last = steps - steps % LOG_EVERY
        deadline = started + timeout
        while "trained" not in times:
            if demo.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the demo stopped or timed out:\n" + "\n".join(lines))
            time.sleep(0.1)
        base = times["base"] + "data/plugin/attention/"
        while time.monotonic() < deadline:
            runs = _get_json(base + "runs")["runs"]
            if runs:
                run = urllib.request.quote(runs[0]["run"])
                served = _get_json(f"{base}steps?run={run}&tag=probe/repeat")["steps"]
                if served and served[-1] == last:
                    times["served"] = time.monotonic() - started
                    break
            time.sleep(0.2)
        times["cpu"] = cpu_seconds(demo.pid)
    finally:
        demo.send_signal(signal.SIGINT)  # the demo's Ctrl+C
        try:
            demo.wait(timeout=20)
        except subprocess.TimeoutExpired:
            demo.kill()
        for burner in burners:
            burner.kill()
            burner.wait()
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="busy processes per measurement")
    parser.add_argument("--steps", type=int, default=400, help="the demo's --steps (its default: 400)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; demo with --steps {args.steps}")
    print(
        "| busy processes | load average before | URL printed, s | trained, s | last step served by TensorBoard, s "
        "| CPU s | final loss |"
    )
    print("|---|---|---|---|---|---|---|")
    for busy in args.busy:
        for _ in range(args.repeats):
            load = os.getloadavg()[0]  # other work on the machine, before the burners start
            t = run_demo(args.steps, busy)
            served = t.get("served", float("nan"))
            print(
                f"| {busy} | {load:.1f} | {t['url']:.1f} | {t['trained']:.1f} | {served:.1f} | {t['cpu']:.1f} "
                f"| {t['loss']:.3f} |"
            )


if __name__ == "__main__":
    main()
