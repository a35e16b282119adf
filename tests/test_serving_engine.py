"""The continuous-batching engine on a tiny random-init Llama with the SmolLM2 tokenizer.

Exact-text comparisons run in fp32: bf16 greedy output depends on the batch's shape.
"""

from __future__ import annotations

import asyncio
import os
import copy
import threading
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from agentkit.errors import ConfigError
from agentkit.llm import Completion, CompletionModel, GenerationConfig
from agentkit.messages import Message
from agentkit.models.hf import HFModel
from agentkit.models.serving.engine import (
    Engine,
    EngineClosed,
    EngineConfig,
    EngineModel,
    QueueFull,
    SamplingParams,
    resolve_dtype,
)
from agentkit.protocols.base import Protocol

ACTION_END = "<|action_end|>"
PROMPTS = [
    "Hello there, how are you today?",
    "a",
    "The quick brown fox jumps over the lazy dog, then keeps running towards the river bank.",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "one two three four five six seven",
    "Zebra crossing",
]


class ChatML(Protocol):
    """Plain ChatML, no tools."""

    name = "chatml"
    stop_words = ["<|im_end|>"]  # noqa: RUF012 - the Protocol base declares it a plain class attribute

    def render(self, messages, tools=None, interpreter=False):
        return "".join(f"<|im_start|>{m.role}\n{m.text}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"

    def parse(self, text):
        return Message.assistant(text)


def load_tokenizer():
    """The SmolLM2 tokenizer (from the converted cache when present, else from the GGUF) plus InternLM2 action tokens."""
    from agentkit.models import embedded

    try:
        gguf = embedded.embedded_gguf_path()
    except ConfigError as exc:
        pytest.skip(str(exc))
    cached = embedded.embedded_cache_dir()
    if (cached / "tokenizer.json").is_file():
        tokenizer = transformers.AutoTokenizer.from_pretrained(cached)
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|action_start|>", ACTION_END, "<|plugin|>"]})
    return tokenizer


def tiny_llama(tokenizer, seed: int = 0):
    """Two layers, hidden 64, tied embeddings, peaked logits (greedy choices far from ties)."""
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, initializer_range=0.5,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config).eval()


def swap_tokens(model, a: int, b: int):
    """A copy whose tokens ``a`` and ``b`` trade places (tied embeddings: in and out), so it writes ``b`` where
    the original writes ``a`` and continues exactly as the original would have."""
    swapped = copy.deepcopy(model)
    with torch.no_grad():
        weight = swapped.get_input_embeddings().weight
        weight[[a, b]] = weight[[b, a]]
    return swapped


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls gain nothing from a second thread, and lose badly when another process holds the other core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama(tokenizer)


def make_engine(model, tokenizer, **overrides) -> Engine:
    """An engine on a copy of ``model``: the engine owns its model and packs it for CPU inference in place."""
    settings = {"dtype": "float32", "max_batch_size": 4, "max_queue": 16, "max_new_tokens": 24, **overrides}
    return Engine(copy.deepcopy(model), tokenizer, EngineConfig(**settings))


@pytest.fixture
def engine(model, tokenizer) -> Engine:
    return make_engine(model, tokenizer)


def one_at_a_time(model, tokenizer, prompt: str, n: int, **config) -> Completion:
    """transformers ``generate`` on the prompt alone: the reference output."""
    reference = HFModel(copy.deepcopy(model), tokenizer, protocol=ChatML())
    return reference.complete([prompt], GenerationConfig(max_new_tokens=n, **config))[0]


def drive(engine: Engine, arrivals: dict[int, list[tuple[str, SamplingParams]]]):
    """Step the engine on this thread, submitting requests at the given step numbers; returns the handles."""
    handles, step, widest = [], 0, 0
    while arrivals or engine.has_work:
        for prompt, params in arrivals.pop(step, []):
            handles.append(engine.submit(prompt, params))
        engine.step()
        widest = max(widest, engine.num_running)
        step += 1
    return handles, widest


def test_staggered_joins_equal_one_at_a_time_greedy(engine, model, tokenizer):
    lengths = [20, 7, 33, 12, 25, 16]
    arrivals = {0: [0, 1], 3: [2], 5: [3, 4], 6: [5]}  # 6 requests, at most 4 rows: some wait in the queue
    schedule = {step: [(PROMPTS[i], SamplingParams(max_tokens=lengths[i])) for i in ids]
                for step, ids in arrivals.items()}
    handles, widest = drive(engine, schedule)
    assert widest == 4
    order = [i for ids in arrivals.values() for i in ids]
    for i, handle in zip(order, handles):
        got, want = handle.result(), one_at_a_time(model, tokenizer, PROMPTS[i], lengths[i])
        assert got.text == want.text, f"prompt {i}"
        assert got.completion_tokens == want.completion_tokens
        assert got.meta["finish_reason"] == want.meta["finish_reason"] == "length"
        assert got.prompt_tokens == len(engine.encode(PROMPTS[i]))
        assert "".join(handle.poll()) == got.text
    assert engine.num_running == 0 and engine._cache is None


def test_rows_leaving_mid_batch_keep_the_others_exact(engine, model, tokenizer):
    """Short requests finish and leave while long ones run on; the long ones' text must not change."""
    params = [SamplingParams(max_tokens=n) for n in (3, 30, 5, 30)]
    handles, _ = drive(engine, {0: list(zip(PROMPTS[2:6], params))})
    for prompt, p, handle in zip(PROMPTS[2:6], params, handles):
        assert handle.result().text == one_at_a_time(model, tokenizer, prompt, p.max_tokens).text


def test_prompts_of_different_lengths_prefill_in_groups_and_stay_exact(model, tokenizer):
    """One step admits five prompts; they prefill in length-sorted groups (at most 2 rows, spread 1.25) and join
    a batch that was already running, each group's cache left-padded to one width."""
    engine = make_engine(model, tokenizer, max_batch_size=8, prefill_group_rows=2)
    joiners = [(PROMPTS[i], SamplingParams(max_tokens=12)) for i in range(5)]
    sizes: list[int] = []
    prefill = engine._prefill
    engine._prefill = lambda group: (sizes.append(len(group)), prefill(group))[1]
    handles, widest = drive(engine, {0: [(PROMPTS[5], SamplingParams(max_tokens=20))], 2: joiners})
    lengths = sorted(len(engine.encode(p)) for p, _ in joiners)
    assert len(sizes) > 3 and max(sizes[1:]) <= 2 and widest == 6  # 1 prefill for the first, several groups after
    assert sizes[1:] == [len(g) for g in engine._prefill_groups([_fake_request(n) for n in lengths])]
    for (prompt, params), handle in zip([(PROMPTS[5], SamplingParams(max_tokens=20)), *joiners], handles):
        assert handle.result().text == one_at_a_time(model, tokenizer, prompt, params.max_tokens).text


def _fake_request(prompt_tokens: int):
    from types import SimpleNamespace

    return SimpleNamespace(prompt_ids=[0] * prompt_tokens)


def test_stop_string_cuts_the_text(engine, model, tokenizer):
    full = one_at_a_time(model, tokenizer, PROMPTS[0], 24).text
    stop = full[8:12]
    want = full[:full.index(stop)]
    handles, _ = drive(engine, {0: [(PROMPTS[0], SamplingParams(max_tokens=24, stop=[stop])),
                                    (PROMPTS[1], SamplingParams(max_tokens=24))]})
    got = handles[0].result()
    assert got.text == want and got.meta["finish_reason"] == "stop"
    assert "".join(handles[0].poll()) == want
    assert handles[1].result().meta["finish_reason"] == "length"


def test_special_token_stop_and_eos(model, tokenizer):
    """``<|action_end|>`` is matched in the decoded text; the end-of-sequence token ends a request unseen."""
    prompt_ids = tokenizer(PROMPTS[0])["input_ids"]
    ids = model.generate(torch.tensor([prompt_ids]), max_new_tokens=24, do_sample=False)[0, len(prompt_ids):].tolist()
    # a token the model writes (not first, not in the prompt) becomes <|action_end|> wherever it appears
    target = next(t for i, t in enumerate(ids) if i >= 3 and t not in prompt_ids and t not in ids[:i])
    action_end = tokenizer.convert_tokens_to_ids(ACTION_END)
    swapped = swap_tokens(model, target, action_end)
    unstopped = one_at_a_time(swapped, tokenizer, PROMPTS[0], 24).text
    assert ACTION_END in unstopped

    engine = make_engine(swapped, tokenizer)
    handles, _ = drive(engine, {0: [(PROMPTS[0], SamplingParams(max_tokens=24, stop=[ACTION_END])),
                                    (PROMPTS[0], SamplingParams(max_tokens=24))]})
    stopped, free = handles[0].result(), handles[1].result()
    assert stopped.text == unstopped[:unstopped.index(ACTION_END)]
    assert stopped.meta["finish_reason"] == "stop"
    assert free.text == unstopped
    assert not any(ACTION_END[:5] in d for d in handles[0].poll())

    eos = tokenizer.eos_token_id
    ends = make_engine(swap_tokens(model, target, eos), tokenizer)
    handles, _ = drive(ends, {0: [(PROMPTS[0], SamplingParams(max_tokens=24))]})
    done = handles[0].result()
    assert done.meta["finish_reason"] == "stop"
    assert tokenizer.eos_token not in done.text
    assert done.completion_tokens == ids.index(target) + 1  # the end token counts as generated


def test_max_tokens_and_context_limit(engine, tokenizer):
    handles, _ = drive(engine, {0: [(PROMPTS[0], SamplingParams(max_tokens=5)), (PROMPTS[1], SamplingParams())]})
    assert handles[0].result().completion_tokens == 5
    assert handles[1].result().completion_tokens == 24  # the engine's max_new_tokens
    assert {h.result().meta["finish_reason"] for h in handles} == {"length"}
    near_limit = [tokenizer.bos_token_id] + [42] * 250  # 251 of 256 positions
    handle = engine.submit(near_limit, SamplingParams(max_tokens=100))
    assert engine.wait(handle).completion_tokens == 5
    with pytest.raises(ValueError, match="reads at most 256"):
        engine.submit([42] * 256)
    with pytest.raises(ValueError, match="empty"):
        engine.submit([])


def test_seeded_sampling_is_reproducible_in_any_batch(engine):
    def sample(seed, company: int, top_p: float = 1.0) -> str:
        params = SamplingParams(max_tokens=16, temperature=1.5, top_p=top_p, seed=seed)
        others = [(p, SamplingParams(max_tokens=10)) for p in PROMPTS[1:1 + company]]
        handles, _ = drive(engine, {0: others[:1] + [(PROMPTS[0], params)], 2: others[1:]})
        return handles[min(company, 1)].result().text

    alone = sample(7, 0)
    assert sample(7, 3) == alone
    assert sample(8, 0) != alone
    nucleus = sample(7, 0, top_p=0.5)
    assert sample(7, 2, top_p=0.5) == nucleus
    greedy = drive(engine, {0: [(PROMPTS[0], SamplingParams(max_tokens=16))]})[0][0].result().text
    tiny_p = drive(engine, {0: [(PROMPTS[0], SamplingParams(max_tokens=16, temperature=1.0, top_p=1e-6, seed=1))]})
    assert tiny_p[0][0].result().text == greedy  # top_p that keeps one token is greedy


def test_queue_full(model, tokenizer):
    engine = make_engine(model, tokenizer, max_queue=2, max_batch_size=1)
    engine.submit("a")
    engine.submit("b")
    with pytest.raises(QueueFull, match="max_queue=2"):
        engine.submit("c")
    engine.step()  # one joins the batch, freeing a queue slot
    engine.submit("c")
    with pytest.raises(QueueFull):
        engine.submit("d")
    results = engine.generate(["d", "e"])  # waits out the full queue by stepping
    assert [r.completion_tokens for r in results] == [24, 24]


def test_streamed_deltas_concatenate_to_the_text(model, tokenizer):
    engine = make_engine(model, tokenizer)
    stop = one_at_a_time(model, tokenizer, PROMPTS[3], 24).text[10:13]
    handles = [engine.submit(p, SamplingParams(max_tokens=20, stop=[stop])) for p in PROMPTS[2:5]]
    seen: dict[int, list[str]] = {}

    def read(i, handle):
        seen[i] = list(handle)  # blocks until the request ends

    readers = [threading.Thread(target=read, args=(i, h)) for i, h in enumerate(handles)]
    for t in readers:
        t.start()
    while engine.has_work:
        engine.step()
    for t in readers:
        t.join(5)
    for i, handle in enumerate(handles):
        assert "".join(seen[i]) == handle.result().text
        assert len(seen[i]) > 1 or handle.result().completion_tokens <= 2


def test_run_forever_serves_submitters_on_other_threads(model, tokenizer):
    engine = make_engine(model, tokenizer)
    loop = threading.Thread(target=engine.run_forever, kwargs={"idle_wait_s": 0.05})
    loop.start()
    try:
        results: dict[int, Completion] = {}

        def client(i):
            results[i] = engine.submit(PROMPTS[i], SamplingParams(max_tokens=12)).result(timeout=30)

        clients = [threading.Thread(target=client, args=(i,)) for i in range(len(PROMPTS))]
        for t in clients:
            t.start()
        for t in clients:
            t.join(30)
        assert engine.driven_elsewhere
        assert EngineModel(engine, ChatML()).complete(["a"], GenerationConfig(max_new_tokens=3))[0].completion_tokens == 3
        for i, prompt in enumerate(PROMPTS):
            assert results[i].text == one_at_a_time(model, tokenizer, prompt, 12).text
    finally:
        engine.shutdown()
        loop.join(10)
    assert not loop.is_alive()
    with pytest.raises(EngineClosed):
        engine.submit("a")


@pytest.mark.parametrize("window", [0.0, 0.2])
def test_an_idle_engine_gathers_a_burst_before_its_first_prefill(model, tokenizer, window):
    engine = make_engine(model, tokenizer, join_window_s=window)
    admitted: list[int] = []
    admit = engine._admit

    def recording_admit():
        joiners = admit()
        if joiners:
            admitted.append(len(joiners))
        return joiners

    engine._admit = recording_admit
    loop = threading.Thread(target=engine.run_forever, kwargs={"idle_wait_s": 0.05})
    loop.start()
    try:
        handles = []
        for prompt in PROMPTS[:4]:  # a burst: four requests 20 ms apart (100 ms without a window)
            handles.append(engine.submit(prompt, SamplingParams(max_tokens=3)))
            time.sleep(0.02 if window else 0.1)
        for handle in handles:
            handle.result(timeout=30)
    finally:
        engine.shutdown()
        loop.join(10)
    assert sum(admitted) == 4
    if window:
        assert admitted == [4]  # each arrived within the window of the last: one prefill for all
    else:
        assert admitted[0] == 1  # without a window the first request is prefilled alone


def test_shutdown_fails_pending_requests(engine):
    handle = engine.submit("a")
    engine.shutdown()
    with pytest.raises(EngineClosed):
        handle.result(timeout=1)


def test_cancel_frees_the_row(engine):
    keep = engine.submit(PROMPTS[0], SamplingParams(max_tokens=20))
    drop = engine.submit(PROMPTS[1], SamplingParams(max_tokens=20))
    engine.step()
    engine.step()
    drop.cancel()
    engine.step()
    assert engine.num_running == 1
    assert drop.result().meta["finish_reason"] == "cancelled"
    assert engine.wait(keep).completion_tokens == 20


def test_a_failing_step_fails_its_requests_and_the_engine_goes_on(model, tokenizer):
    engine = make_engine(model, tokenizer)
    loop = threading.Thread(target=engine.run_forever, kwargs={"idle_wait_s": 0.05})
    loop.start()
    embeddings = engine.model.get_input_embeddings()  # every forward starts here, transformers' or the fused step
    forward = embeddings.forward
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated kernel failure")
        return forward(*args, **kwargs)

    embeddings.forward = flaky
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            engine.submit(PROMPTS[0], SamplingParams(max_tokens=4)).result(timeout=30)
        assert engine.submit(PROMPTS[0], SamplingParams(max_tokens=4)).result(timeout=30).completion_tokens == 4
        assert engine.metrics.requests.value(finish_reason="error") == 1
    finally:
        del embeddings.forward
        engine.shutdown()
        loop.join(10)


def test_engine_model_is_a_completion_model(engine, model, tokenizer):
    chat = EngineModel(engine, ChatML())
    assert isinstance(chat, CompletionModel)
    messages = [Message.user("Say hi")]
    config = GenerationConfig(max_new_tokens=10)
    reply = chat.generate(messages, config=config)
    want = one_at_a_time(model, tokenizer, ChatML().render(messages), 10, stop=["<|im_end|>"])
    assert reply.text == want.text and reply.usage.completion_tokens == want.completion_tokens
    assert reply.meta["finish_reason"] == want.meta["finish_reason"]
    assert [m.text for m in chat.batch([messages, messages], config=config)] == [want.text, want.text]
    chunks = list(chat.stream(messages, config=config))
    assert "".join(c.delta for c in chunks) == want.text and chunks[-1].message.text == want.text

    async def run_async():
        whole = await chat.agenerate(messages, config=config)
        pieces = [c async for c in chat.astream(messages, config=config)]
        return whole, pieces

    whole, pieces = asyncio.run(run_async())
    assert whole.text == want.text
    assert "".join(c.delta for c in pieces) == want.text and pieces[-1].message.text == want.text


def test_configs_are_validated():
    with pytest.raises(ConfigError, match="max_batch_size"):
        EngineConfig(max_batch_size=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("auto") in (torch.bfloat16, torch.float32)
    with pytest.raises(ConfigError, match="unknown dtype"):
        resolve_dtype("int3")
    with pytest.raises(ConfigError, match="embedded"):
        Engine.from_spec("scripted:x.jsonl")


def test_from_spec_loads_a_checkpoint_directory(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    engine = Engine.from_spec(f"hf:{tmp_path}", EngineConfig(dtype="float32", max_new_tokens=6, threads=1))
    assert engine.model.dtype is torch.float32
    assert engine.model_name == f"hf:{tmp_path}"
    result = engine.generate([PROMPTS[0]])[0]
    assert result.text == one_at_a_time(model, tokenizer, PROMPTS[0], 6).text


@pytest.mark.slow
def test_embedded_model_batches_in_bf16():
    engine = Engine.from_spec("embedded", EngineConfig(dtype="bfloat16", max_new_tokens=16))
    prompts = [f"<|im_start|>user\nName a colour, number {i}.<|im_end|>\n<|im_start|>assistant\n" for i in range(8)]
    results = engine.generate(prompts)
    assert all(r.completion_tokens >= 1 and r.text.strip() for r in results)


def test_local_specs_with_options_are_served_by_the_engine():
    from agentkit.models import is_local_spec
    from agentkit.models.serving.server import _default_name

    assert is_local_spec("embedded") and is_local_spec("embedded,adapter=runs/r1/adapter")
    assert is_local_spec("embedded-base") and not is_local_spec("embedded-tuned")
    assert is_local_spec("hf:./ckpt") and is_local_spec("hf:./ckpt,adapter=a")
    assert not is_local_spec("hf:") and not is_local_spec("scripted:x.jsonl") and not is_local_spec("openai:u#m")
    assert _default_name("embedded,adapter=runs/r1/adapter") == "embedded"
    assert _default_name("hf:/models/internlm2-chat-7b,adapter=a") == "internlm2-chat-7b"
    with pytest.raises(ConfigError, match="serves 'embedded', 'embedded-base' or 'hf:PATH'"):
        Engine.from_spec("scripted:replies.jsonl")


def test_slack_layer_writes_in_place_and_equals_concatenation():
    import torch

    from agentkit.models.serving.engine import SlackLayer

    layer = SlackLayer(slack=4)
    prefill = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    layer.update(*prefill)
    expected_k, expected_v = prefill
    pointers = set()
    for _ in range(10):
        step = torch.randn(2, 3, 1, 8), torch.randn(2, 3, 1, 8)
        keys, values = layer.update(*step)
        expected_k, expected_v = torch.cat([expected_k, step[0]], -2), torch.cat([expected_v, step[1]], -2)
        assert torch.equal(keys, expected_k) and torch.equal(values, expected_v)
        pointers.add(keys.data_ptr())
    assert len(pointers) < 4  # grown a few times, not copied at every step
    layer.keys, layer.values = expected_k[:1].clone(), expected_v[:1].clone()  # the engine dropped a row
    step = torch.randn(1, 3, 1, 8), torch.randn(1, 3, 1, 8)
    keys, _ = layer.update(*step)
    assert torch.equal(keys, torch.cat([expected_k[:1], step[0]], -2))


def test_slack_layer_joins_and_leaves_in_one_copy_and_keeps_room():
    import torch

    from agentkit.models.serving.engine import SlackLayer

    def filled(rows: int, length: int) -> SlackLayer:
        layer = SlackLayer(slack=4)
        layer.update(torch.randn(rows, 2, length, 8), torch.randn(rows, 2, length, 8))
        layer.update(torch.randn(rows, 2, 1, 8), torch.randn(rows, 2, 1, 8))  # now in a room
        return layer

    running, joining = filled(3, 6), filled(2, 3)
    want_k = torch.cat([running.keys, torch.nn.functional.pad(joining.keys, (0, 0, 3, 0))])
    want_v = torch.cat([running.values, torch.nn.functional.pad(joining.values, (0, 0, 3, 0))])
    merged = SlackLayer.merged([running, joining], width=7)
    assert torch.equal(merged.keys, want_k) and torch.equal(merged.values, want_v)  # padding is zeros
    step = torch.randn(5, 2, 1, 8), torch.randn(5, 2, 1, 8)
    before = merged.keys.data_ptr()
    keys, values = merged.update(*step)
    assert keys.data_ptr() == before  # the merge left room: this step wrote in place
    want_k, want_v = torch.cat([want_k, step[0]], -2), torch.cat([want_v, step[1]], -2)
    assert torch.equal(keys, want_k) and torch.equal(values, want_v)

    index = torch.tensor([3, 4])  # the first three rows finish; the joiners' first 3 positions are padding
    merged.keep_rows(index, first=3)
    want_k, want_v = want_k[3:, :, 3:], want_v[3:, :, 3:]
    assert torch.equal(merged.keys, want_k) and torch.equal(merged.values, want_v)
    before = merged.keys.data_ptr()
    step = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8)
    keys, values = merged.update(*step)
    assert keys.data_ptr() == before
    assert torch.equal(keys, torch.cat([want_k, step[0]], -2)) and torch.equal(values, torch.cat([want_v, step[1]], -2))


def test_leaving_rows_are_filled_from_the_end_in_place():
    import torch

    from agentkit.models.serving.engine import SlackLayer, fill_holes_order

    assert fill_holes_order([0, 1, 2, 3]) == [0, 1, 2, 3]
    assert fill_holes_order([0, 2, 3, 5, 6]) == [0, 6, 2, 3, 5]  # rows 1 and 4 left: 6 and 5 move down
    assert fill_holes_order([4, 5]) == [5, 4]

    layer = SlackLayer(slack=4)
    layer.update(torch.randn(6, 2, 5, 8), torch.randn(6, 2, 5, 8))
    layer.update(torch.randn(6, 2, 1, 8), torch.randn(6, 2, 1, 8))  # now in a room
    keys, values = layer.keys.clone(), layer.values.clone()
    room = layer.keys.data_ptr()
    order = fill_holes_order([0, 2, 3, 5])
    layer.keep_rows(torch.tensor(order), first=2)
    assert layer.keys.data_ptr() == room + 2 * 8 * layer.keys.element_size()  # same storage, two columns on
    assert torch.equal(layer.keys, keys[order][:, :, 2:]) and torch.equal(layer.values, values[order][:, :, 2:])
    step = torch.randn(4, 2, 1, 8), torch.randn(4, 2, 1, 8)
    got, _ = layer.update(*step)
    assert torch.equal(got, torch.cat([keys[order][:, :, 2:], step[0]], -2))

    shuffled = [2, 0]  # any other order is gathered into a new room
    keys = layer.keys.clone()
    layer.keep_rows(torch.tensor(shuffled))
    assert torch.equal(layer.keys, keys[shuffled])


def test_auto_dtype_is_bf16_only_where_it_is_faster():
    import torch

    from agentkit.models.serving.engine import resolve_dtype

    from agentkit.models.hf import _cpu_bf16_measured_faster

    faster = torch.cpu._is_amx_tile_supported() or _cpu_bf16_measured_faster()
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if faster else torch.float32)
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype("float32") == torch.float32
    with pytest.raises(ConfigError, match="unknown dtype"):
        resolve_dtype("int4")


SYSTEM = ("<|im_start|>system\nYou answer questions about the weather, the trains and the shops of a small town. "
          "Be brief.<|im_end|>\n<|im_start|>user\n")


def test_a_shared_system_prompt_is_prefilled_once_and_the_text_stays_exact(model, tokenizer):
    """Four chats with one system prompt: each prefill group stores (or finds) its whole-block common prefix, the
    later lone joiner extends it, and every text equals the prompt run alone."""
    engine = make_engine(model, tokenizer, prefill_group_rows=2)
    questions = ["Will it rain?", "When is the last train?", "Is the bakery open on Sunday?", "Hi"]
    prompts = [f"{SYSTEM}{q}<|im_end|>\n<|im_start|>assistant\n" for q in questions]
    handles, _ = drive(engine, {0: [(p, SamplingParams(max_tokens=10)) for p in prompts[:3]],
                                3: [(prompts[3], SamplingParams(max_tokens=10))]})
    shared = len(os.path.commonprefix([engine.encode(p) for p in prompts]))
    block = engine.config.prefix_block
    for prompt, handle in zip(prompts, handles):
        got = handle.result()
        assert got.text == one_at_a_time(model, tokenizer, prompt, 10).text
        assert got.meta["cached_prompt_tokens"] % block == 0
        assert shared // block * block <= got.meta["cached_prompt_tokens"] < len(engine.encode(prompt))
    cached = sum(h.result().meta["cached_prompt_tokens"] for h in handles)
    assert engine.metrics.cached_prompt_tokens.value() == cached
    assert engine.prefix_cache is not None and 0 < engine.prefix_cache.cached_tokens <= 4096


def test_a_later_turn_reuses_the_conversation_so_far(model, tokenizer):
    """An agent's next turn extends its last prompt: most of it comes from the cache, and the text stays exact."""
    engine = make_engine(model, tokenizer)
    first = f"{SYSTEM}What is the weather like?<|im_end|>\n<|im_start|>assistant\n"
    reply = engine.generate([first], SamplingParams(max_tokens=12))[0]
    assert reply.meta["cached_prompt_tokens"] > 0  # a lone prompt stores its own prefix for the next turn
    second = f"{first}{reply.text}<|im_end|>\n<|im_start|>user\nAnd tomorrow?<|im_end|>\n<|im_start|>assistant\n"
    again = engine.generate([second], SamplingParams(max_tokens=12))[0]
    assert again.text == one_at_a_time(model, tokenizer, second, 12).text
    first_tokens = len(engine.encode(first))
    assert again.meta["cached_prompt_tokens"] >= first_tokens - engine.config.prefix_block


def test_prefix_cache_off_and_prompts_with_nothing_to_share(model, tokenizer):
    off = make_engine(model, tokenizer, prefix_cache_tokens=0)
    assert off.prefix_cache is None
    out = off.generate(PROMPTS[:3], SamplingParams(max_tokens=4))
    assert [c.meta["cached_prompt_tokens"] for c in out] == [0, 0, 0]
    on = make_engine(model, tokenizer, prefill_group_rows=8)
    got = on.generate([PROMPTS[1], PROMPTS[5]], SamplingParams(max_tokens=4))  # "a" is one token: nothing to share
    assert [c.text for c in got] == [c.text for c in off.generate([PROMPTS[1], PROMPTS[5]],
                                                                  SamplingParams(max_tokens=4))]
    assert [c.meta["cached_prompt_tokens"] for c in got] == [0, 0]


def test_prefix_cache_evicts_least_recently_used_and_never_serves_another_prompt():
    from agentkit.models.serving.prefix_cache import CachedPrefix, PrefixCache

    def entry(ids):
        return CachedPrefix(tuple(ids), [(torch.zeros(1, 1, len(ids), 2), torch.zeros(1, 1, len(ids), 2))])

    cache = PrefixCache(max_tokens=8, block=2)
    a, b, c = [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]
    for ids in (a, b):
        assert cache.put(cache.block_keys(ids, len(ids))[-1], entry(ids))
    assert cache.longest(a + [99], cache.block_keys(a + [99], 5)).ids == tuple(a)  # a is now the most recent
    cache.put(cache.block_keys(c, 2)[-1], entry(c))
    assert len(cache) == 2 and cache.cached_tokens == 6  # b went first
    assert cache.longest(b, cache.block_keys(b, 4)) is None
    # a hash that matches is still checked token by token
    forged = cache.block_keys(a, 4)
    assert cache.longest([1, 2, 3, 5], forged) is None
    assert not cache.put(0, entry(list(range(9))))  # larger than the whole cache
    with pytest.raises(ConfigError, match="prefix_cache_tokens"):
        EngineConfig(prefix_cache_tokens=-1)
