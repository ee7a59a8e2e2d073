"""How an edit meets its post when that post has not been delivered yet: it changes the post instead of waiting.

The outbox (outbox.py) inherits this. An edit of an undelivered alert (acknowledged, flapping) changes the post's
payload, so the message appears once, already as it should be; its final edit (resolved, `meta["alert"] is
False`) drops the post and the rows queued before it that refer to it, leaving only the resolved line. An edit
that came while its post was out, and that post was refused, is folded in before the post's next try.

May import bot.delivery.rows and bot.delivery.guard.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.delivery.guard import StoreGuard
from bot.delivery.rows import EDIT, POST, QueuedRow, pending_nonce

log = logging.getLogger("bot.delivery.outbox")


class EditFolding:
    _queues: dict[str, list[QueuedRow]]
    guard: StoreGuard

    async def _finish(self, item: QueuedRow, result: dict[str, Any]) -> None:
        raise NotImplementedError  # the outbox's: marks the row done in memory and in the store

    async def _fold(self, env: str, payload: dict[str, Any], meta: dict[str, Any]) -> bool:
        """An edit of a post still queued changes that post instead; its final edit drops it. True when folded."""
        nonce = pending_nonce(meta.get("target"))
        queue = self._queues.get(env, [])
        post = next((i for i in queue if i.row.nonce == nonce and i.row.kind == POST), None)
        if nonce is None or post is None or post.in_flight:
            return False
        await self._apply_edit(env, post, payload, meta, queued_before=len(queue))
        return True

    async def _apply_edit(
        self, env: str, post: QueuedRow, payload: dict[str, Any], meta: dict[str, Any], *, queued_before: int
    ) -> None:
        """Change the undelivered post to what the edit says.

        A final edit drops the post and the rows queued before the edit that refer to it (reminders, edits);
        rows queued after it (the resolved line) still go out.
        """
        nonce = post.row.nonce
        queue = self._queues.get(env, [])
        if meta.get("alert") is False:
            superseded = [post] + [
                i
                for i in queue[:queued_before]
                if nonce in (pending_nonce(i.row.meta.get("target")), pending_nonce(i.row.meta.get("reply_to")))
            ]
            for item in superseded:
                if item in queue:
                    queue.remove(item)
                await self._finish(item, {"superseded": "resolved before it could be delivered"})
            log.info("%s: an undelivered alert was resolved meanwhile; only its resolved line goes out", env)
            return
        post.row.payload = payload
        post.row.meta = {**post.row.meta, **{k: v for k, v in meta.items() if k != "target"}}
        if post.row.id:
            await self.guard(lambda s: s.outbox_update(post.row.id, post.row.payload, post.row.meta))

    async def _absorb_queued_edits(self, post: QueuedRow) -> None:
        """Edits that arrived while the post was out (and it did not land) change it before its next try.

        Otherwise the message would appear first as it was, then be edited: the channel would show a
        CRITICAL with an active Acknowledge button for a moment after it had been acknowledged.
        """
        env, nonce = post.row.env, post.row.nonce
        queue = self._queues.get(env, [])
        for edit in [i for i in queue if i.row.kind == EDIT and pending_nonce(i.row.meta.get("target")) == nonce]:
            if post.finished:
                return
            position = queue.index(edit)
            queue.remove(edit)
            await self._finish(edit, {"superseded": "folded into its post before that was delivered"})
            await self._apply_edit(env, post, edit.row.payload, edit.row.meta, queued_before=position)
