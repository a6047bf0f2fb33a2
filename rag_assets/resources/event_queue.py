"""The SQS queue that S3 event notifications arrive on."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg

from rag_assets.resources.object_store import aws_client


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str


class EventQueue(dg.ConfigurableResource):
    """An SQS queue read with boto3 (AWS_ENDPOINT_URL honoured: a moto server in tests)."""

    queue_url: str | None = None
    visibility_timeout: int = 300  # long enough for the next tick to acknowledge

    @property
    def _sqs(self):
        return aws_client("sqs")

    def receive(self, max_messages: int, budget_seconds: float = float("inf")) -> list[Message]:
        """Up to `max_messages` messages, within about `budget_seconds`, hidden from other
        readers for `visibility_timeout`."""
        out: list[Message] = []
        deadline = time.monotonic() + budget_seconds
        while len(out) < max_messages and time.monotonic() < deadline:
            response = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(out)),
                VisibilityTimeout=self.visibility_timeout,
                WaitTimeSeconds=0,
            )
            batch = response.get("Messages", [])
            if not batch:
                break
            out.extend(Message(m["MessageId"], m["ReceiptHandle"], m["Body"]) for m in batch)
        return out

    def delete(self, receipt_handles: list[str]) -> int:
        """Acknowledge messages. A handle that expired is skipped: its message comes back, and
        its duplicate work is absorbed by run keys."""
        return self._in_batches(
            receipt_handles, self._sqs.delete_message_batch, lambda i, h: {"Id": i, "ReceiptHandle": h}
        )

    def release(self, receipt_handles: list[str]) -> int:
        """Make messages visible again at once (those of a tick whose result was lost), rather
        than after the visibility timeout."""
        return self._in_batches(
            receipt_handles,
            self._sqs.change_message_visibility_batch,
            lambda i, h: {"Id": i, "ReceiptHandle": h, "VisibilityTimeout": 0},
        )

    def _in_batches(self, handles: list[str], call, entry) -> int:
        def one(batch: list[str]) -> int:
            entries = [entry(str(i), h) for i, h in enumerate(batch)]
            return len(call(QueueUrl=self.queue_url, Entries=entries).get("Successful", []))

        batches = [handles[i : i + 10] for i in range(0, len(handles), 10)]
        with ThreadPoolExecutor(max_workers=8) as pool:  # 10 handles a call, 8 calls at a time
            return sum(pool.map(one, batches))
