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
import importlib
import os
import re
import sys

from tb_attention.integrations import storage

_HF_DIR = re.compile(r"^checkpoint-(\d+)$")
_STATE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


class Checkpoint:
    def __init__(self, step, path, kind):
        self.step, self.path, self.kind = step, path, kind

    def __repr__(self):
        return f"Checkpoint({self.step}, {self.path!r}, {self.kind})"


def _entries(directory):
    """[(name, path, is_folder)] of a local folder or a bucket prefix (s3://, gs://, any fsspec URL)."""
    if storage.is_url(directory):
        return storage.entries(directory)
    return [
        (n, os.path.join(directory, n), os.path.isdir(os.path.join(directory, n)))
        for n in sorted(os.listdir(directory))
    ]


def find_checkpoints(directory):
    """-> (sorted [Checkpoint], [(path, why)] for entries that look like checkpoints but have no step)."""
    found, problems = [], []
    for name, path, folder in _entries(directory):
        if folder:
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
    """Steps already written under `tag` in the event files directly in `logdir`. Read with our bounded record
    reader: TensorBoard's raises MemoryError on a record that claims an absurd length (format/records.py)."""
    from tb_attention.format import records

    steps = set()
    if storage.is_url(logdir):  # each remote event file is read from a temporary local copy
        for local in storage.event_files(logdir):
            steps |= logged_steps(os.path.dirname(local), tag)
        return steps
    for path in glob.glob(os.path.join(logdir, "*tfevents*")):
        try:
            for event in records.events(path):  # stops at a truncated last record of an interrupted run
                if any(v.tag == tag for v in event.summary.value):
                    steps.add(event.step)
        except OSError:  # removed or unreadable meanwhile
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
            if storage.is_url(source):  # transformers reads local folders: copy the checkpoint without its weights
                with storage.tokenizer_copy(source) as local:
                    return AutoTokenizer.from_pretrained(local)
            return AutoTokenizer.from_pretrained(source)
        except Exception as e:  # noqa: BLE001 - try the next source
            errors.append(f"{source}: {e}")
    raise SystemExit("tb-attention: no tokenizer found; pass --tokenizer. Tried: " + "; ".join(errors or ["nothing"]))


def _require(*modules):
    """Models need torch and transformers, which a plain `pip install` lacks: name the extra instead of a traceback."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            why = "is not installed" if e.name == module else f"cannot be imported ({e})"
            raise SystemExit(
                f"tb-attention checkpoints needs {module}, which {why}: pip install 'tb-attention[torch]' "
                "(in a clone: pip install -e '.[torch]')"
            ) from None


def _probe_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SystemExit(
            f"tb-attention: cannot read --probe {path}: {why}; pass a UTF-8 text file with one probe text per line "
            "(or leave --probe out for a repeated-random-token probe)"
        ) from None
    if not lines:
        raise SystemExit(f"tb-attention: {path} holds no text: write one probe text per line")
    return lines


class _WriterOnFirstUse:
    """The event file is created when the first step is logged: a run that logs nothing (every checkpoint already
    logged, or none loadable) leaves no empty event file behind."""

    def __init__(self, logdir):
        self._logdir, self._writer = logdir, None

    def __getattr__(self, name):
        if self._writer is None:
            from tb_attention.write.writer import AttentionWriter

            self._writer = AttentionWriter(self._logdir)
        return getattr(self._writer, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._writer is not None:
            self._writer.close()


def checkpoints_command(args):
    _require("torch", "transformers")
    from tqdm import tqdm

    from tb_attention.integrations.probe import ProbeRunner

    try:  # transformers' per-load weight report would bury the progress bar; failures are reported below
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    if not (storage.is_dir(args.dir) if storage.is_url(args.dir) else os.path.isdir(args.dir)):
        raise SystemExit(f"tb-attention: {args.dir} is not a directory")
    found, problems = find_checkpoints(args.dir)
    if not found and not problems:
        raise SystemExit(
            f"tb-attention: no checkpoints in {args.dir} (expected checkpoint-<step>/ folders or *.pt files)"
        )
    if found and not args.model and all(c.kind == "state_dict" for c in found):
        # Asked first: without the architecture nothing can be loaded, and its tokenizer is the default one.
        raise SystemExit(
            f"tb-attention: {args.dir} holds state dicts only: pass --model (a Hugging Face model name or folder "
            "with their architecture; its tokenizer is used unless --tokenizer is given)"
        )
    probe = None
    if args.probe:
        lines = _probe_lines(args.probe)
        probe = lines[0] if len(lines) == 1 else lines
    runner = ProbeRunner(probe, tag=args.tag, probe_length=args.probe_length, seed=args.seed, qk=not args.no_qk)
    runner.prepare(_tokenizer(args, found))
    batch = int(runner.inputs["input_ids"].shape[0]) if "input_ids" in runner.inputs else 1
    last_tag = args.tag if batch == 1 else f"{args.tag}/{batch - 1}"  # written last for each step
    done = logged_steps(args.logdir, last_tag) if storage.is_url(args.logdir) or os.path.isdir(args.logdir) else set()
    resume_after = max(done) if done else -1
    todo = [c for c in found if c.step > resume_after]
    skipped = len(found) - len(todo)
    if skipped:
        print(
            f"tb-attention: resuming after step {resume_after}: {skipped} checkpoint(s) already logged or earlier",
            file=sys.stderr,
        )
    failed = list(problems)
    if not storage.is_url(args.logdir):
        os.makedirs(args.logdir, exist_ok=True)
    logged = 0
    with _WriterOnFirstUse(args.logdir) as writer:
        for ckpt in tqdm(todo, desc="checkpoints", unit="ckpt", disable=args.quiet):
            try:
                if storage.is_url(ckpt.path):  # loaded from a temporary local copy, deleted right after
                    with storage.local_copy(ckpt.path, ckpt.kind == "hf") as local:
                        model = _load_model(Checkpoint(ckpt.step, local, ckpt.kind), args)
                else:
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
    p.add_argument(
        "dir",
        help="folder or bucket URL (s3://, gs://, any fsspec URL) with checkpoint-<step>/ folders (Hugging Face) or "
        "<name><step>.pt state dicts",
    )
    p.add_argument("--logdir", required=True, help="TensorBoard run directory (or bucket URL) to write to")
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
