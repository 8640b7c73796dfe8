"""``core.ports.Metrics`` exported with prometheus-client (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OLLAMA_OUTCOMES = frozenset({"LLMError", "LLMUnavailable", "ModelNotFound", "LLMBusy", "LLMFailed"})
REDIS_OUTCOMES = frozenset({"StoreUnavailable", "StoreFull"})

FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
REPLY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
TOKENS_PER_SECOND_BUCKETS = (1, 5, 10, 20, 30, 50, 75, 100, 150, 200, 400)


class PrometheusMetrics:
    """Counts messages by platform and outcome, times replies, and counts backend errors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._messages = Counter(
            "ollabot_messages",
            "Messages handled, by platform and outcome (ok or the error's name).",
            ["platform", "outcome"],
            registry=registry,
        )
        self._in_progress = Gauge(
            "ollabot_replies_in_progress",
            "Conversations with a reply being generated now.",
            ["platform"],
            registry=registry,
        )
        self._first_token = Histogram(
            "ollabot_first_token_seconds",
            "Time from taking a message to the first token of the reply.",
            ["platform"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self._reply = Histogram(
            "ollabot_reply_seconds",
            "Time from taking a message to the end of its handling.",
            ["platform"],
            buckets=REPLY_BUCKETS,
            registry=registry,
        )
        self._tokens_per_second = Histogram(
            "ollabot_tokens_per_second",
            "Generation speed reported by Ollama (eval_count / eval_duration).",
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=registry,
        )
        self._ollama_errors = Counter(
            "ollabot_ollama_errors", "Ollama errors by kind.", ["kind"], registry=registry
        )
        self._redis_errors = Counter(
            "ollabot_redis_errors", "Redis errors by kind.", ["kind"], registry=registry
        )
        self._delivery_retries = Counter(
            "ollabot_delivery_retries",
            "Final replies the platform refused for now (429, network) and that wait to retry.",
            ["platform"],
            registry=registry,
        )
        self._delivery_abandoned = Counter(
            "ollabot_delivery_abandoned",
            "Final replies given up on at their delivery deadline.",
            ["platform"],
            registry=registry,
        )
        self._outbox_pending = Gauge(
            "ollabot_outbox_pending",
            "Replies stored and not yet confirmed by the platform, in this process.",
            ["platform"],
            registry=registry,
        )
        self._queue_depth = Gauge(
            "ollabot_queue_depth",
            "Messages taken from the inbox and waiting for a model slot, in this process.",
            ["platform"],
            registry=registry,
        )
        self._dead_letters = Counter(
            "ollabot_dead_letters",
            "Updates, events and inbox entries set aside because they could not be read, "
            "stored or answered.",
            ["platform"],
            registry=registry,
        )

    def reply_started(self, platform: str) -> None:
        """A message was taken from the inbox and its reply begins."""
        self._in_progress.labels(platform).inc()

    def reply_finished(
        self, platform: str, outcome: str, first_token_s: float | None, total_s: float
    ) -> None:
        """The message was handled; ``outcome`` is ``ok`` or the error class name."""
        self._in_progress.labels(platform).dec()
        self._messages.labels(platform, outcome).inc()
        self._reply.labels(platform).observe(total_s)
        if first_token_s is not None:
            self._first_token.labels(platform).observe(first_token_s)
        if outcome in OLLAMA_OUTCOMES:
            self.ollama_error(outcome)
        elif outcome in REDIS_OUTCOMES:
            self.redis_error(outcome)

    def tokens_per_second(self, value: float) -> None:
        """One reply's generation speed as Ollama measured it."""
        self._tokens_per_second.observe(value)

    def delivery_retried(self, platform: str) -> None:
        self._delivery_retries.labels(platform).inc()

    def delivery_abandoned(self, platform: str) -> None:
        self._delivery_abandoned.labels(platform).inc()

    def outbox_pending(self, platform: str, count: int) -> None:
        self._outbox_pending.labels(platform).set(count)

    def queue_depth(self, platform: str, count: int) -> None:
        self._queue_depth.labels(platform).set(count)

    def dead_lettered(self, platform: str) -> None:
        """Something received on ``platform`` was set aside as a dead letter."""
        self._dead_letters.labels(platform).inc()

    def ollama_error(self, kind: str) -> None:
        """Count an Ollama failure (``LLMUnavailable``, ``LLMBusy``…)."""
        self._ollama_errors.labels(kind).inc()

    def redis_error(self, kind: str) -> None:
        """Count a Redis failure (``StoreUnavailable``…)."""
        self._redis_errors.labels(kind).inc()
