"""``agentkit eval teval`` end to end with a scripted model, and the runner with the real embedded model."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentkit.cli import app, main
from agentkit.evals.teval.data import KINDS, load_samples
from agentkit.evals.teval.runner import TEvalConfig, generate_replies, reply_text, run_teval
from agentkit.messages import Message, ToolCall

FIXTURES = Path(__file__).parent / "fixtures" / "teval"


def test_cli_runs_every_dimension_with_a_scripted_model(tmp_path):
    # The scripted model answers by assistant-turn count: plan, review and instruct prompts have no assistant
    # turn (output 1), the reason/retrieve/understand conversations have one (output 2).
    step = {"thought": "I have the weather, now I should email it to Ann.", "name": "Email.send",
            "args": {"to": "ann@example.com", "body": "Paris: 18 degrees, cloudy"}}
    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps({"text": "Answer: A"}) + "\n" + json.dumps({"text": json.dumps(step)}) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "teval", "--data", str(FIXTURES), "--model", f"scripted:{script}",
                                      "--limit", "2", "--embedder", "minilm", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "embedder **all-MiniLM-L6-v2**" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["embedder"] == "all-MiniLM-L6-v2" and report["overall_over"] == 6
    assert set(report["files"]) == set(KINDS)
    assert all(f["samples"] == 2 for f in report["files"].values())
    dims = report["dimensions"]
    assert dims["review"] == 50.0  # references A, B
    assert dims["plan"] == 0.0 and dims["instruct"] == 0.0  # "Answer: A" is neither a plan nor a tool call
    # json: right name for the first step only; str: the reply also mentions example.com, another a.b name
    assert dims["retrieve"] == 25.0
    assert dims["reason"] > 50.0  # the first step's thought is exact, the second only related
    assert report["overall"] == pytest.approx(sum(dims.values()) / 6)
    assert {p.name for p in out.iterdir()} == {"predictions", "report.md", "report.json", "report.png"}
    rows = [json.loads(line) for line in (out / "predictions" / "review_str.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in rows] == ["Answer: A", "Answer: A"]
    assert [r["scores"]["review_quality"] for r in rows] == [1.0, 0.0]
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")


def test_cli_dims_select_the_files(tmp_path):
    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps({"text": "Answer: B"}) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "teval", "--data", str(FIXTURES), "--model", f"scripted:{script}",
                                      "--dims", "plan,review", "--embedder", "minilm", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["files"]) == {"plan_json", "plan_str", "review_str"}
    assert report["dimensions"] == {"plan": 0.0, "review": 25.0} and report["overall_over"] == 2
    assert "mean of 2 of 6 dimensions" in (out / "report.md").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "/nonexistent/teval"], "error: T-Eval data directory '/nonexistent/teval' does not exist"),
    (["--data", str(FIXTURES), "--dims", "plan,planning"], "error: unknown dimension(s) ['planning']"),
    (["--data", str(FIXTURES), "--model", "scripted:x.jsonl", "--dtype", "bfloat16"],
     "error: --dtype applies to local models"),
    (["--data", str(FIXTURES), "--embedder", "bert"], "error: unknown embedder 'bert'"),
])
def test_cli_errors_are_one_line_with_status_2(args, message, capsys):
    assert main(["eval", "teval", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_user_errors_inside_the_model_stop_the_run(tmp_path, capsys):
    script = tmp_path / "one.jsonl"
    script.write_text(json.dumps({"text": "x"}) + "\n")  # the reason prompts already hold one assistant turn
    assert main(["eval", "teval", "--data", str(FIXTURES), "--dims", "reason", "--model", f"scripted:{script}",
                 "--embedder", "minilm", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: the script has 1 outputs")


def test_reply_text_prefers_raw_completion_text():
    raw = Message.assistant("parsed", meta={"raw": "Answer: C<|im_end|>"})
    assert reply_text(raw) == "Answer: C<|im_end|>"
    call = Message.assistant("", tool_calls=[ToolCall(name="Email.send", arguments={"to": "a"})])
    assert json.loads(reply_text(call)) == [{"name": "Email.send", "args": {"to": "a"}}]


def test_chat_models_run_concurrently_and_failures_are_recorded():
    from agentkit.llm import BaseChatModel

    class Flaky(BaseChatModel):
        model_name = "flaky"

        def generate(self, messages, *, tools=None, config=None):
            if "Oslo" in messages[-1].text:
                raise TimeoutError("upstream timed out")
            return Message.assistant(f"seen {len(messages)}")

    samples = load_samples(FIXTURES / "instruct_v1.json", "instruct")
    replies, errors = generate_replies(Flaky(), samples, concurrency=3)
    assert replies == ["seen 2", "seen 2", "", ""]
    assert len(errors) == 2 and all("TimeoutError: upstream timed out" in e for e in errors)


def test_the_embedded_model_answers_through_the_batched_runner(tmp_path):
    config = TEvalConfig(data=str(FIXTURES), model="embedded", dims=["review"], limit=2, max_new_tokens=4,
                         batch_size=2, out=str(tmp_path), embedder="minilm")
    report = run_teval(config)
    assert report.model.startswith("embedded:") and report.files["review_str"].samples == 2
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "review_str.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(isinstance(r["prediction"], str) and r["prediction"] for r in rows)
    assert not report.failed_calls
