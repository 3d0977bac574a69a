"""Voice messages without `Recognition`, heard later: the queued job and its wiring.

The webhook never waits for speech to text. The turn answers an unheard voice message at
once (the question again, "typing the number is enough", a phone number: dialogue/engine.py)
and remembers its MsgId in the user's state (`unheard`). When SPEECH_ENGINE is set, the
pipeline then queues `hear` on the push queue, which `volbot worker` runs:

  media/get (the audio) → transcoder (AMR/SILK → what the engine reads) → engine → text

The text goes through the pipeline as the user's own voice answer (a message marked
`heard`); the engine takes it only while the voice message is still the user's latest
(they may have typed the number meanwhile) and otherwise drops it silently. Its reply is
sent as a customer-service message, after "您说的是：“…”" so the user sees what was
understood. The job is best-effort, like the Redis queue it sits in: a lost job costs only
the transcript, never the conversation.
"""

from __future__ import annotations

import logging

from dialogue import types as t
from dialogue.flows import clip
from pushes.client import WeChatError, client_for
from pushes.speech import FfmpegTranscoder, SpeechToText, Transcoder, load, recognise
from pushes.worker import push_queue

log = logging.getLogger("volbot.speech")

JOB_TIMEOUT = 120  # seconds: download, transcode and transcribe one message of at most 60 s
ECHO_WIDTH = 40  # characters of the understood text said back


def wanted(message: t.Message) -> bool:
    """An unheard voice message that can be fetched (its turn has just answered it)."""
    return (message.kind == t.VOICE and not message.text.strip() and bool(message.msg_id)
            and bool(message.extra.get("media_id")))


def enqueue(redis_client, message: t.Message) -> None:
    """Queue `hear` for `message` (the web process only queues: the engine lives in the worker)."""
    push_queue(redis_client).enqueue(
        hear, message.openid, message.extra["media_id"], message.extra.get("format") or "amr",
        message.msg_id, message.create_time, job_timeout=JOB_TIMEOUT, result_ttl=0, failure_ttl=3600)


class Hearing:
    """The speech path of one process: the API client, the transcoder and the engine."""

    def __init__(self, services, *, engine: SpeechToText, transcoder: Transcoder, client=None):
        self.services = services
        self.engine = engine
        self.transcoder = transcoder
        self.client = client if client is not None else client_for(services.config, services.redis)
        self._pipeline = None

    def hear(self, openid: str, media_id: str, fmt: str, msg_id: int, create_time: int) -> str:
        """Download, transcribe and answer one voice message; returns what happened."""
        try:
            audio = self.client.download_media(media_id)
        except WeChatError as e:
            log.warning("speech: media/get failed (%s)", e.code)
            return "no media"
        text = recognise(audio, fmt, self.engine, self.transcoder)
        if text is None:
            return "not understood"
        reply = self.pipeline.handle(t.Message(openid=openid, kind=t.VOICE, text=text, create_time=create_time,
                                               extra={"heard": msg_id}))
        if not reply.text or reply is t.BUSY:
            return "moved on"  # they answered meanwhile (or the turn failed): say nothing
        try:
            self.client.send_text(openid, f"您说的是：“{clip(text, ECHO_WIDTH)}”\n{reply.text}")
        except WeChatError as e:
            log.warning("speech: the answer could not be sent (%s)", e.code)
            return "not sent"
        return "answered"

    @property
    def pipeline(self):
        if self._pipeline is None:
            from bot.pipeline import Pipeline

            self._pipeline = Pipeline(self.services, max_workers=2)
        return self._pipeline


def from_config(services) -> Hearing | None:
    """The configured speech path (SPEECH_ENGINE, SPEECH_TRANSCODER), or None when off."""
    config = services.config
    if not config.speech_engine:
        return None
    transcoder = load(config.speech_transcoder) if config.speech_transcoder else FfmpegTranscoder()
    return Hearing(services, engine=load(config.speech_engine), transcoder=transcoder)


class _Current:
    """This worker process's speech path: RQ calls `hear` by its import path."""

    hearing: Hearing | None = None


def install(hearing: Hearing | None) -> None:
    _Current.hearing = hearing


def hear(openid: str, media_id: str, fmt: str, msg_id: int, create_time: int) -> str:
    """The job (queued by the pipeline, run by `volbot worker`)."""
    if _Current.hearing is None:
        log.warning("speech: a voice job reached a worker without SPEECH_ENGINE; dropped")
        return "no engine"
    return _Current.hearing.hear(openid, media_id, fmt, msg_id, create_time)
