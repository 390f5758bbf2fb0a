"""Spend guard for paid teachers: an explicit sample size or budget, and an estimate before any call.

A live (`openai`) or Batch API teacher never labels the whole corpus by default: `run_annotate` needs
`sample`, `fraction` or a budget (`budget_tokens`, `budget_usd` at the ledger's price table). A budget
without a sample sizes the sample from a pilot of the corpus (estimated tokens per paragraph), and the
ledger then refuses any request whose worst case (prompt estimate + `max_tokens`) could break it.
"""

from __future__ import annotations

from collections.abc import Sequence

from annotators.ledger import price_for
from annotators.prompts import build_messages, estimate_tokens

PAID_TEACHERS = ("openai", "batch")
# Paragraphs read to estimate tokens per paragraph when a budget alone sizes the sample.
PILOT_SAMPLE = 1000


class SpendGuardError(ValueError):
    """A paid teacher asked to run without a sample size or budget (a usage error: exit code 2)."""


def require_limit(
    teacher: str,
    sample: int | None,
    fraction: float | None,
    budget_tokens: int | None,
    budget_usd: float | None,
) -> None:
    """Refuse a paid teacher with neither a sample size nor a budget."""
    if teacher in PAID_TEACHERS and sample is None and fraction is None and not (budget_tokens or budget_usd):
        raise SpendGuardError(
            f"--teacher {teacher} is a paid API and would label every paragraph: give --sample N, "
            "--fraction F, --budget-tokens N or --budget-usd X (add --dry-run to see the estimated cost)"
        )


def row_tokens(row: dict, prompt_version: str, max_tokens: int) -> tuple[int, int]:
    """A paragraph's estimated prompt tokens and its worst-case answer tokens."""
    return estimate_tokens(build_messages(row, prompt_version)), max_tokens


def estimate(
    rows: Sequence[dict],
    *,
    model: str,
    prices: dict[str, dict[str, float]],
    price_factor: float,
    prompt_version: str,
    max_tokens: int,
) -> dict:
    """What labelling `rows` would cost at most: prompt tokens (estimated), answer tokens (capped), USD."""
    tokens = [row_tokens(r, prompt_version, max_tokens) for r in rows]
    n_in, n_out = sum(t[0] for t in tokens), sum(t[1] for t in tokens)
    price = price_for(prices, model)
    cost = (n_in * price["input"] + n_out * price["output"]) / 1e6 * price_factor
    return {
        "model": model,
        "paragraphs": len(rows),
        "input_tokens_estimated": n_in,
        "output_tokens_max": n_out,
        "cost_usd_max": round(cost, 6),
        "price_per_1m_tokens": price,
        "price_factor": price_factor,
    }


def affordable_sample(pilot: dict, budget_tokens: int | None, budget_usd: float | None) -> int:
    """How many paragraphs like the pilot's fit the budget(s), from its per-paragraph estimate."""
    n = max(pilot["paragraphs"], 1)
    per_tokens = (pilot["input_tokens_estimated"] + pilot["output_tokens_max"]) / n
    limits = []
    if budget_tokens:
        limits.append(int(budget_tokens // max(per_tokens, 1e-9)))
    if budget_usd:
        per_usd = pilot["cost_usd_max"] / n
        limits.append(int(budget_usd // per_usd) if per_usd > 0 else None)
    known = [x for x in limits if x is not None]
    return min(known) if known else pilot.get("pool", n)


def format_estimate(plan: dict, pool: int) -> str:
    """The dry-run line: sample size, tokens, cost."""
    price = plan["price_per_1m_tokens"]
    return (
        f"dry run: would label {plan['paragraphs']:,} of {pool:,} paragraphs with {plan['model']}: "
        f"~{plan['input_tokens_estimated']:,} input + <= {plan['output_tokens_max']:,} output tokens, "
        f"<= ${plan['cost_usd_max']:.4f} (USD per 1M tokens in {price['input']} / out {price['output']}"
        f" x {plan['price_factor']}); no request sent"
    )
