"""A real ipykernel driven over ZeroMQ, for tests of the magics in a kernel."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager


class Kernel:
    """A running kernel started in ``workdir``; messages are timed as they arrive."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.manager = KernelManager(kernel_name=name)
        self.manager.start_kernel(cwd=str(workdir))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def send(self, code: str) -> str:
        msg_id: str = self.client.execute(code)
        return msg_id

    def replied(self) -> bool:
        """Whether a reply waits on the shell channel (the request has finished)."""
        return bool(self.client.shell_channel.msg_ready())

    def messages(self, msg_id: str, timeout: float = 120) -> list[tuple[float, Any]]:
        """Every iopub message until the request's idle status, each with the
        monotonic time it arrived (other requests' messages included)."""
        seen = []
        while True:
            message = self.client.get_iopub_msg(timeout=timeout)
            seen.append((time.monotonic(), message))
            if (
                message["parent_header"].get("msg_id") == msg_id
                and message["msg_type"] == "status"
                and message["content"]["execution_state"] == "idle"
            ):
                return seen

    def reply(self, msg_id: str, timeout: float = 120) -> tuple[float, Any]:
        """The request's shell reply and the monotonic time it arrived."""
        while True:
            message = self.client.get_shell_msg(timeout=timeout)
            if message["parent_header"].get("msg_id") == msg_id:
                return time.monotonic(), message

    def finish(self, msg_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The reply's content and the request's own iopub messages."""
        own = [
            m
            for _, m in self.messages(msg_id)
            if m["parent_header"].get("msg_id") == msg_id
        ]
        _, reply = self.reply(msg_id)
        return reply["content"], own

    def run(self, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return self.finish(self.send(code))

    def run_ok(self, code: str) -> list[Any]:
        """The iopub messages of ``code``, which must succeed."""
        msg_id = self.send(code)
        seen = [m for _, m in self.messages(msg_id)]
        _, reply = self.reply(msg_id)
        assert reply["content"]["status"] == "ok", seen
        return seen

    def click(self, comm_id: str) -> None:
        """Send a widget button's click, as a front end does."""
        content = {
            "comm_id": comm_id,
            "data": {"method": "custom", "content": {"event": "click"}},
        }
        self.client.shell_channel.send(self.client.session.msg("comm_msg", content))

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
