"""Are the local server's temperature-0 replies repeatable? The same requests sent twice, in two orders,
under each server setting: one or two parallel slots, the prompt cache on or off.

llama.cpp's arithmetic is not the same for a prompt processed whole, for one whose prefix a slot
had cached, and for one decoded beside another slot's request; a small model's reply can change
with it. This prints, per setting, how many prompts got the same reply both times, and the seconds
per reply (what repeatability costs).

    python benchmarks/local_determinism.py --model FILE.gguf --seed-set humaneval --prompts 6

Each setting starts its own server; the script refuses to run beside another job's server for the
same model file (it would join that one, with that one's settings).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import seeds  # noqa: E402

from autoevol.data import iter_items  # noqa: E402
from autoevol.lm.local import LocalServer, default_model_path  # noqa: E402

#: (parallel slots, prompt cache) of each setting measured, the server's default first.
SETTINGS = ((2, True), (1, True), (2, False), (1, False))


@dataclass(frozen=True)
class Trial:
    """One server setting: prompts whose two replies were identical, and the seconds per reply."""

    slots: int
    prompt_cache: bool
    identical: int
    prompts: int
    seconds_per_reply: float


def chat_completion(api_base: str, prompt: str, max_tokens: int, **options: object) -> dict:
    """The server's temperature-0 chat completion of ``prompt`` (the response body), sent as is."""
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "temperature": 0,
                       "max_tokens": max_tokens, **options}).encode()
    request = urllib.request.Request(f"{api_base}/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=3600) as response:
        return json.loads(response.read())


def reply(api_base: str, prompt: str, max_tokens: int) -> str:
    """The server's temperature-0 chat reply to ``prompt``."""
    return chat_completion(api_base, prompt, max_tokens)["choices"][0]["message"]["content"]


def trial(model: Path, slots: int, prompt_cache: bool, prompts: list[str], max_tokens: int) -> Trial:
    """Every prompt twice, ``slots`` at a time: in order, then in reverse (other neighbours, other caches)."""
    server = LocalServer(model, slots=slots, prompt_cache=prompt_cache).start()
    try:
        if not server.started_here:
            raise SystemExit(f"error: another job runs a llama.cpp server for {model.name}; stop it first "
                             "(this script would measure that server's settings)")
        clock = time.monotonic()
        runs = []
        for order in (prompts, prompts[::-1]):
            with ThreadPoolExecutor(slots) as pool:
                replies = dict(zip(order, pool.map(lambda prompt: reply(server.api_base, prompt, max_tokens), order)))
            runs.append([replies[prompt] for prompt in prompts])
        seconds = (time.monotonic() - clock) / (2 * len(prompts))
    finally:
        server.stop()
    identical = sum(first == second for first, second in zip(*runs))
    return Trial(slots, prompt_cache, identical, len(prompts), round(seconds, 2))


def markdown(trials: list[Trial]) -> str:
    lines = ["| parallel slots | prompt cache | identical replies | seconds per reply |", "|---:|---|---:|---:|"]
    lines += [f"| {t.slots} | {'on' if t.prompt_cache else 'off'} | {t.identical} of {t.prompts} | "
              f"{t.seconds_per_reply:.1f} |" for t in trials]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--model", type=Path, default=None, help="a GGUF file (default: the embedded model)")
    source = parse.add_mutually_exclusive_group(required=True)
    source.add_argument("--seed-file", type=Path, help="instructions to send (JSONL, CSV, ...)")
    source.add_argument("--seed-set", choices=sorted(seeds.SEED_SETS), help="a measurement seed set")
    parse.add_argument("--prompts", type=int, default=6, help="how many instructions (the first ones)")
    parse.add_argument("--max-tokens", type=int, default=120)
    return parse


def main(argv: list[str] | None = None) -> list[Trial]:
    """Measure every setting and print the table."""
    args = parser().parse_args(argv)
    data = args.seed_file or seeds.prepare(args.seed_set)
    prompts = [f"Rewrite this task so that it is harder, keeping what it asks for:\n\n{item.instruction}"
               for item in list(iter_items(data))[: args.prompts]]
    model = args.model or default_model_path()
    trials = [trial(model, slots, prompt_cache, prompts, args.max_tokens) for slots, prompt_cache in SETTINGS]
    print(f"Repeatability of temperature-0 replies: {model.name}, {len(prompts)} prompts of {data.name}, "
          f"{args.max_tokens} tokens at most\n\n{markdown(trials)}")
    return trials


if __name__ == "__main__":
    main()
