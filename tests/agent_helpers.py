"""Stand-ins for the human and readers of what the model was told, shared by the agent tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.testing import ScriptedModel

from devagent.approvals import ApprovalRequest
from devagent.runner import Decision, TaskOptions, ThreadRunner
from devagent.store import Store


class ScriptedApprover:
    """Answers approval requests in order, then always with `then` (None: nobody is there, so the
    run pauses). Keeps every request it was shown, as the approval screen would show it."""

    def __init__(self, *answers: Decision | None, then: Decision | None = None) -> None:
        self.answers = list(answers)
        self.then = then
        self.shown: list[ApprovalRequest] = []

    def decide(self, request: ApprovalRequest) -> Decision | None:
        self.shown.append(request)
        return self.answers.pop(0) if self.answers else self.then


def tool_outputs(model: ScriptedModel) -> dict[str, str]:
    """Every tool result the model was sent, by call id."""
    out: dict[str, str] = {}
    for call in model.calls:
        for item in call.input if isinstance(call.input, list) else []:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                output = item["output"]
                if isinstance(output, list):
                    output = "".join(part.get("text", "") for part in output)
                out[item["call_id"]] = str(output)
    return out


async def run_new_thread(home: Path, repo: Path, steps: list, approver: Any, task: str = "do it",
                         options: TaskOptions | None = None) -> tuple[ThreadRunner, ScriptedModel, Any, Any]:
    """Create a thread on `repo` and run one turn with a scripted model: (runner, model, thread, outcome)."""
    model = ScriptedModel(steps)
    runner = ThreadRunner(Store(home), model=model, approver=approver)
    thread = runner.create_thread(repo, options or TaskOptions())
    outcome = await runner.run_task(thread.id, task)
    return runner, model, thread, outcome
