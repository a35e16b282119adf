"""Prometheus text-format metrics, written by hand: three small types are all a server needs.

No client library: the exposition format (``# HELP``, ``# TYPE``, one ``name{labels} value`` line per
sample, cumulative ``_bucket{le=...}`` lines plus ``_sum`` / ``_count`` for histograms) is a few lines
of code, and it keeps ``[serve]`` free of another dependency. Every update takes a lock, since the
engine thread and the HTTP thread both record.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

__all__ = ["LATENCY_BUCKETS", "TOKEN_TIME_BUCKETS", "Counter", "EngineMetrics", "Gauge", "Histogram", "Registry"]

#: Seconds, for time to first token and end-to-end latency.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds per output token after the first.
TOKEN_TIME_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()):
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> Labels:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple((name, str(labels[name])) for name in self.labelnames)

    def lines(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}", *self.samples()]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A value that only goes up (requests, tokens)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()):
        super().__init__(name, help, labelnames)
        self._values: dict[Labels, float] = {} if labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(key)} {_number(v)}" for key, v in items]


class Gauge(_Metric):
    """A value read when scraped (queue length, running requests): ``read`` is called at render time."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]):
        super().__init__(name, help)
        self.read = read

    def samples(self) -> list[str]:
        return [f"{self.name} {_number(self.read())}"]


class Histogram(_Metric):
    """Observations counted into fixed buckets (latencies)."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float]):
        super().__init__(name, help)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # the last slot is +Inf
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        slot = bisect_left(self.buckets, value)
        with self._lock:
            self._counts[slot] += 1
            self._sum += value
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def samples(self) -> list[str]:
        with self._lock:
            counts, total, count = list(self._counts), self._sum, self._count
        out, running = [], 0
        for bound, n in zip((*self.buckets, math.inf), counts):
            running += n
            out.append(f"{self.name}_bucket{_labels([('le', _number(bound))])} {running}")
        out += [f"{self.name}_sum {_number(total)}", f"{self.name}_count {count}"]
        return out


M = TypeVar("M", bound=_Metric)


class Registry:
    """Metrics rendered together, in the order they were added."""

    def __init__(self, metrics: Iterable[_Metric] = ()):
        self.metrics: list[_Metric] = list(metrics)

    def add(self, metric: M) -> M:
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        return "".join(line + "\n" for metric in self.metrics for line in metric.lines())


class EngineMetrics(Registry):
    """What the engine records: requests by outcome, tokens, queue and batch sizes, TTFT, TPOT, latency."""

    def __init__(self, running: Callable[[], float], queued: Callable[[], float], prefix: str = "agentkit_engine"):
        super().__init__()
        self.requests = self.add(Counter(f"{prefix}_requests_total", "Requests finished, by finish reason.",
                                         ["finish_reason"]))
        self.prompt_tokens = self.add(Counter(f"{prefix}_prompt_tokens_total", "Prompt tokens, cached ones included."))
        self.cached_prompt_tokens = self.add(Counter(f"{prefix}_prompt_tokens_cached_total",
                                                     "Prompt tokens taken from the prefix cache, not prefilled."))
        self.generated_tokens = self.add(Counter(f"{prefix}_generation_tokens_total", "Tokens generated."))
        self.steps = self.add(Counter(f"{prefix}_steps_total", "Engine steps (one decode token per running request)."))
        self.running = self.add(Gauge(f"{prefix}_requests_running", "Requests in the running batch.", running))
        self.queued = self.add(Gauge(f"{prefix}_requests_queued", "Requests waiting to join the batch.", queued))
        self.ttft = self.add(Histogram(f"{prefix}_time_to_first_token_seconds",
                                       "Time from submission to the first generated token.", LATENCY_BUCKETS))
        self.tpot = self.add(Histogram(f"{prefix}_time_per_output_token_seconds",
                                       "Mean time between generated tokens of a request, after the first.",
                                       TOKEN_TIME_BUCKETS))
        self.latency = self.add(Histogram(f"{prefix}_request_latency_seconds",
                                          "Time from submission to the last token.", LATENCY_BUCKETS))
