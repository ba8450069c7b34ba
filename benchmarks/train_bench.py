"""Training benchmark: Conveyor's DeepSpeed trainer against a plain PyTorch + torch.compile loop.

    python benchmarks/train_bench.py --gpu [--quick] [--only NAME,NAME] [--budget SECONDS] [--out DIR]
    python benchmarks/train_bench.py --cpu [--quick] [--out DIR]

--gpu (one CUDA device; H100 in mind): the SmolLM2-135M shape (hidden 576, 30 layers, 9 heads /
3 KV heads, intermediate 1536, vocab 49152, tied embeddings), sequence 2048, bf16, random tokens:

  plain_*    a plain PyTorch loop: fp32 weights, bf16 autocast, forward + float32 cross-entropy
             under one torch.compile, fused AdamW, grad clipping, LambdaLR; no per-step host sync.
  trainer_*  Conveyor's trainer step as training/train.py runs it, built by training/engine.py's
             build_engine (build_model, param_groups + torch AdamW (fused), deepspeed.initialize with
             deepspeed_config (ZeRO-2 unless named, bf16: bf16 weights, fp32 master weights in
             the optimizer; `autocast` rows: precision bf16-autocast, fp32 weights under
             DeepSpeed's torch_autocast),
             the warmup-cosine LambdaLR, engine.compile() when compile is on), stepped by its
             StepRunner with its loss_function (compiled too under compile): losses and non-finite
             flags stay on the GPU, read every 10 steps as at log_every 10. Only the data differs:
             random token blocks (held on the host and moved with .to(device) each step, as the
             trainer does) instead of packed text, so no 49152-token tokenizer has to be trained.
             One rank, as configs/gpu.yaml runs it.
  mem_*      a ~0.86B-parameter model under a capped GPU memory (torch.cuda.set_per_process_memory_fraction,
             --mem-cap-gib, default 12 GiB): ZeRO-2 without offload against ZeRO-3 with optimizer and
             parameter offload to CPU, activation checkpointing on in both. A capped-memory
             demonstration, not a model too large for the whole card.

Each variant runs in its own subprocess (an OOM or a hang stays there; --variant-timeout). Time
per step is the median of CUDA-event intervals between step starts after warm-up (host stalls
count); tokens/s = tokens per step / that; MFU counts training.train.flops_per_token
(6 x params + 12 x layers x hidden x seq) against --peak-tflops (H100 SXM bf16 dense: 989).
Peak memory is torch's allocator peak (max_memory_allocated) over the whole variant.

--cpu: the tiny model of configs/test.yaml through training.run (torchrun + DeepSpeed ZeRO-2,
gloo, one thread per rank): 2 ranks against 1, median seconds per step over the log intervals
after the first, and the overhead ratio (2-rank step time / 1-rank step time; each rank takes a
full micro-batch, so 2 ranks do twice the tokens per step).

Results go to --out (default benchmarks/results/train_bench) as JSON, and a table to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

VOCAB = 49152
SMOLLM2 = dict(hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3, intermediate_size=1536,
               max_seq_len=2048, tie_embeddings=True)
# ~0.86B parameters: ZeRO-2 bf16 needs ~17 GB of weights, grads and Adam state alone.
BIG = dict(hidden_size=2048, num_layers=16, num_heads=16, num_kv_heads=8, intermediate_size=5632,
           max_seq_len=1024, tie_embeddings=True)

# name -> (kind, settings). Order = priority under the time budget.
GPU_VARIANTS = {
    "plain_compile_mb8": ("plain", dict(mb=8)),
    "trainer_mb8": ("trainer", dict(mb=8, compile=False)),
    "trainer_compile_mb8": ("trainer", dict(mb=8, compile=True)),
    "mem_zero2_capped": ("mem", dict(zero_stage=2)),
    "mem_zero3_offload_capped": ("mem", dict(zero_stage=3, offload=True)),
    "plain_compile_mb16": ("plain", dict(mb=16)),
    "trainer_compile_mb16": ("trainer", dict(mb=16, compile=True)),
    "trainer_compile_zero1_mb16": ("trainer", dict(mb=16, compile=True, zero_stage=1)),
    # fp32 weights under DeepSpeed's torch_autocast, as the plain loop runs: without ZeRO the engine
    # steps the fused torch AdamW itself and the trainer clips (StepRunner), keeping the norm on the GPU.
    "trainer_autocast_zero0_mb16": ("trainer", dict(mb=16, compile=True, zero_stage=0, precision="bf16-autocast")),
    "trainer_autocast_zero1_mb16": ("trainer", dict(mb=16, compile=True, zero_stage=1, precision="bf16-autocast")),
    # The chunked loss (training.loss): the logits of 4096 tokens at a time, never the micro-batch's.
    "trainer_autocast_zero0_chunked_mb16": ("trainer", dict(mb=16, compile=True, zero_stage=0, precision="bf16-autocast",
                                                             chunked_loss_tokens=4096)),
    "trainer_autocast_zero0_chunked_mb32": ("trainer", dict(mb=32, compile=True, zero_stage=0, precision="bf16-autocast",
                                                             chunked_loss_tokens=4096)),
}
QUICK_GPU = ["plain_compile_mb8", "trainer_mb8", "trainer_compile_mb8"]


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- GPU: one variant, in-process

def _configs(model: dict, seq_len: int, mb: int, **train):
    from training.config import ModelConfig, TrainConfig, TrainingConfig

    return TrainingConfig(
        model=ModelConfig(**model),
        train=TrainConfig(seq_len=seq_len, micro_batch_size=mb, precision=train.pop("precision", "bf16"),
                          zero_stage=train.pop("zero_stage", 2),
                          num_ranks=1, device="cuda", max_steps=10_000, warmup_steps=10, lr=1e-3, **train))


def _host_batches(n: int, mb: int, seq_len: int):
    import torch

    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, VOCAB, (mb, seq_len + 1), generator=g) for _ in range(n)]


def _time_steps(step, batches, warmup: int, steps: int) -> dict:
    """Median CUDA-event interval between step starts, after warm-up (compile included there)."""
    import torch

    t0 = time.perf_counter()
    for i in range(warmup):
        step(batches[i % len(batches)])
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
    t0 = time.perf_counter()
    for i in range(steps):
        events[i].record()
        step(batches[i % len(batches)])
    events[steps].record()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    intervals = [events[i].elapsed_time(events[i + 1]) / 1000 for i in range(steps)]
    return {"step_s_median": statistics.median(intervals), "step_s_min": min(intervals),
            "step_s_max": max(intervals), "step_s_wall_mean": wall / steps, "warmup_s": warm_s,
            "timed_steps": steps}


def _finish(result: dict, config, num_parameters: int, peak_tflops: float) -> dict:
    import torch

    from training.metrics import flops_per_token, mfu, peak_memory_bytes

    tokens = config.train.micro_batch_size * config.train.seq_len
    model = config.model
    fpt = flops_per_token(num_parameters, model.num_layers, model.hidden_size, config.train.seq_len)
    tps = tokens / result["step_s_median"]
    result.update(tokens_per_step=tokens, tokens_per_s=tps, mfu=mfu(tps, fpt, peak_tflops),
                  params=num_parameters, flops_per_token=fpt,
                  peak_alloc_gib=peak_memory_bytes("cuda") / 2**30,
                  peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
    return result


def run_plain(mb: int, warmup: int, steps: int, peak_tflops: float) -> dict:
    import torch
    import torch.nn.functional as F

    from training.model import build_model, count_parameters
    from training.engine import param_groups, warmup_cosine

    config = _configs(SMOLLM2, 2048, mb)
    torch.manual_seed(0)
    model = build_model(config.model, VOCAB, 0, 0).cuda()
    n = count_parameters(model)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95), fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(10, 10_000, 0.1))

    @torch.compile
    def forward_loss(block):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=block[:, :-1]).logits
        return F.cross_entropy(logits.float().flatten(0, 1), block[:, 1:].flatten())

    def step(batch):
        loss = forward_loss(batch.to("cuda", non_blocking=True))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    result = _time_steps(step, _host_batches(4, mb, 2048), warmup, steps)
    result["setup"] = "fp32 weights + bf16 autocast, forward+loss in one torch.compile, fused AdamW, no host sync"
    return _finish(result, config, n, peak_tflops)


def _init_dist():
    import deepspeed
    import torch

    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.utils.logger.setLevel("WARNING")
    deepspeed.init_distributed(dist_backend="nccl")
    torch.cuda.set_device(0)


def _trainer_engine(config):
    """training.train's own engine set-up (build_engine), as train_rank calls it."""
    from training.engine import build_engine

    return build_engine(config, VOCAB, 0, 0)


def _trainer_step(engine, scheduler, config):
    """training.train.train_rank's step: its StepRunner with its loss_function, the non-finite
    check (`check`, at log steps in the trainer) every 10 steps, as log_every 10 does."""
    import torch

    from training.loss import loss_function
    from training.step import NonfiniteGuard, StepRunner

    device = torch.device("cuda", 0)
    runner = StepRunner(engine, loss_function(config), config, device,
                        NonfiniteGuard(config.train.on_nonfinite_loss, config.train.max_skipped_batches))
    losses, count = [], [0]

    def step(batch):
        count[0] += 1
        lr = scheduler.get_last_lr()[0]
        runner.step(count[0], lr, iter([batch]))
        if count[0] % 10 == 0:
            runner.check(lr)
            losses.append(runner.take_mean_loss())
    return step, losses


def run_trainer(mb: int, warmup: int, steps: int, peak_tflops: float, **train) -> dict:
    """One trainer variant; `train`: TrainConfig settings (compile, zero_stage, precision, ...)."""
    _init_dist()
    config = _configs(SMOLLM2, 2048, mb, **train)
    zero_stage, precision, compile = config.train.zero_stage, config.train.precision, config.train.compile
    engine, scheduler, n = _trainer_engine(config)
    step, losses = _trainer_step(engine, scheduler, config)
    result = _time_steps(step, _host_batches(4, mb, 2048), warmup, steps)
    result["setup"] = (f"DeepSpeed ZeRO-{zero_stage} {precision}, engine.compile() and compiled loss {'on' if compile else 'off'}, "
                       "training.step.StepRunner (host reads of loss/flags at log steps only)"
                       + (f", chunked loss {config.train.chunked_loss_tokens}" if config.train.chunked_loss_tokens else ""))
    result["last_losses"] = losses[-3:]
    return _finish(result, config, n, peak_tflops)


def run_mem(zero_stage: int, offload: bool = False, cap_gib: float = 12.0, peak_tflops: float = 989.0) -> dict:
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(cap_gib * 2**30 / total, 0)
    _init_dist()
    config = _configs(BIG, 1024, 1, zero_stage=zero_stage, activation_checkpointing=True,
                      offload_optimizer=offload, offload_params=offload)
    result = {"cap_gib": cap_gib, "setup": f"ZeRO-{zero_stage}" + (" + optimizer and parameter offload" if offload else "")
              + ", bf16, mb 1, seq 1024, activation checkpointing"}
    try:
        engine, scheduler, n = _trainer_engine(config)
        step, _ = _trainer_step(engine, scheduler, config)
        result.update(_time_steps(step, _host_batches(2, 1, 1024), 1, 2))
        result["fits"] = True
        return _finish(result, config, n, peak_tflops)
    except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
        if "out of memory" not in str(exc).lower():
            raise
        from training.model import build_model, count_parameters
        from training.metrics import peak_memory_bytes

        result.update(fits=False, error=str(exc).splitlines()[0][:300],
                      params=count_parameters(build_model(config.model, VOCAB, 0, 0)),
                      peak_alloc_gib=peak_memory_bytes("cuda") / 2**30)
        return result


def run_variant(name: str, args) -> dict:
    kind, settings = GPU_VARIANTS[name]
    warmup, steps = (3, 8) if args.quick else (6, 20)
    if kind == "plain":
        return run_plain(settings["mb"], warmup, steps, args.peak_tflops)
    if kind == "trainer":
        train = {key: value for key, value in settings.items() if key != "mb"}
        return run_trainer(settings["mb"], warmup, steps, args.peak_tflops, **train)
    return run_mem(settings["zero_stage"], settings.get("offload", False), args.mem_cap_gib, args.peak_tflops)


# ---------------------------------------------------------------- GPU: driver

def gpu_section(args) -> dict:
    import torch

    names = args.only.split(",") if args.only else (QUICK_GPU if args.quick else list(GPU_VARIANTS))
    info = {"device": torch.cuda.get_device_name(0), "date": now_utc(), "torch": torch.__version__,
            "command": " ".join([sys.executable, *sys.argv])}
    for module in ("transformers", "deepspeed"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    print("gpu:", json.dumps(info), flush=True)
    started = time.perf_counter()
    results = {}
    for name in names:
        left = args.budget - (time.perf_counter() - started)
        if left < 45:
            results[name] = {"skipped": f"time budget ({args.budget}s) spent"}
            print(name, "skipped: budget", flush=True)
            continue
        out_file = args.out / f"{name}.json"
        command = [sys.executable, __file__, "--variant", name, "--variant-json", str(out_file),
                   "--peak-tflops", str(args.peak_tflops), "--mem-cap-gib", str(args.mem_cap_gib)]
        command += ["--quick"] if args.quick else []
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(command, timeout=min(args.variant_timeout, left), capture_output=True, text=True)
            if proc.returncode == 0 and out_file.is_file():
                results[name] = json.loads(out_file.read_text())
            else:
                results[name] = {"error": f"exit {proc.returncode}: " + (proc.stderr or proc.stdout)[-600:]}
            (args.out / f"{name}.log").write_text(proc.stdout + proc.stderr)
        except subprocess.TimeoutExpired:
            results[name] = {"error": f"timed out after {min(args.variant_timeout, left):.0f}s"}
        results[name]["variant_wall_s"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(results[name])[:700], flush=True)
    summary = {"info": info, "results": results}
    (args.out / "gpu.json").write_text(json.dumps(summary, indent=2))
    print_gpu_table(summary)
    return summary


def print_gpu_table(summary: dict) -> None:
    print(f"\n{summary['info']['device']}, {summary['info']['date']}; SmolLM2-135M shape, seq 2048, bf16")
    print(f"{'variant':32} {'ms/step':>8} {'tokens/s':>10} {'MFU':>6} {'peak GiB':>9}  note")
    for name, r in summary["results"].items():
        if "step_s_median" in r:
            print(f"{name:32} {1000 * r['step_s_median']:8.1f} {r['tokens_per_s']:10.0f} {100 * r['mfu']:5.1f}% "
                  f"{r['peak_alloc_gib']:9.2f}  {r.get('setup', '')}")
        else:
            note = r.get("skipped") or r.get("error", "")
            peak = f"{r['peak_alloc_gib']:9.2f}" if "peak_alloc_gib" in r else f"{'-':>9}"
            print(f"{name:32} {'-':>8} {'-':>10} {'-':>6} {peak}  {r.get('setup', '')} {note[:160]}")


# ---------------------------------------------------------------- CPU

def cpu_section(args) -> dict:
    import logging

    import training
    from flows.config import load_config

    logging.basicConfig(level=logging.WARNING)
    base = load_config("test").training
    steps = 20 if args.quick else 40
    info = {"device": f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
            "date": now_utc(), "command": " ".join([sys.executable, *sys.argv]), "load_avg_before": os.getloadavg()}
    results = {}
    with tempfile.TemporaryDirectory(prefix="train_bench_") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        lines = []  # the fixture holds a few deliberately broken records for the data stages: skip them
        for line in (REPO_ROOT / "tests/fixtures/tiny.jsonl").read_text(encoding="utf-8").split("\n"):
            try:
                if isinstance(json.loads(line).get("text"), str):
                    lines.append(line)
            except (ValueError, AttributeError):
                pass
        cut = len(lines) * 9 // 10
        (data / "train.jsonl").write_text("\n".join(lines[:cut]) + "\n", encoding="utf-8")
        (data / "validation.jsonl").write_text("\n".join(lines[cut:]) + "\n", encoding="utf-8")
        tokenizer = training.train_tokenizer(base.tokenizer, data / "train.jsonl", tmp / "tokenizer")
        for ranks in (1, 2):
            config = base.model_copy(update={"train": base.train.model_copy(update=dict(
                num_ranks=ranks, max_steps=steps, log_every=5, warmup_steps=5))})
            t0 = time.perf_counter()
            result = training.run(config, data, tokenizer, tmp / f"model_{ranks}")
            wall = time.perf_counter() - t0
            log = [json.loads(line) for line in
                   (tmp / f"model_{ranks}" / "train_log.jsonl").read_text().split("\n") if line]
            log = [e for e in log if "loss" in e]
            seconds = [e["seconds"] for e in log]
            per_step = [(b - a) / 5 for a, b in zip(seconds, seconds[1:])]  # intervals after the first
            results[f"{ranks}_rank"] = {
                "ranks": ranks, "steps": steps, "step_s_median": statistics.median(per_step),
                "seconds_per_step_incl_first": result.seconds_per_step,
                "tokens_per_step": config.train.micro_batch_size * config.train.seq_len * ranks,
                "final_train_loss": result.final_train_loss, "launch_to_exit_s": round(wall, 1)}
            print(f"{ranks} rank(s):", json.dumps(results[f"{ranks}_rank"]), flush=True)
    one, two = results["1_rank"], results["2_rank"]
    results["overhead_ratio_step_time"] = two["step_s_median"] / one["step_s_median"]
    results["tokens_per_s_ratio"] = (two["tokens_per_step"] / two["step_s_median"]) / (
        one["tokens_per_step"] / one["step_s_median"])
    info["load_avg_after"] = os.getloadavg()
    summary = {"info": info, "results": results}
    (args.out / "cpu.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{info['device']}, {info['date']}; tiny model (configs/test.yaml), training.run, ZeRO-2 fp32 gloo")
    print(f"{'ranks':>5} {'s/step (median)':>16} {'tokens/step':>12} {'tokens/s':>9}")
    for r in (one, two):
        print(f"{r['ranks']:>5} {r['step_s_median']:16.4f} {r['tokens_per_step']:12d} "
              f"{r['tokens_per_step'] / r['step_s_median']:9.0f}")
    print(f"overhead ratio (2-rank / 1-rank step time): {results['overhead_ratio_step_time']:.2f}; "
          f"tokens/s ratio: {results['tokens_per_s_ratio']:.2f}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="GPU section (CUDA device)")
    parser.add_argument("--cpu", action="store_true", help="CPU section: 2-rank ZeRO-2 vs 1 process")
    parser.add_argument("--quick", action="store_true", help="fewer variants and steps")
    parser.add_argument("--only", help="comma-separated GPU variants: " + ",".join(GPU_VARIANTS))
    parser.add_argument("--budget", type=float, default=1800, help="GPU section: seconds for all variants")
    parser.add_argument("--variant-timeout", type=float, default=240)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--mem-cap-gib", type=float, default=12.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "train_bench")
    parser.add_argument("--variant", choices=list(GPU_VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--variant-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        result = run_variant(args.variant, args)
        args.variant_json.write_text(json.dumps(result, indent=2))
        return 0
    if not (args.gpu or args.cpu):
        parser.error("choose --gpu and/or --cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.gpu:
        gpu_section(args)
    if args.cpu:
        cpu_section(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
