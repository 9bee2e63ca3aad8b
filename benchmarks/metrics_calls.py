"""What one metrics call costs on the request path (issue 15): the SDK's synchronous Counter.add
against the gateway's summed counter (observability/sums.py), and a Histogram.record with a new
attributes dict, the same dict reused, and the exemplar filter off, against the gateway's plain
histogram (observability/histograms.py, one reader). Best of several rounds, µs a call.

    .venv/bin/python benchmarks/metrics_calls.py [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from provider_gateway.observability.histograms import PlainHistograms
from provider_gateway.observability.sums import Sums

LABELS = ("rpc", "provider", "model", "status")
VALUES = ("ChatStream", "openai", "gpt-4o-mini", "OK")


def variants() -> dict[str, Callable[[], None]]:
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    quiet_reader = InMemoryMetricReader()
    quiet = MeterProvider(metric_readers=[quiet_reader], exemplar_filter=AlwaysOffExemplarFilter()).get_meter(
        "bench"
    )
    plain = PlainHistograms(Resource.create({}), InstrumentationScope("bench"))
    plain_histogram = plain.create("p", "s", "a plain histogram", (0.001, 0.01, 0.1, 1))
    plain.attach([quiet_reader])
    counter = meter.create_counter("c", "1", "a counter")
    summed = Sums(meter, "s", "1", "a summed counter", LABELS)
    histogram = meter.create_histogram("h", "s", "a histogram")
    quiet_histogram = quiet.create_histogram("h", "s", "a histogram")
    shared = dict(zip(LABELS, VALUES, strict=True))
    rpc, provider, model, status = VALUES
    return {
        "Counter.add, new dict": lambda: counter.add(
            1, {"rpc": rpc, "provider": provider, "model": model, "status": status}
        ),
        "Sums.add": lambda: summed.add(1, rpc, provider, model, status),
        "Histogram.record, new dict": lambda: histogram.record(
            0.01, {"rpc": rpc, "provider": provider, "model": model, "status": status}
        ),
        "Histogram.record, reused dict": lambda: histogram.record(0.01, shared),
        "Histogram.record, reused dict, exemplars off": lambda: quiet_histogram.record(0.01, shared),
        "PlainHistogram.record, new dict": lambda: plain_histogram.record(
            0.01, {"rpc": rpc, "provider": provider, "model": model, "status": status}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, call in variants().items():
        best = float("inf")
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(args.calls):
                call()
            best = min(best, (time.perf_counter() - started) / args.calls)
        print(f"{name:48} {best * 1e6:6.2f} µs a call")


if __name__ == "__main__":
    main()
