"""What each prompt mode costs: tokens per example and the price of 10k examples, on CQA, SVAMP, e-SNLI.

Compares zero-shot (Vöge et al. 2024), zero-shot-cot (Kojima et al., two requests), few-shot-cot
(the Distilling Step-by-Step baseline) and label-only, with the prompts edgedistill really sends.

  prompt tokens      counted exactly (o200k, as gpt-4o-mini / gpt-4.1-mini / gpt-4o bill them) on a
                     seeded sample of the test split (200 examples; SVAMP's test split has exactly 200)
  few-shot exemplars drawn from the training pool with their PaLM-540B rationales (rows whose PaLM
                     label matches gold), as many as DSS used: 7 for CQA and 8 for SVAMP (the
                     few-shot CoT prompts of Wei et al. 2022: CSQA 7, GSM8K-style math 8); for
                     e-SNLI the number is not stated in the release, we ASSUME 6
  completion tokens  measured from real outputs: few-shot-cot from PaLM's completions of these very
                     examples (after cutting the invented continuation), zero-shot / zero-shot-cot /
                     label-only from the local-teacher transcript (tests/data/local_teacher_transcript.jsonl,
                     a 0.5B model, 4 examples per dataset and mode), re-counted with o200k; the
                     documented estimates (edgedistill.teacher.cost.TYPICAL_COMPLETION_TOKENS) are listed beside
  zero-shot-cot      stage 2 re-sends stage 1 plus the reasoning, so its prompt tokens are counted
                     with the measured reasoning length
  routes             live vs Batch API vs Flex for 10k and 100k inputs at two list prices (gpt-4o-mini,
                     gpt-4.1), for zero-shot without and with letter scoring (1 and 3 option orders) and
                     few-shot-cot with DSS's exemplar count and with enough exemplars for the shared prefix
                     to reach the provider's prompt cache (1,024 tokens): the planner's arithmetic
                     (edgedistill.teacher.cost.plan_routes, the same as `annotate --dry-run`), the shared
                     prefixes counted exactly on the real prompts, hosted-teacher completion estimates

    python benchmarks/annotation_cost.py [--dss-dir ../shared/datasets/dss] [--sample 200]

Writes benchmarks/results/annotation_cost.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import random
import re
import statistics
import sys

from common import DSS_DIR, RESULTS, ROOT

from edgedistill.atomic import write_json, write_text
from edgedistill.edge.arith import same_number
from edgedistill.edge.machine import machine_record
from edgedistill.teacher.cost import (
    BATCH_PRICE_FACTOR,
    BATCH_WINDOW_H,
    CACHE_MIN_TOKENS,
    DECODE_TOKENS_PER_S,
    FIRST_TOKEN_S,
    FLEX_SLOWDOWN,
    PRICES,
    TYPICAL_COMPLETION_TOKENS,
    cacheable_tokens,
    count_tokens,
    plan_routes,
    shared_prefix_tokens,
)
from edgedistill.teacher.dss import DATASETS, load_dss
from edgedistill.teacher.prompts import plan

TRAIN = {"cqa": "train", "svamp": "train", "esnli": "valid"}
SHOTS = {"cqa": 7, "svamp": 8, "esnli": 6}
SHOTS_SOURCE = {
    "cqa": "Wei et al. 2022 CSQA prompt: 7",
    "svamp": "Wei et al. 2022 GSM8K prompt: 8",
    "esnli": "not stated in the DSS release: assumed 6",
}
MODES = ("label-only", "zero-shot", "zero-shot-cot", "few-shot-cot")
MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o")
TOKENIZER_MODEL = "gpt-4o-mini"  # o200k_base, the encoding of all three priced models
ROUTE_MODELS = ("gpt-4o-mini", "gpt-4.1")  # two list prices (and cached rates: 50 % and 25 % of input)
ROUTE_SIZES = (10_000, 100_000)
ROUTE_CONCURRENCY = 16  # live and flex requests in flight, for the planner's time
SCORE_ORDERS = (1, 3)
PREFIX_SAMPLE = 50  # prompts whose common start is the shared prefix
TRANSCRIPT = ROOT / "tests" / "data" / "local_teacher_transcript.jsonl"


def exemplars(dataset: str, dss_dir, k: int, seed: int) -> list[dict]:
    """k training rows whose PaLM answer is right, with PaLM's rationale: stand-ins for DSS's exemplars."""
    task, rows = load_dss(dataset, TRAIN[dataset], dss_dir)
    right = [
        r
        for r in rows
        if r.status == "ok"
        and r.rationale
        and (same_number(r.label, r.gold) if task.type == "numeric" else r.label == r.gold)
    ]
    picked = random.Random(seed).sample(right, k)
    return [
        {"id": r.id, "input": r.input, "choices": r.choices, "answer": r.label, "rationale": r.rationale}
        for r in picked
    ]


def palm_completion(dataset: str, raw: str) -> str:
    """PaLM's answer to this example alone: the invented next question cut off, as the importer does."""
    return re.split(DATASETS[dataset][1], raw, maxsplit=1)[0].strip()


def transcript_completions() -> dict:
    """{(dataset, mode): [completion tokens per stage, ...]} from the recorded local-teacher run."""
    out: dict = {}
    lines = [json.loads(x) for x in TRANSCRIPT.read_text(encoding="utf-8").splitlines() if x.strip()]
    for r in lines[1:]:
        out.setdefault((r["task"], r["mode"]), []).append(
            {
                "o200k": [count_tokens(o, TOKENIZER_MODEL) for o in r["outputs"]],
                "server": [u["completion_tokens"] for u in r["usage"]],
                "truncated": any(u.get("finish_reason") == "length" for u in r["usage"]),
            }
        )
    return out


def mean(xs) -> float:
    return round(statistics.fmean(xs), 1) if xs else 0.0


def cost_10k(prompt: float, completion: float, model: str) -> float:
    pin, pout, _ = PRICES[model]
    return round(10_000 * (prompt * pin + completion * pout) / 1e6, 2)


def measure(dataset: str, dss_dir, sample: int, seed: int, measured: dict) -> dict:
    task, rows = load_dss(dataset, "test", dss_dir)
    picked = random.Random(seed).sample(rows, min(sample, len(rows)))
    shots = exemplars(dataset, dss_dir, SHOTS[dataset], seed)
    shot_tokens = [
        count_tokens(plan(task, "few-shot-cot", [s]).messages(picked[0]), TOKENIZER_MODEL)
        - count_tokens(plan(task, "zero-shot-cot").messages(picked[0]), TOKENIZER_MODEL)
        for s in shots
    ]
    result = {
        "examples_sampled": len(picked),
        "test_split_size": len(rows),
        "exemplars": len(shots),
        "exemplar_source": SHOTS_SOURCE[dataset],
        "exemplar_ids": [s["id"] for s in shots],
        "modes": {},
    }
    for mode in MODES:
        p = plan(task, mode, shots if mode == "few-shot-cot" else None)
        stage1 = [count_tokens(p.messages(ex), TOKENIZER_MODEL) for ex in picked]
        runs = measured.get((dataset, mode), [])
        if mode == "few-shot-cot":
            completions = [count_tokens(palm_completion(dataset, ex.raw), TOKENIZER_MODEL) for ex in picked]
            source = f"PaLM-540B outputs of these {len(picked)} examples, noise cut"
            per_stage = [mean(completions)]
        elif runs:
            per_stage = [mean([r["o200k"][i] for r in runs]) for i in range(len(runs[0]["o200k"]))]
            source = f"local-teacher transcript, {len(runs)} responses" + (
                f" ({sum(r['truncated'] for r in runs)} cut at max_tokens)" if any(r["truncated"] for r in runs) else ""
            )
        else:
            typical = TYPICAL_COMPLETION_TOKENS[mode]
            per_stage = list(typical) if isinstance(typical, tuple) else [typical]
            source = "documented estimate (TYPICAL_COMPLETION_TOKENS)"
        prompt = mean(stage1)
        if mode == "zero-shot-cot":
            # stage 2 re-sends stage 1, the reasoning (stage 1's completion) and the extraction trigger
            stage2 = [count_tokens(p.messages(ex, [""]), TOKENIZER_MODEL) for ex in picked]
            prompt = round(prompt + mean(stage2) + per_stage[0], 1)
        completion = round(sum(per_stage), 1)
        typical = TYPICAL_COMPLETION_TOKENS[mode]
        # The 0.5B local model is a weak stand-in for a hosted teacher (it often skips the explanation
        # or rambles to max_tokens), so price these modes with the documented estimates too.
        estimated = list(typical) if isinstance(typical, tuple) else [typical]
        if mode == "few-shot-cot":
            prompt_est, completion_est = prompt, completion
        elif mode == "zero-shot-cot":
            prompt_est, completion_est = round(prompt - per_stage[0] + estimated[0], 1), sum(estimated)
        else:
            prompt_est, completion_est = prompt, sum(estimated)
        result["modes"][mode] = {
            "requests_per_example": p.stages,
            "prompt_tokens": prompt,
            "prompt_tokens_stage1": mean(stage1),
            "completion_tokens": completion,
            "completion_tokens_per_stage": per_stage,
            "completion_source": source,
            "completion_tokens_documented_estimate": sum(typical) if isinstance(typical, tuple) else typical,
            "server_completion_tokens": mean([sum(r["server"]) for r in runs])
            if runs and mode != "few-shot-cot"
            else None,
            "cost_usd_per_10k": {m: cost_10k(prompt, completion, m) for m in MODELS},
            "with_documented_estimate": {
                "prompt_tokens": prompt_est,
                "completion_tokens": completion_est,
                "cost_usd_per_10k": {m: cost_10k(prompt_est, completion_est, m) for m in MODELS},
            },
        }
    modes = result["modes"]
    result["routes"] = route_costs(dataset, task, picked, dss_dir, seed, modes, shots, mean(shot_tokens))
    result["signal"] = signal_costs(task, picked, modes["zero-shot"], modes["label-only"], modes["few-shot-cot"])
    result["prompt_tokens_per_exemplar"] = mean(shot_tokens)
    result["ratio_few_shot_cot_over_zero_shot"] = {
        "prompt_tokens": round(modes["few-shot-cot"]["prompt_tokens"] / modes["zero-shot"]["prompt_tokens"], 2),
        "total_tokens": round(
            (modes["few-shot-cot"]["prompt_tokens"] + modes["few-shot-cot"]["completion_tokens"])
            / (modes["zero-shot"]["prompt_tokens"] + modes["zero-shot"]["completion_tokens"]),
            2,
        ),
        **{
            f"cost_{m}": round(
                modes["few-shot-cot"]["cost_usd_per_10k"][m] / modes["zero-shot"]["cost_usd_per_10k"][m], 2
            )
            for m in MODELS
        },
        "cost_gpt-4o-mini_with_documented_estimate": round(
            modes["few-shot-cot"]["with_documented_estimate"]["cost_usd_per_10k"]["gpt-4o-mini"]
            / modes["zero-shot"]["with_documented_estimate"]["cost_usd_per_10k"]["gpt-4o-mini"],
            2,
        ),
    }
    return result


def route_configs(dataset, task, picked, dss_dir, seed, modes, shots, per_exemplar: float) -> list[dict]:
    """Per input: requests, prompt and completion tokens, and the prompt-cache hits (the cacheable part of the
    prefix its requests share with every other input's), for each configuration the route table prices."""
    sample = picked[:PREFIX_SAMPLE]
    zero = plan(task, "zero-shot")
    z = modes["zero-shot"]["with_documented_estimate"]  # a hosted teacher's answer + explanation (40 tokens)
    z_prefix = shared_prefix_tokens([zero.messages(ex) for ex in sample], TOKENIZER_MODEL)
    configs = [
        {
            "name": "zero-shot",
            "requests": 1,
            "prompt_tokens": z["prompt_tokens"],
            "completion_tokens": z["completion_tokens"],
            "shared_prefix_tokens": z_prefix,
            "cached_tokens": cacheable_tokens(z_prefix),
        }
    ]
    if task.type != "numeric":
        for k in SCORE_ORDERS:
            score = [zero.score_messages(ex, "letter", j) for ex in picked for j in range(k)]
            s_prefix = shared_prefix_tokens([zero.score_messages(ex, "letter", 0) for ex in sample], TOKENIZER_MODEL)
            configs.append(
                {
                    "name": f"zero-shot + letter scoring, {k} order{'s' if k > 1 else ''}",
                    "requests": 1 + k,
                    "prompt_tokens": round(z["prompt_tokens"] + k * mean([count_tokens(m) for m in score]), 1),
                    "completion_tokens": z["completion_tokens"] + k,  # one token per scoring request
                    "shared_prefix_tokens": max(z_prefix, s_prefix),
                    "cached_tokens": cacheable_tokens(z_prefix) + k * cacheable_tokens(s_prefix),
                }
            )
    f = modes["few-shot-cot"]  # PaLM's completions of these examples
    dss_count = len(shots)
    while True:  # DSS's exemplar count, then as many as the shared prefix needs to reach the prompt cache
        few = plan(task, "few-shot-cot", shots)
        prefix = shared_prefix_tokens([few.messages(ex) for ex in sample], TOKENIZER_MODEL)
        if len(shots) == dss_count or prefix >= CACHE_MIN_TOKENS:
            configs.append(
                {
                    "name": f"few-shot-cot, {len(shots)} exemplars"
                    + (" (DSS's count)" if len(shots) == dss_count else ""),
                    "requests": 1,
                    "prompt_tokens": mean([count_tokens(few.messages(ex), TOKENIZER_MODEL) for ex in picked]),
                    "completion_tokens": f["completion_tokens"],
                    "shared_prefix_tokens": prefix,
                    "cached_tokens": cacheable_tokens(prefix),
                }
            )
        if prefix >= CACHE_MIN_TOKENS:
            return configs
        more = len(shots) + max(1, math.ceil((CACHE_MIN_TOKENS - prefix) / per_exemplar))
        shots = exemplars(dataset, dss_dir, more, seed)


def route_costs(dataset, task, picked, dss_dir, seed, modes, shots, per_exemplar: float) -> list[dict]:
    """Each configuration at each size and list price on each route: cost.plan_routes, as a dry run plans it."""
    out = []
    for c in route_configs(dataset, task, picked, dss_dir, seed, modes, shots, per_exemplar):
        for n in ROUTE_SIZES:
            row = {**c, "inputs": n, "models": {}}
            for model in ROUTE_MODELS:
                pin, pout, pcached = PRICES[model]
                plan_ = plan_routes(
                    n * c["requests"],
                    n * c["prompt_tokens"],
                    n * c["completion_tokens"],
                    (pin, pout),
                    ROUTE_CONCURRENCY,
                    BATCH_PRICE_FACTOR,
                    pcached,
                    (n - 1) * c["cached_tokens"],  # every input's requests but the very first hit the cache
                )
                row["models"][model] = {
                    r["route"]: {"cost_usd": round(r["cost_usd"], 2), "uncached_usd": round(r["cost_usd_uncached"], 2)}
                    for r in plan_["routes"]
                }
                row["hours"] = {r["route"]: round(r["hours"], 2) for r in plan_["routes"]}
            out.append(row)
    return out


def signal_costs(task, picked, zero_shot: dict, label_only: dict, few_shot: dict) -> dict:
    """What votes and logprob scoring add to zero-shot, against few-shot CoT: N votes cost the zero-shot
    answer plus N-1 more zero-shot prompts whose completion stops after the answer line (as long as a
    label-only answer: zero-shot's answer comes before its explanation); a scoring request is its prompt
    plus one completion token (the first token's logprobs)."""
    score = (
        0.0
        if task.type == "numeric"
        else mean(
            [count_tokens(plan(task, "zero-shot").score_messages(ex, "letter"), TOKENIZER_MODEL) for ex in picked]
        )
    )
    out = {}
    for votes in (3, 5):
        for scored in (False, True):
            if scored and not score:
                continue
            name = f"zero-shot, --votes {votes}" + (" + letter scoring" if scored else "")
            row = {}
            for basis, z, lo, f in (
                ("measured", zero_shot, label_only, few_shot),
                (
                    "documented estimate",
                    zero_shot["with_documented_estimate"],
                    label_only["with_documented_estimate"],
                    few_shot["with_documented_estimate"],
                ),
            ):
                prompt = votes * z["prompt_tokens"] + (score if scored else 0)
                completion = z["completion_tokens"] + (votes - 1) * lo["completion_tokens"] + (1 if scored else 0)
                cost = {m: cost_10k(prompt, completion, m) for m in MODELS}
                fcost = f["cost_usd_per_10k"]
                row[basis] = {
                    "prompt_tokens": round(prompt, 1),
                    "completion_tokens": round(completion, 1),
                    "cost_usd_per_10k": cost,
                    "few_shot_cot_over_this_cost": round(fcost["gpt-4o-mini"] / cost["gpt-4o-mini"], 2),
                }
            out[name] = row
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    out = [
        "# Annotation cost per prompt mode",
        "",
        f"Command: `{m['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} cores, Python {m['python']}, "
        f"edgedistill {res['versions']['edgedistill']}, bpe-openai {res['versions']['bpe-openai']}; {res['date']}  ",
        f"Tokens counted with o200k (the encoding of {', '.join(MODELS)}); list prices USD per 1M tokens in/out: "
        + ", ".join(f"{k} {PRICES[k][0]}/{PRICES[k][1]}" for k in MODELS)
        + ".",
        "",
        "Prompt tokens are exact on a seeded sample of each test split. Completion tokens: few-shot-cot from "
        "PaLM-540B's real completions of the same examples (noise cut); the other modes from the local-teacher "
        "transcript (Qwen2.5-Coder-0.5B-Instruct, 4 responses per dataset and mode: a small sample from a small "
        "model). zero-shot-cot counts both requests; its stage 2 re-sends the reasoning.",
        "",
    ]
    for dataset, r in res["datasets"].items():
        out += [
            f"## {dataset} ({r['examples_sampled']} of {r['test_split_size']} test examples; few-shot-cot with "
            f"{r['exemplars']} exemplars from the PaLM-annotated training pool, {r['exemplar_source']}; "
            f"{r['prompt_tokens_per_exemplar']} prompt tokens per exemplar)",
            "",
            "| mode | requests | prompt tok/ex | completion tok/ex | completion source | "
            + " | ".join(f"10k ex, {m} (USD)" for m in MODELS)
            + " | with documented completion estimate: tok/ex in+out, 10k ex gpt-4o-mini (USD) |",
            "|---|---:|---:|---:|---|" + "---:|" * len(MODELS) + "---|",
        ]
        for mode, v in r["modes"].items():
            e = v["with_documented_estimate"]
            out.append(
                f"| {mode} | {v['requests_per_example']} | {v['prompt_tokens']:.0f} | {v['completion_tokens']:.0f} | "
                f"{v['completion_source']} | "
                + " | ".join(f"{v['cost_usd_per_10k'][m]:.2f}" for m in MODELS)
                + f" | {e['prompt_tokens']:.0f}+{e['completion_tokens']:.0f}, "
                f"{e['cost_usd_per_10k']['gpt-4o-mini']:.2f} |"
            )
        for name, v in r.get("signal", {}).items():
            e, m_ = v["documented estimate"], v["measured"]
            out.append(
                f"| {name} | {name.split('--votes ')[1].split()[0]}{' + 1' if 'scoring' in name else ''} | "
                f"{m_['prompt_tokens']:.0f} | {m_['completion_tokens']:.0f} | "
                "zero-shot + N-1 sampled zero-shot answer lines"
                + (" + a 1-token scoring request" if "scoring" in name else "")
                + " | "
                + " | ".join(f"{m_['cost_usd_per_10k'][m]:.2f}" for m in MODELS)
                + f" | {e['prompt_tokens']:.0f}+{e['completion_tokens']:.0f}, "
                f"{e['cost_usd_per_10k']['gpt-4o-mini']:.2f} |"
            )
        ratio = r["ratio_few_shot_cot_over_zero_shot"]
        if r.get("signal"):
            v3 = r["signal"]["zero-shot, --votes 3"]
            out += [
                "",
                f"few-shot-cot / (zero-shot with 3 votes): **{v3['measured']['few_shot_cot_over_this_cost']}x cost** "
                "(gpt-4o-mini; "
                f"{v3['documented estimate']['few_shot_cot_over_this_cost']}x with the "
                "documented completion estimate).",
            ]
        out += [
            "",
            f"few-shot-cot / zero-shot: **{ratio['prompt_tokens']}x prompt tokens**, {ratio['total_tokens']}x all "
            f"tokens, {ratio['cost_gpt-4o-mini']}x cost (gpt-4o-mini; "
            f"{ratio['cost_gpt-4o-mini_with_documented_estimate']}x "
            "with the documented zero-shot completion estimate).",
            "",
        ]
    out += routes_markdown(res)
    out += [
        "## Summary",
        "",
        "| dataset | few-shot-cot / zero-shot prompt tokens | all tokens | cost (gpt-4o-mini) | "
        "cost, documented completion estimate | cost vs zero-shot with 3 votes | same, documented estimate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, r in res["datasets"].items():
        ratio = r["ratio_few_shot_cot_over_zero_shot"]
        v3 = r.get("signal", {}).get("zero-shot, --votes 3")
        out.append(
            f"| {dataset} | {ratio['prompt_tokens']}x | {ratio['total_tokens']}x | {ratio['cost_gpt-4o-mini']}x | "
            f"{ratio['cost_gpt-4o-mini_with_documented_estimate']}x | "
            + (
                f"{v3['measured']['few_shot_cot_over_this_cost']}x | "
                f"{v3['documented estimate']['few_shot_cot_over_this_cost']}x |"
                if v3
                else "– | – |"
            )
        )
    out += [
        "",
        "The zero-shot paper (Vöge et al. 2024) reports roughly 7-10x fewer tokens than few-shot CoT; "
        "the prompt-token column is the comparable figure. Few-shot cost scales with the number of exemplars: "
        "multiply the per-exemplar tokens above to re-price another count. zero-shot-cot is the dearest mode here: "
        "its reasoning is paid twice (as output, then as stage-2 input) and output tokens cost 4x input.",
        "",
        "Caveat: completions for zero-shot, zero-shot-cot and label-only come from a 0.5B local model that "
        "often skips the requested explanation (e-SNLI zero-shot: ~5 tokens) or reasons until max_tokens (320); "
        "the last column prices them with edgedistill.teacher.cost.TYPICAL_COMPLETION_TOKENS instead "
        f"({TYPICAL_COMPLETION_TOKENS}).",
        "",
    ]
    return "\n".join(out)


def routes_markdown(res: dict) -> list[str]:
    models = ROUTE_MODELS
    prices = ", ".join(f"{m} {PRICES[m][0]}/{PRICES[m][1]}, cached input {PRICES[m][2]}" for m in models)
    out = [
        "## Routes: live, Batch API, Flex",
        "",
        f"What `annotate --dry-run` plans (edgedistill.teacher.cost.plan_routes) for 10k and 100k inputs. List prices "
        f"USD per 1M tokens in/out: {prices}. Batch and Flex bill {BATCH_PRICE_FACTOR:g} of the list price, cached "
        f"input included. Prompt caching: a prefix that every request shares is cached once it reaches "
        f"{CACHE_MIN_TOKENS:,} tokens (in steps of 128; OpenAI), priced so on every route (whether a batch's requests "
        "hit the cache is the provider's best effort); the shared prefixes are counted on "
        f"{PREFIX_SAMPLE} real prompts of each dataset. Completions: a hosted teacher's estimate for zero-shot "
        f"({TYPICAL_COMPLETION_TOKENS['zero-shot']} tokens), one token per scoring request, PaLM's measured ones for "
        "few-shot-cot. Times are the planner's ASSUMPTION, not a measurement: live at --concurrency "
        f"{ROUTE_CONCURRENCY}, {FIRST_TOKEN_S:g} s to the first token and {DECODE_TOKENS_PER_S:g} tokens/s, no rate "
        f"limit hit; flex {FLEX_SLOWDOWN:g}x live (it queues, with no time guarantee, and answers 429 when its "
        f"capacity is short); a batch at most its {BATCH_WINDOW_H:g} h window (most finish sooner). So batch and flex "
        "cost half of live in every row, and differ in time: a batch within 24 h at its own rate limits, flex sooner "
        "but with no guarantee.",
        "",
    ]
    for dataset, r in res["datasets"].items():
        out += [
            f"### {dataset}",
            "",
            "| configuration | inputs | requests | prompt tok/input (cached) | completion tok/input | "
            + " | ".join(f"{m} {route} (USD)" for m in models for route in ("live", "batch", "flex"))
            + " | live time | flex time |",
            "|---|---:|---:|---:|---:|" + "---:|" * (3 * len(models)) + "---:|---:|",
        ]
        for row in r["routes"]:
            out.append(
                f"| {row['name']} | {row['inputs']:,} | {row['inputs'] * row['requests']:,} | "
                f"{row['prompt_tokens']:.0f} ({row['cached_tokens']}) | {row['completion_tokens']:.0f} | "
                + " | ".join(
                    f"{row['models'][m][route]['cost_usd']:,.2f}" for m in models for route in ("live", "batch", "flex")
                )
                + f" | {_hours(row['hours']['live'])} | {_hours(row['hours']['flex'])} |"
            )
        out += ["", *route_findings(r["routes"]), ""]
    return out


def route_findings(rows: list[dict]) -> list[str]:
    """The zero-shot vs few-shot comparison with and without the prompt cache, at 100k inputs and each list price."""
    big = [r for r in rows if r["inputs"] == ROUTE_SIZES[-1]]
    zero = next(r for r in big if r["name"] == "zero-shot")
    out = []
    for r in big:
        if not r["name"].startswith("few-shot"):
            continue
        parts = []
        for m in ROUTE_MODELS:
            live, z = r["models"][m]["live"], zero["models"][m]["live"]["cost_usd"]
            parts.append(
                f"{m} {live['uncached_usd'] / z:.2f}x"
                + (f", {live['cost_usd'] / z:.2f}x with the cache" if r["cached_tokens"] else "")
            )
        cached = (
            f"{r['cached_tokens']:,} of its prompt tokens per input are cached"
            if r["cached_tokens"]
            else f"its shared prefix ({r['shared_prefix_tokens']:,} tokens) is below {CACHE_MIN_TOKENS:,}: never cached"
        )
        out.append(f"- {r['name']} / zero-shot, live, 100k inputs: {'; '.join(parts)} ({cached}).")
    few = [r for r in big if r["name"].startswith("few-shot")]
    if len(few) == 2 and few[1]["cached_tokens"] and not few[0]["cached_tokens"]:
        m = ROUTE_MODELS[0]
        short, long_ = few[0]["models"][m]["live"]["cost_usd"], few[1]["models"][m]["live"]["cost_usd"]
        out.append(
            f"- The cached {few[1]['name'].split(', ')[1]} prompt costs {long_ / short:.2f}x the uncached DSS-sized "
            f"one ({m}, live): past the threshold the shared exemplars are billed at the cached rate, below it in full."
        )
    return out


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dss-dir", default=str(DSS_DIR))
    ap.add_argument("--sample", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "annotation_cost"))
    args = ap.parse_args()
    from importlib import metadata

    measured = transcript_completions()
    res = {
        "benchmark": "annotation_cost",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_record(command=["python", "benchmarks/annotation_cost.py"] + sys.argv[1:]),
        "versions": {p: metadata.version(p) for p in ("edgedistill", "bpe-openai", "openai")}
        if _installed()
        else {
            "edgedistill": "checkout",
            "bpe-openai": metadata.version("bpe-openai"),
            "openai": metadata.version("openai"),
        },
        "tokenizer": "o200k_base",
        "prices_usd_per_1m": {m: PRICES[m][:2] for m in MODELS},
        "sample": args.sample,
        "seed": args.seed,
        "datasets": {},
    }
    for dataset in ("cqa", "svamp", "esnli"):
        res["datasets"][dataset] = measure(dataset, args.dss_dir, args.sample, args.seed, measured)
        r = res["datasets"][dataset]
        print(
            f"{dataset:6} "
            + "  ".join(f"{m} {v['prompt_tokens']:.0f}+{v['completion_tokens']:.0f}" for m, v in r["modes"].items())
            + f"  few/zero prompt {r['ratio_few_shot_cot_over_zero_shot']['prompt_tokens']}x"
        )
    write_json(args.out + ".json", res)
    write_text(args.out + ".md", markdown(res))
    print(f"wrote {args.out}.json and .md")


def _installed() -> bool:
    from importlib import metadata

    try:
        metadata.version("edgedistill")
        return True
    except metadata.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
