"""The queue on NATS JetStream: a durable stream on disk, one pull consumer, acks.

Selected by ``queue_url = "nats://host:4222[/STREAM][?ack_wait=S]"`` (``NIMBUS_QUEUE_URL``);
the stream is ``STREAM`` (default ``NIMBUS_ASYNC``), its one subject
``nimbus.queue.<STREAM>``, file storage, work-queue retention (an acked message is
deleted, so the stream holds exactly the events not yet done) and no limits (nothing
accepted is ever discarded). One durable pull consumer (``dispatcher``) with explicit
acks, unlimited deliveries and unlimited acks pending hands the events out.

How the contract maps onto JetStream:

* ``put`` publishes each event and returns once JetStream's PubAck says it is stored
  (the file store, written before the ack; ``Nats-Msg-Id`` is the event id, so a
  publish retried by the client is not stored twice). ``put_many`` sends its events
  back to back on one connection, so they are stored in order; JetStream 2.9 has no
  atomic batch, so a failure part-way may leave the first ones queued (they run,
  which at-least-once allows) while the caller gets the error.
* ``lease`` pulls what is due with a ``no_wait`` pull request. A pulled message stays
  pending in JetStream until it is acked; this process keeps it and heartbeats it
  (``+WPI`` every third of the consumer's ack wait) for as long as it holds it, so a
  900 s invocation is never redelivered under it, while a process that dies stops
  heartbeating and JetStream redelivers its messages after ``ack_wait``. The lease's
  own visibility timeout, its token, and a lapsed lease being leased again are kept
  here, by the process that pulled it (a server; its async workers reach it through
  the queue socket, as they do with SQLite).
* ``retry`` must record ``attempts`` durably, so it publishes the event again (same id,
  new attempts and not-before time) and then acks the old message. A crash between the
  two leaves both, i.e. one extra run: at-least-once. A message pulled before its
  not-before time is held (heartbeated) until then.
* Several servers (the front ends of one installation) share the stream and its one
  consumer: JetStream hands each message to one puller at a time, so an event accepted
  by any of them runs once, wherever there is room. ``recover`` (a server's start-up)
  therefore reclaims nothing itself: what a dead process held is exactly what stops
  being heartbeated, and JetStream redelivers it to whoever pulls after the ack wait
  (``ack_wait``, default 10 s), while what live servers hold stays theirs. A restarted
  server's own in-flight events come back the same way, one ack wait after its death;
  a server that stops cleanly naks what it holds, so those come back at once.
* ``wait_for_work`` wakes on a put (each put also sends a small core-NATS message on
  ``nimbus.queue-wake.<STREAM>``, so puts by other processes wake it too), on the end
  of a lease or a delay this process holds, or at its timeout.

JetStream's ``max_deliver`` stays unlimited on purpose: a message over the limit would
be dropped with only an advisory, and "nothing accepted is lost". How often an event is
retried is the dispatcher's business (``attempts``, then its dead-letter path).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from nimbus.clock import now_ms
from nimbus.queue.backend import Lease, QueueBackend, QueuedEvent, QueueError, QueueStats

log = logging.getLogger(__name__)

DEFAULT_STREAM = "NIMBUS_ASYNC"
CONSUMER = "dispatcher"
# How soon JetStream redelivers the messages of a process that died (or stalled for that
# long: a live holder heartbeats every third of it, so only a stall of the whole event
# loop that long lets another server run its event too: at-least-once).
ACK_WAIT_S = 10.0
PULL_TIMEOUT_S = 10.0
API_TIMEOUT_S = 10.0
DUPLICATE_WINDOW_S = 120.0


@dataclass(slots=True)
class _Held:
    """A message this process pulled and has not settled: waiting for its not-before
    time (``token`` None, ``due_ms`` ahead), ready to lease (``token`` None), leased
    until ``due_ms`` (``token`` set), or a lapsed lease (``token`` set, ``due_ms`` past;
    its token still settles it until it is leased again)."""

    msg: Msg
    id: str
    event: QueuedEvent
    due_ms: int
    order_ms: int  # leases go out by this, then stream sequence: when it became due
    token: str | None = None


class NatsQueue(QueueBackend):
    """The queue in a JetStream stream, e.g. ``NatsQueue.from_url("nats://127.0.0.1")``."""

    def __init__(self, servers: str, stream: str = DEFAULT_STREAM,
                 ack_wait_s: float = ACK_WAIT_S) -> None:  # fmt: skip
        if not stream or any(c in stream for c in ".*> \t/\\"):
            raise QueueError(
                f"invalid JetStream stream name {stream!r}: no '.', '*', '>', '/' or spaces"
            )
        self.servers = servers
        self.stream = stream
        self.subject = f"nimbus.queue.{stream}"
        self.wake_subject = f"nimbus.queue-wake.{stream}"
        if not 0.5 <= ack_wait_s <= 3600:
            raise QueueError(f"NATS queue ack_wait {ack_wait_s!r} s: expected 0.5 to 3600")
        self.ack_wait_s = ack_wait_s
        self._beat_s = ack_wait_s / 3  # a third of the consumer's ack wait (open() reads it)
        self._nc: Client | None = None
        self._js: Any = None
        self._closing = False
        self._held: dict[int, _Held] = {}  # by stream sequence
        self._retried: dict[int, tuple[int, int]] = {}  # seq -> (due, enqueued), not pulled
        self._puts: set[asyncio.Future[Any]] = set()
        self._tokens = itertools.count(1)
        self._epoch = uuid.uuid4().hex[:8]  # tokens of another process (object) never match
        self._pull_lock = asyncio.Lock()
        self._pulls = itertools.count(1)
        self._pull: tuple[int, int, asyncio.Future[bool]] | None = None  # id, left, dry?
        self._inbox = ""
        self._dry = False  # the last pull found nothing more; a put undoes it
        self._wake = asyncio.Event()
        self._wake_due = False
        self._wakes = 0  # counts _woken(), so a pull can tell one happened meanwhile
        self._heartbeat: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> NatsQueue:
        """``nats://[user:pass@]host[:port][/STREAM][?ack_wait=SECONDS]``; several
        servers: comma-separated (the stream and options on the first)."""
        first = urlsplit(url.split(",", 1)[0])
        if first.scheme not in ("nats", "tls"):
            raise QueueError(f"queue URL {url!r}: expected nats://host:port[/STREAM]")
        stream = first.path.strip("/") or DEFAULT_STREAM
        options = parse_qs(first.query)
        unknown = set(options) - {"ack_wait"}
        if unknown:
            raise QueueError(f"queue URL {url!r}: unknown option {sorted(unknown)[0]!r}")
        try:
            ack_wait = float(options.get("ack_wait", [ACK_WAIT_S])[-1])
        except ValueError:
            raise QueueError(f"queue URL {url!r}: ack_wait must be seconds") from None
        servers = ",".join(
            urlsplit(u)._replace(path="", query="").geturl() for u in url.split(",")
        )
        return cls(servers, stream, ack_wait)

    # -- opening and closing ----------------------------------------------------------

    async def open(self) -> None:
        if self._nc is not None:
            raise QueueError(f"NATS queue {self.stream} is already open")
        try:
            # A bounded first connect (a server that is not there is an error now), then
            # reconnects without end: a NATS restart must not stop the queue for good.
            self._nc = await nats.connect(
                self.servers.split(","), name="nimbus-queue", connect_timeout=3,
                max_reconnect_attempts=1, reconnect_time_wait=0.5, error_cb=self._on_error,
            )  # fmt: skip
        except Exception as exc:
            self._nc = None
            raise QueueError(f"cannot reach NATS at {self.servers}: {exc}") from exc
        self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream(timeout=API_TIMEOUT_S)
        try:
            await self._ensure_stream()
            await self._ensure_consumer()
            self._inbox = self._nc.new_inbox()
            await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
            await self._nc.subscribe(self.wake_subject, cb=self._on_wake)
        except Exception as exc:
            await self._nc.close()
            self._nc = None
            if isinstance(exc, QueueError):
                raise
            raise QueueError(f"NATS queue {self.stream}: {exc}") from exc
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def close(self) -> None:
        if self._nc is None or self._closing:
            return
        self._closing = True
        if self._puts:  # every put already called resolves before the connection goes
            await asyncio.wait(list(self._puts))
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        # What this process held goes back to the stream now (not one ack wait later), for
        # the other servers or the next start: a lease still running here is abandoned
        # with the process, and runs again elsewhere (at-least-once).
        now = now_ms()
        for held in self._held.values():
            with contextlib.suppress(NatsError, OSError):
                await held.msg.nak(delay=max(0, held.due_ms - now) / 1000
                                   if held.token is None else None)  # fmt: skip
        self._held.clear()
        with contextlib.suppress(NatsError, OSError):
            await self._nc.flush(timeout=int(API_TIMEOUT_S))
        await self._nc.close()

    async def _ensure_stream(self) -> None:
        config = StreamConfig(
            name=self.stream, subjects=[self.subject], retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, discard=DiscardPolicy.OLD, max_msgs=-1, max_bytes=-1,
            max_age=0, duplicate_window=DUPLICATE_WINDOW_S,
        )  # fmt: skip
        try:
            info = await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._js.add_stream(config)
            return
        found = info.config
        if found.retention != RetentionPolicy.WORK_QUEUE or self.subject not in (
            found.subjects or []
        ):
            raise QueueError(
                f"JetStream stream {self.stream} exists but is not a nimbus queue (it needs "
                f"work-queue retention and the subject {self.subject}); name another stream "
                "in the queue URL (nats://host:port/STREAM)"
            )

    async def _ensure_consumer(self) -> None:
        try:
            info = await self._js.consumer_info(self.stream, CONSUMER)
        except NotFoundError:
            info = await self._js.add_consumer(self.stream, self._consumer_config())
        found = info.config.ack_wait
        if found is not None and abs(found - self.ack_wait_s) > 1e-3:
            # The servers of one installation share the consumer: the last one started
            # sets its ack wait (an update JetStream allows on a durable consumer).
            with contextlib.suppress(NatsError):
                info = await self._js.add_consumer(self.stream, self._consumer_config())
            found = info.config.ack_wait or self.ack_wait_s
        # Heartbeats keep up with whichever ack wait is in force, ours or not.
        self._beat_s = min(self.ack_wait_s, found or self.ack_wait_s) / 3

    def _consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=CONSUMER, deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_s, max_deliver=-1,
            max_ack_pending=-1,
        )  # fmt: skip

    # -- the interface ----------------------------------------------------------------

    async def put_many(self, events: list[QueuedEvent]) -> list[str]:
        if not events:
            return []
        js = self._open()
        now = now_ms()
        bodies: list[tuple[str, bytes]] = []
        for event in events:
            if not isinstance(event.payload, bytes | bytearray | memoryview):
                raise TypeError(
                    f"QueuedEvent.payload must be bytes, not {type(event.payload).__name__}"
                )
            if not event.enqueued_ms:
                event = replace(event, enqueued_ms=now)
            event_id = uuid.uuid4().hex
            bodies.append((event_id, _encode(event_id, event)))
        done = asyncio.ensure_future(
            asyncio.gather(*(self._publish(js, body, event_id) for event_id, body in bodies))
        )
        self._puts.add(done)
        try:
            await asyncio.shield(done)
        finally:
            if done.done():
                self._puts.discard(done)
            else:
                done.add_done_callback(self._puts.discard)
        self._woken()
        if not self._wake_due:  # one wake message for all the puts of a loop turn
            self._wake_due = True
            asyncio.get_running_loop().call_soon(self._send_wake)
        return [event_id for event_id, _ in bodies]

    async def lease(self, max_items: int, visibility_s: float) -> list[Lease]:
        if max_items <= 0:
            return []
        self._open()
        async with self._pull_lock:
            if self._count_ready(now_ms()) < max_items:
                await self._pull_more(max_items - self._count_ready(now_ms()))
            now = now_ms()
            ready = self._ready(now)
            leases = []
            deadline = now + _ms(visibility_s)
            for seq, held in ready[:max_items]:
                held.token = f"{seq}.{self._epoch}.{next(self._tokens)}"
                held.due_ms = held.order_ms = deadline
                leases.append(Lease(held.id, held.event, held.token))
            if leases:
                self._notify()  # a shorter visibility may now be the next thing due
            return leases

    async def ack(self, lease: Lease) -> bool:
        seq = self._settle(lease)
        if seq is None:
            return False
        await self._ack(seq[1])
        return True

    async def ack_many(self, leases: list[Lease]) -> list[bool]:
        settled = [self._settle(lease) for lease in leases]
        await asyncio.gather(*(self._ack(s[1]) for s in settled if s is not None))
        return [s is not None for s in settled]

    async def retry(self, lease: Lease, delay_s: float, attempts: int) -> bool:
        js = self._open()
        found = self._holder(lease)
        if found is None:
            return False
        seq, held = found
        del self._held[seq]
        due = now_ms() + _ms(delay_s)
        event = replace(held.event, attempts=attempts, not_before_ms=due)
        try:
            # Recorded first, then the old delivery settled: a crash in between runs the
            # event once more, never zero times.
            ack = await self._publish(js, _encode(held.id, event), f"{held.id}.{seq}")
        except BaseException:
            self._held[seq] = held  # still leased: the caller may try again
            raise
        if ack.seq not in self._held:  # not pulled meanwhile
            self._retried[ack.seq] = (due, event.enqueued_ms)
        await self._ack(held.msg)
        self._woken()
        return True

    async def extend(self, lease: Lease, visibility_s: float) -> bool:
        self._open()
        found = self._holder(lease)
        if found is None:
            return False
        held = found[1]
        held.due_ms = held.order_ms = now_ms() + _ms(visibility_s)
        with contextlib.suppress(NatsError, OSError):
            await held.msg.in_progress()
        return True

    async def wait_for_work(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if not self._dry and not await self._nothing_new():
                return  # the stream may have more than was pulled: let the caller lease
            due = self._next_due()
            now = now_ms()
            if due is not None and due <= now:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if due is not None:
                remaining = min(remaining, (due - now + 1) / 1000)
            wake = self._wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    async def stats(self) -> QueueStats:
        js = self._open()
        try:
            stream = await js.stream_info(self.stream)
            consumer = await js.consumer_info(self.stream, CONSUMER)
        except Exception as exc:
            raise QueueError(f"NATS queue {self.stream}: {exc}") from exc
        now = now_ms()
        held = list(self._held.values())
        pulled_delayed = sum(1 for h in held if h.token is None and h.due_ms > now)
        # Pending in JetStream, but visible by the contract: pulled and not leased, or
        # a lease that ran out.
        here_visible = sum(1 for h in held if h.due_ms <= now)
        delayed = pulled_delayed + len(self._retried)
        depth = stream.state.messages
        in_flight = max(0, consumer.num_ack_pending - pulled_delayed - here_visible)
        visible = max(0, depth - in_flight - delayed)
        oldest = [h.event.enqueued_ms for h in held] + [e for _, e in self._retried.values()]
        if depth:
            with contextlib.suppress(Exception):
                first = await js.get_msg(self.stream, seq=stream.state.first_seq)
                oldest.append(_decode(first.data or b"")[1].enqueued_ms)
        age = max(0, now - min(oldest)) if oldest and depth else 0
        return QueueStats(depth, visible, in_flight, delayed, age)

    async def recover(self) -> int:
        """Nothing to reclaim by hand (0): JetStream redelivers what a dead process held
        once its ack wait passes, and only that. Re-creating the consumer here, as a
        single server could, would redeliver the events other live servers are running."""
        self._open()
        async with self._pull_lock:
            self._held.clear()
            self._retried.clear()
            self._woken()
            return 0

    # -- pulling ----------------------------------------------------------------------

    async def _pull_more(self, want: int) -> None:
        """One no-wait pull of up to ``want`` messages into ``_held``."""
        assert self._nc is not None
        pull_id = next(self._pulls)
        finished: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pull = (pull_id, want, finished)
        request = json.dumps({"batch": want, "no_wait": True}).encode()
        wakes = self._wakes
        try:
            await self._nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{CONSUMER}", request,
                reply=f"{self._inbox}.{pull_id}",
            )  # fmt: skip
            dry = await asyncio.wait_for(finished, PULL_TIMEOUT_S)
            # A put acknowledged while the pull was under way may have missed it.
            self._dry = dry and wakes == self._wakes
        except TimeoutError:
            raise QueueError(f"NATS queue {self.stream}: no answer to a pull") from None
        finally:
            self._pull = None
        if dry:
            # Whatever was retried and is due should have come with this pull; an entry
            # that did not is gone (recovered elsewhere): stop waiting for it.
            now = now_ms()
            self._retried = {s: v for s, v in self._retried.items() if v[0] > now}

    async def _on_message(self, msg: Msg) -> None:
        pull = self._pull
        if msg.headers and "Status" in msg.headers and not msg.data:
            # 404 (nothing more) or 408 (fewer than asked): this pull is over.
            if pull is not None and msg.subject.endswith(f".{pull[0]}"):
                _resolve(pull[2], True)
            return
        try:
            meta = msg.metadata
            event_id, event = _decode(msg.data)
        except Exception:
            log.exception("NATS queue %s: unreadable message %s", self.stream, msg.reply)
            return
        seq = meta.sequence.stream
        self._retried.pop(seq, None)
        held = self._held.get(seq)
        if held is not None:
            # Redelivered while we held it (heartbeats did not get through): keep our
            # lease, settle through the new delivery.
            held.msg = msg
        else:
            # In line from when it was stored (a retry: when it was retried), or later
            # if it has a not-before time, as the SQLite queue orders by due time.
            stored_ms = int(meta.timestamp.timestamp() * 1000)
            due = event.not_before_ms
            self._held[seq] = _Held(msg, event_id, event, due, max(due, stored_ms))
        if pull is not None:
            left = pull[1] - 1
            self._pull = (pull[0], left, pull[2])
            if left <= 0 or meta.num_pending == 0:
                _resolve(pull[2], meta.num_pending == 0)

    def _send_wake(self) -> None:
        self._wake_due = False
        if self._nc is not None and not self._nc.is_closed:
            # Buffered by the client, so no await: it goes with the next flush.
            task = asyncio.ensure_future(self._nc.publish(self.wake_subject, b""))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS queue %s: %s", self.stream, exc or type(exc).__name__)

    async def _on_wake(self, _msg: Msg) -> None:
        self._woken()

    # -- settling ---------------------------------------------------------------------

    def _holder(self, lease: Lease) -> tuple[int, _Held] | None:
        """The held message whose current token ``lease`` carries, or None if stale."""
        try:
            seq = int(lease.token.split(".", 1)[0])
        except (ValueError, AttributeError):
            return None
        held = self._held.get(seq)
        if held is None or held.token != lease.token or held.id != lease.id:
            return None
        return seq, held

    def _settle(self, lease: Lease) -> tuple[int, Msg] | None:
        self._open()
        found = self._holder(lease)
        if found is None:
            return None
        seq, held = found
        del self._held[seq]
        return seq, held.msg

    async def _ack(self, msg: Msg) -> None:
        # Confirmed, so stats and a restart see it gone; unconfirmed it would still be
        # acked or (lost) redelivered after the ack wait: at-least-once either way.
        try:
            await msg.ack_sync(timeout=API_TIMEOUT_S)
        except Exception as exc:
            raise QueueError(f"NATS queue {self.stream}: ack not confirmed: {exc}") from exc

    async def _publish(self, js: Any, body: bytes, msg_id: str) -> Any:
        try:
            return await js.publish(self.subject, body, headers={"Nats-Msg-Id": msg_id})
        except Exception as exc:
            # The publish may have reached the stream with only its answer lost: the
            # event may still run, which the caller must not be told it will not.
            raise QueueError(f"NATS queue {self.stream}: put not confirmed, it may or may "
                             f"not have been stored: {exc}") from exc

    # -- bookkeeping ------------------------------------------------------------------

    def _ready(self, now: int) -> list[tuple[int, _Held]]:
        """Held messages a lease may hand out now, oldest due first."""
        return sorted(
            ((s, h) for s, h in self._held.items() if h.due_ms <= now),
            key=lambda sh: (sh[1].order_ms, sh[0]),
        )

    def _count_ready(self, now: int) -> int:
        return sum(1 for h in self._held.values() if h.due_ms <= now)

    def _next_due(self) -> int | None:
        dues = [h.due_ms for h in self._held.values()]
        dues += [due for due, _ in self._retried.values()]
        return min(dues) if dues else None

    async def _nothing_new(self) -> bool:
        """Whether JetStream has no message this consumer has not delivered (then the
        wait is for a put, or a time this process holds); marks the queue dry if so."""
        wake = self._wake
        try:
            info = await self._open().consumer_info(self.stream, CONSUMER)
        except Exception:
            return False  # cannot tell: the caller leases and finds out
        if info.num_pending or wake is not self._wake:
            return False  # something arrived meanwhile
        self._dry = True
        return True

    def _woken(self) -> None:
        """Something may have been queued: the next wait looks at once."""
        self._dry = False
        self._wakes += 1
        self._notify()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def _beat(self) -> None:
        """Tell JetStream every held message is still being worked on, so it redelivers
        none of them while this process lives (and all of them once it stops)."""
        while True:
            await asyncio.sleep(self._beat_s)
            for held in list(self._held.values()):
                with contextlib.suppress(NatsError, OSError):
                    await held.msg.in_progress()
            # Another server started since may have set a shorter ack wait: keep up.
            # Bounded by half a beat: a slow JetStream API (a leader election) must not delay
            # the next "in progress" past the ack wait and get every held event redelivered.
            with contextlib.suppress(Exception):
                info = await asyncio.wait_for(
                    self._js.consumer_info(self.stream, CONSUMER), self._beat_s / 2)
                found = info.config.ack_wait or self.ack_wait_s
                self._beat_s = min(self.ack_wait_s, found) / 3

    def _open(self) -> Any:
        if self._nc is None or self._closing:
            raise QueueError(f"NATS queue {self.stream} is not open")
        return self._js


def _encode(event_id: str, event: QueuedEvent) -> bytes:
    """One JSON line of metadata (ASCII, so no raw newline), then the payload as is."""
    meta = [
        event_id, event.function_name, event.qualifier, event.request_id, event.trace_id,
        event.enqueued_ms, event.attempts, event.not_before_ms,
    ]  # fmt: skip
    return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + bytes(event.payload)


def _decode(body: bytes) -> tuple[str, QueuedEvent]:
    head, _, payload = body.partition(b"\n")
    event_id, function, qualifier, request_id, trace_id, enqueued, attempts, not_before = (
        json.loads(head)
    )
    event = QueuedEvent(
        function, qualifier, payload, request_id, trace_id, enqueued, attempts, not_before
    )
    return event_id, event


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _resolve(future: asyncio.Future[bool], dry: bool) -> None:
    if not future.done():
        future.set_result(dry)
