"""The demo: opens TensorBoard, then trains the tiny copy-task GPT while you watch its attention change.

    python examples/demo.py [--logdir runs/demo] [--port PORT] [--steps 400] [--batch 32]

TensorBoard starts first, so the URL is printed before training begins (the dashboard fills in as steps arrive)
and a taken port is reported before any training time is spent. Without --port, TensorBoard takes 6006 or the
next free port. Time on a 2-core CPU: benchmarks/bench_demo.py (numbers in the README).
"""

import argparse
import os
import socket
import sys
import time

# Measured (seed 0): with 32 sequences per step, layer 1's best induction score is 0.38 at step 200, 0.71 at 300 and
# 0.74 at 400 (batch 64: 0.51, 0.71, 0.72) for two thirds of the CPU time per step: the induction stripe is plain
# by step 300, and the demo stops at 400 so that it also finishes within a minute on a busy 2-core machine.
STEPS, BATCH = 400, 32


def port_in_use(port, host="127.0.0.1"):
    """Checked before TensorBoard starts its data server, which a failed start would leave running."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as TensorBoard's server binds
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def start_tensorboard(logdir, port):
    """-> the URL TensorBoard serves on; a port that is taken (or not allowed) ends the demo with one line."""
    from tensorboard import program

    if port is not None and port_in_use(port):
        raise SystemExit(_port_message(port))
    board = program.TensorBoard()
    argv = [None, "--logdir", logdir, "--host", "127.0.0.1"]
    if port is not None:
        argv += ["--port", str(port)]  # without it TensorBoard scans upwards from 6006 for a free port
    board.configure(argv=argv)
    try:
        return board.launch()
    except program.TensorBoardPortInUseError:  # taken between the check and the start
        raise SystemExit(_port_message(port)) from None
    except program.TensorBoardServerException as e:
        raise SystemExit(f"demo: TensorBoard cannot start: {e.msg}; pass a different --port") from None


def _port_message(port):
    return (
        f"demo: port {port} is in use (another TensorBoard?): pass a different --port, "
        "or leave --port out to use the next free one"
    )


def port_number(text):
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return port


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="runs/demo")
    parser.add_argument("--port", type=port_number, help="TensorBoard's port (default: 6006, or the next free one)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"sequences per step (default {BATCH})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see examples/train_copy.py)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    started = time.time()
    run = os.path.join(args.logdir, time.strftime("copy-%Y%m%d-%H%M%S"))
    url = f"{start_tensorboard(args.logdir, args.port)}#attention"
    print(f"TensorBoard is serving the attention dashboard at {url}", flush=True)
    print("It fills in while the model trains (TensorBoard reloads every few seconds).", flush=True)
    # Imported after TensorBoard is up: torch's import takes seconds on a busy machine, the URL should not wait.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_copy

    train_copy.main(
        ["--logdir", run, "--steps", str(args.steps), "--batch", str(args.batch), "--threads", str(args.threads)]
    )
    print(f"\nDemo ready after {time.time() - started:.1f} s: {url}  (Ctrl+C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
