"""Held-out perplexity of a training run's checkpoint, while the run goes on or after it stopped:
the model the run started from with the checkpoint's weights, on compression_bench.py's held-out
text and windows. For the long CPU runs of compression's training steps, which take more than a
session and resume from these checkpoints (benchmarks/README.md, "The long CPU run").

    python benchmarks/checkpoint_ppl.py /tmp/cb/variants/.work/s3000/0-distill.checkpoints
    python benchmarks/checkpoint_ppl.py CHECKPOINTS --tag step00000500 --model HF_DIR

--model: the HF folder the run started from (model.init_from); by default the student folder a
distill step writes beside its checkpoints. Full fine-tuning under ZeRO 0-2 only: the
checkpoint's mp_rank_00 file holds the whole module then (ZeRO-3 and LoRA runs are refused).
A mid-run checkpoint is not annealed: its rate has not decayed, so it reads higher than a run
of that length would end at.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compression_bench import HELDOUTS, heldout_ids  # noqa: E402 (stdlib imports only at its top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, help="a run's checkpoint folder (holds step* folders)")
    parser.add_argument("--tag", help="a checkpoint's folder name, e.g. step00000500 (default: the newest complete)")
    parser.add_argument("--model", type=Path, help="the HF folder the run started from")
    parser.add_argument("--heldout", choices=list(HELDOUTS), default="emma", help="as compression_bench.py's")
    parser.add_argument("--eval-tokens", type=int, default=16384)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluation.metrics import summed_nll
    from training.checkpoint import newest_complete_checkpoint

    torch.set_num_threads(args.threads)
    tag = args.tag or newest_complete_checkpoint(args.checkpoints)  # as a resume picks it: every rank's file written
    if tag is None:
        sys.exit(f"{args.checkpoints}: no complete checkpoint there")
    model_dir = args.model or args.checkpoints.with_name(args.checkpoints.name.replace(".checkpoints", ".student"))
    states = torch.load(args.checkpoints / tag / "mp_rank_00_model_states.pt", map_location="cpu",
                        weights_only=False)["module"]
    if not states:
        sys.exit(f"{args.checkpoints / tag}: no module weights in mp_rank_00 (a ZeRO-3 run): convert it with "
                 "the zero_to_fp32.py beside it first")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.load_state_dict({name: tensor.float() for name, tensor in states.items()})  # strict: LoRA keys fail
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    nll, count = summed_nll(model.eval(), heldout_ids(tokenizer, args.eval_tokens, args.heldout), args.window)
    print(f"{args.checkpoints}/{tag}: perplexity {math.exp(nll / count):.2f} over {count} held-out tokens ({args.heldout})")


if __name__ == "__main__":
    main()
