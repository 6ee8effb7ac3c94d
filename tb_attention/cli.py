"""``tb-attention`` command line.

    tb-attention checkpoints DIR --probe probe.txt --logdir runs/x

loads each checkpoint in DIR in step order (Hugging Face ``checkpoint-<step>`` folders, or ``.pt``/``.pth`` state
dicts with the step in the file name, which need ``--model`` for the architecture), runs the probe and logs one step
per checkpoint: the full attention and the per-head metrics. Re-running it resumes: checkpoints at or before the
last step already logged under the tag are skipped. A checkpoint that cannot be loaded is reported with the reason
and skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys

_HF_DIR = re.compile(r"^checkpoint-(\d+)$")
_STATE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


class Checkpoint:
    def __init__(self, step, path, kind):
        self.step, self.path, self.kind = step, path, kind

    def __repr__(self):
        return f"Checkpoint({self.step}, {self.path!r}, {self.kind})"


def find_checkpoints(directory):
    """-> (sorted [Checkpoint], [(path, why)] for entries that look like checkpoints but have no step)."""
    found, problems = [], []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            m = _HF_DIR.match(name)
            if m:
                found.append(Checkpoint(int(m.group(1)), path, "hf"))
        elif name.endswith(_STATE_SUFFIXES) and not name.startswith("."):
            numbers = re.findall(r"\d+", os.path.splitext(name)[0])
            if numbers:
                found.append(Checkpoint(int(numbers[-1]), path, "state_dict"))
            else:
                problems.append((path, "no step number in the file name (e.g. step_300.pt)"))
    found.sort(key=lambda c: c.step)
    steps = [c.step for c in found]
    dupes = {s for s in steps if steps.count(s) > 1}
    for c in [c for c in found if c.step in dupes]:
        problems.append((c.path, f"step {c.step} appears more than once"))
    return [c for c in found if c.step not in dupes], problems


def logged_steps(logdir, tag):
    """Steps already written under `tag` in the event files directly in `logdir`."""
    from tensorboard.backend.event_processing import event_file_loader

    steps = set()
    for path in glob.glob(os.path.join(logdir, "*tfevents*")):
        try:
            for event in event_file_loader.EventFileLoader(path).Load():
                if any(v.tag == tag for v in event.summary.value):
                    steps.add(event.step)
        except Exception:  # a truncated last record of an interrupted run
            continue
    return steps


def _load_model(ckpt, args):
    import torch
    from transformers import AutoModel

    if ckpt.kind == "hf":
        return AutoModel.from_pretrained(ckpt.path)
    if not args.model:
        raise ValueError(
            "a state-dict checkpoint needs --model (a Hugging Face model name or folder) for its architecture"
        )
    model = AutoModel.from_pretrained(args.model)
    if ckpt.path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(ckpt.path)
    else:
        state = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise ValueError("the file holds no state dict")
    prefix = getattr(model, "base_model_prefix", "") + "."
    if prefix != "." and not any(k.startswith(prefix) for k in model.state_dict()):
        # Saved from a task model (e.g. BertForSequenceClassification): keep its base model's weights.
        stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        state = stripped or state
    missing, unexpected = model.load_state_dict(state, strict=False)
    own = set(model.state_dict())
    if len(missing) > len(own) // 2:
        raise ValueError(
            f"the state dict does not fit --model {args.model}: {len(missing)} of {len(own)} weights missing"
        )
    return model


def _tokenizer(args, checkpoints):
    from transformers import AutoTokenizer

    sources = [args.tokenizer] if args.tokenizer else []
    sources += [c.path for c in checkpoints if c.kind == "hf"][-1:] + ([args.model] if args.model else [])
    errors = []
    for source in sources:
        try:
            return AutoTokenizer.from_pretrained(source)
        except Exception as e:  # noqa: BLE001 - try the next source
            errors.append(f"{source}: {e}")
    raise SystemExit("tb-attention: no tokenizer found; pass --tokenizer. Tried: " + "; ".join(errors or ["nothing"]))


def checkpoints_command(args):
    from tqdm import tqdm

    from tb_attention.integrations.probe import ProbeRunner
    from tb_attention.write.writer import AttentionWriter

    try:  # transformers' per-load weight report would bury the progress bar; failures are reported below
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    if not os.path.isdir(args.dir):
        raise SystemExit(f"tb-attention: {args.dir} is not a directory")
    found, problems = find_checkpoints(args.dir)
    if not found and not problems:
        raise SystemExit(
            f"tb-attention: no checkpoints in {args.dir} (expected checkpoint-<step>/ folders or *.pt files)"
        )
    probe = None
    if args.probe:
        with open(args.probe, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        if not lines:
            raise SystemExit(f"tb-attention: {args.probe} holds no text")
        probe = lines[0] if len(lines) == 1 else lines
    runner = ProbeRunner(probe, tag=args.tag, probe_length=args.probe_length, seed=args.seed, qk=not args.no_qk)
    runner.prepare(_tokenizer(args, found))
    batch = int(runner.inputs["input_ids"].shape[0]) if "input_ids" in runner.inputs else 1
    last_tag = args.tag if batch == 1 else f"{args.tag}/{batch - 1}"  # written last for each step
    done = logged_steps(args.logdir, last_tag) if os.path.isdir(args.logdir) else set()
    resume_after = max(done) if done else -1
    todo = [c for c in found if c.step > resume_after]
    skipped = len(found) - len(todo)
    if skipped:
        print(
            f"tb-attention: resuming after step {resume_after}: {skipped} checkpoint(s) already logged or earlier",
            file=sys.stderr,
        )
    failed = list(problems)
    os.makedirs(args.logdir, exist_ok=True)
    logged = 0
    with AttentionWriter(args.logdir) as writer:
        for ckpt in tqdm(todo, desc="checkpoints", unit="ckpt", disable=args.quiet):
            try:
                model = _load_model(ckpt, args)
            except Exception as e:  # noqa: BLE001 - reported, and the run goes on
                failed.append((ckpt.path, f"{type(e).__name__}: {e}"))
                tqdm.write(f"tb-attention: cannot load {ckpt.path}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            runner.log(model, writer, ckpt.step, full=True, metrics=True)
            logged += 1
            del model
    print(f"tb-attention: logged {logged} checkpoint(s) to {args.logdir} under tag {args.tag!r}", file=sys.stderr)
    if failed:
        print(f"tb-attention: {len(failed)} checkpoint(s) could not be loaded:", file=sys.stderr)
        for path, why in failed:
            print(f"  {path}: {why}", file=sys.stderr)
        return 1
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tb-attention", description="tb-attention command line tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("checkpoints", help="log the attention of a probe for each saved checkpoint, in step order")
    p.add_argument("dir", help="folder with checkpoint-<step>/ folders (Hugging Face) or <name><step>.pt state dicts")
    p.add_argument("--logdir", required=True, help="TensorBoard run directory to write to")
    p.add_argument("--probe", help="text file: one probe text per line (default: a repeated-random-token probe)")
    p.add_argument("--tag", default="probe", help="probe tag (default: probe)")
    p.add_argument("--model", help="Hugging Face model name or folder giving the architecture of .pt state dicts")
    p.add_argument("--tokenizer", help="tokenizer name or folder (default: the checkpoint's, else --model's)")
    p.add_argument("--probe-length", type=int, default=20, help="length of the random half of the default probe")
    p.add_argument("--seed", type=int, default=0, help="seed of the default probe")
    p.add_argument("--no-qk", action="store_true", help="do not log queries and keys")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=checkpoints_command)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
