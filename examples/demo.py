"""The demo: train the tiny copy-task GPT (about a minute on a laptop CPU), then open TensorBoard on its logs.

python examples/demo.py [--logdir runs/demo] [--port 6006]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train_copy  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="runs/demo")
    parser.add_argument("--port", default="6006")
    parser.add_argument("--steps", default="1500")
    args = parser.parse_args()

    run = os.path.join(args.logdir, time.strftime("copy-%Y%m%d-%H%M%S"))
    train_copy.main(["--logdir", run, "--steps", args.steps])

    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", args.logdir, "--host", "127.0.0.1", "--port", args.port])
    url = board.launch()
    print(f"\nTensorBoard is serving the attention dashboard at {url}#attention  (Ctrl+C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
