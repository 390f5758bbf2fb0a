"""The cost ledger: what a teacher run spent (calls, retries, tokens, latency, money).

Prices come from a table {model: {"input": USD per 1M tokens, "output": USD per 1M tokens}}; the
packaged `prices.json` holds a few public list prices and the key "*" is the fallback for unknown
models (0: self-hosted servers cost GPU time, not tokens). Pass your own table with `--price-table`.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_PRICES = Path(__file__).with_name("data") / "prices.json"


def load_price_table(path: str | None = None) -> dict[str, dict[str, float]]:
    """A price table from JSON or YAML (`path`), or the packaged default."""
    source = Path(path) if path else DEFAULT_PRICES
    text = source.read_text(encoding="utf-8")
    if source.suffix in (".yaml", ".yml"):
        import yaml

        table = yaml.safe_load(text)
    else:
        table = json.loads(text)
    for model, prices in table.items():
        if not isinstance(prices, dict) or not {"input", "output"} <= set(prices):
            raise ValueError(f"price table {source}: {model!r} needs 'input' and 'output' USD per 1M tokens")
    return table


def price_for(table: dict[str, dict[str, float]], model: str) -> dict[str, float]:
    """Exact model match, else the longest key that prefixes the model name, else '*', else free."""
    if model in table:
        return table[model]
    prefixes = [k for k in table if k != "*" and model.startswith(k)]
    if prefixes:
        return table[max(prefixes, key=len)]
    return table.get("*", {"input": 0.0, "output": 0.0})


@dataclass
class Ledger:
    """Thread-safe counters of one teacher run; `summary()` is what is shown and written to stats."""

    model: str = ""
    price_factor: float = 1.0  # e.g. 0.5 for Batch API prices
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    calls: int = 0
    retries: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    budget_tokens: int | None = None  # input + output tokens this run may spend (None: no limit)
    budget_usd: float | None = None  # money this run may spend, at `prices` x `price_factor`
    _reserved: list[int] = field(default_factory=lambda: [0, 0], repr=False)  # in/out tokens in flight
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reserve(self, input_tokens: int, output_tokens: int) -> bool:
        """Book a request's worst-case tokens before sending it; False if it could break the budget."""
        with self._lock:
            spent_in = self.input_tokens + self._reserved[0] + input_tokens
            spent_out = self.output_tokens + self._reserved[1] + output_tokens
            if self.budget_tokens is not None and spent_in + spent_out > self.budget_tokens:
                return False
            if self.budget_usd is not None and self._cost_of(spent_in, spent_out) > self.budget_usd:
                return False
            self._reserved[0] += input_tokens
            self._reserved[1] += output_tokens
            return True

    def release(self, input_tokens: int, output_tokens: int) -> None:
        """Drop a reservation once its request has been recorded (or abandoned)."""
        with self._lock:
            self._reserved[0] -= input_tokens
            self._reserved[1] -= output_tokens

    def record_call(
        self, latency_s: float, input_tokens: int = 0, output_tokens: int = 0, error: str | None = None
    ):
        with self._lock:
            self.calls += 1
            self.latencies.append(latency_s)
            self.input_tokens += input_tokens or 0
            self.output_tokens += output_tokens or 0
            if error:
                self.errors[error] += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def record_cache_hits(self, n: int) -> None:
        with self._lock:
            self.cache_hits += n

    def _cost(self, price: dict[str, float]) -> float:
        return self._cost_of(self.input_tokens, self.output_tokens, price)

    def _cost_of(self, input_tokens: int, output_tokens: int, price: dict[str, float] | None = None) -> float:
        price = price or price_for(self.prices, self.model)
        return (input_tokens * price["input"] + output_tokens * price["output"]) / 1e6 * self.price_factor

    def cost_usd(self) -> float:
        return self._cost(price_for(self.prices, self.model))

    def summary(self) -> dict:
        with self._lock:
            lat = np.asarray(self.latencies) if self.latencies else np.zeros(1)
            price = price_for(self.prices, self.model)
            return {
                "model": self.model,
                "calls": self.calls,
                "retries": self.retries,
                "cache_hits": self.cache_hits,
                "errors": dict(self.errors),
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "latency_s": {
                    "p50": float(np.percentile(lat, 50)),
                    "p90": float(np.percentile(lat, 90)),
                    "p99": float(np.percentile(lat, 99)),
                    "max": float(lat.max()),
                },
                "price_per_1m_tokens": price,
                "price_factor": self.price_factor,
                "cost_usd": round(self._cost(price), 6),
                "budget": {"tokens": self.budget_tokens, "usd": self.budget_usd},
            }

    def format(self) -> str:
        s = self.summary()
        lat = s["latency_s"]
        return (
            f"teacher {s['model']}: {s['calls']} calls ({s['retries']} retries, "
            f"{s['cache_hits']} cache hits), "
            f"{s['input_tokens']:,} in / {s['output_tokens']:,} out tokens, "
            f"latency p50 {lat['p50']:.3f}s p90 {lat['p90']:.3f}s p99 {lat['p99']:.3f}s, "
            f"cost ${s['cost_usd']:.4f}" + (f", errors {s['errors']}" if s["errors"] else "")
        )
