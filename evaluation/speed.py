"""Speed as a user feels it: time to first token and decode tokens/s at each batch size, and the
peak memory of a process that loads the model and generates.

`measure_in_child` measures in a child process so the peak resident memory is this model's alone
(a process that evaluated five variants before never gives memory back to the OS). The children
fork from one multiprocessing fork server per process, which imports torch, transformers and the
model code once: a fresh `python -m evaluation.speed` per variant spent ~7 of its ~8 s importing. A forked
child's VmHWM starts afresh like an exec'd one's, and the server is a fresh process itself, so the
peak is still the model's (with torch and transformers loaded, as in any process that serves it).
`python -m evaluation.speed MODEL_DIR REFERENCE CONFIG_JSON` measures one folder from a shell.
Prompts are equal-length slices of the reference text, so a batch needs no padding.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from evaluation.config import EvaluationConfig

RESULT_PREFIX = "speed-result: "


def prompts(tokenizer, text: str, count: int, length: int) -> list[list[int]]:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) < count * length:
        raise ValueError(f"the reference text has {len(ids)} tokens, fewer than {count} prompts of {length}")
    return [ids[i * length:(i + 1) * length] for i in range(count)]


def measure(model_dir: Path, config: EvaluationConfig, text: str) -> dict[str, float]:
    """ttft_ms_b{B} (median milliseconds to the first new token of every sequence of a batch of B)
    and decode_tokens_per_s_b{B} (new tokens of the whole batch per second after the first)."""
    import torch

    from core.models import load_model

    model, tokenizer = load_model(model_dir)
    n = config.speed_new_tokens
    results: dict[str, float] = {}
    for batch in config.speed_batch_sizes:
        ids = torch.tensor(prompts(tokenizer, text, batch, config.speed_prompt_tokens))

        def generate(new_tokens: int) -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                # min_new_tokens: an early EOS would make a model look faster than it is.
                output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                        min_new_tokens=new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)
            elapsed = time.perf_counter() - start
            if output.shape[1] != ids.shape[1] + new_tokens:
                raise RuntimeError(f"generate made {output.shape[1] - ids.shape[1]} tokens, not {new_tokens}")
            return elapsed

        generate(n)  # warm-up: first-call allocations and kernel selection
        first = statistics.median(generate(1) for _ in range(config.speed_repeats))
        whole = statistics.median(generate(n) for _ in range(config.speed_repeats))
        results[f"ttft_ms_b{batch}"] = 1000 * first
        results[f"decode_tokens_per_s_b{batch}"] = batch * (n - 1) / max(whole - first, 1e-9)
    return results


def peak_memory_bytes() -> int:
    """This process's peak resident memory. On Linux VmHWM, which starts afresh at exec: ru_maxrss
    does not (a child forked from a 5 GB pipeline process would report 5 GB)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux, bytes on macOS


_FORK_SERVER: list = []  # the multiprocessing context, once made


def _fork_server():
    if not _FORK_SERVER:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        # Imported once in the server; each child forks with them loaded. transformers loads a
        # model's classes and the generation code on first use (~1,900 modules, ~7 s): name them.
        # (The preload list is the module-wide fork server's: nothing else in Conveyor starts one.
        # A module that does not import is skipped by the server.)
        context.set_forkserver_preload([
            "evaluation._fork_server_quiet", "torch", "transformers", "transformers.models.auto.modeling_auto",
            "transformers.models.llama.modeling_llama", "transformers.generation.utils", "safetensors.torch",
            "torchao.quantization", "core.models", "core.int8", "evaluation.speed"])
        _FORK_SERVER.append(context)
    return _FORK_SERVER[0]


def _measure_child(model_dir: str, reference: str, config_json: str, connection) -> None:
    import traceback

    try:
        results = measure(Path(model_dir), EvaluationConfig.model_validate_json(config_json),
                          Path(reference).read_text(encoding="utf-8"))
        results["peak_memory_bytes"] = peak_memory_bytes()
        connection.send(("ok", results))
    except BaseException:  # noqa: BLE001 - the parent raises it with the child's traceback
        connection.send(("error", traceback.format_exc()[-3000:]))
    finally:
        connection.close()


def measure_in_child(model_dir: Path, config: EvaluationConfig, reference: Path) -> dict[str, float]:
    context = _fork_server()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_measure_child, name="conveyor-speed", daemon=True,
                            args=(str(model_dir), str(reference), config.model_dump_json(), sender))
    child.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:  # died without a word: killed (out of memory?)
        status, payload = "error", "the measuring process died"
    finally:
        receiver.close()
        child.join()
    if status != "ok":
        raise RuntimeError(f"speed measurement of {model_dir} failed (exit code {child.exitcode}):\n{payload}")
    return payload


def main() -> None:
    model_dir, reference, config = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    results = measure(model_dir, EvaluationConfig.model_validate_json(config), reference.read_text(encoding="utf-8"))
    results["peak_memory_bytes"] = peak_memory_bytes()
    print(RESULT_PREFIX + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
