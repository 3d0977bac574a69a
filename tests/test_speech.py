"""Voice messages without Recognition, heard later (bot/speech.py, pushes/speech.py): the
audio from the emulator's media/get, a fake transcoder and a fake engine, the transcript
taken as the user's answer and the next question sent as a customer-service message; a
transcript that arrives after the user typed on is dropped; the port's edges."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import requests

from bot import speech
from bot.config import ConfigError, load_config
from bot.pipeline import Pipeline
from dialogue import types as t
from pushes.speech import FfmpegTranscoder, recognise
from tests import demo_flows
from tests.pushes_fixtures import drain

AUDIO = b"#!AMR\n" + bytes(range(256)) * 8  # what WeChat's media/get returns for a voice


class FakeEngine:
    """Reads wav only, so amr goes through the transcoder; says what `said` maps the audio to."""

    formats = ("wav",)

    def __init__(self):
        self.said: dict[bytes, str | None] = {}
        self.heard: list[tuple[bytes, str]] = []

    def transcribe(self, audio: bytes, format: str) -> str | None:
        self.heard.append((audio, format))
        return self.said.get(audio)


ENGINE = FakeEngine()
TRANSCODED: list[tuple[bytes, str, str]] = []


def fake_engine():  # SPEECH_ENGINE=tests.test_speech:fake_engine
    return ENGINE


def fake_transcoder():  # SPEECH_TRANSCODER=tests.test_speech:fake_transcoder
    def convert(audio: bytes, source: str, target: str) -> bytes:
        TRANSCODED.append((audio, source, target))
        return b"WAV:" + audio
    return convert


@pytest.fixture
def hearing(svc, emulator, monkeypatch):
    demo_flows.register()
    config = dataclasses.replace(svc.config, speech_engine="tests.test_speech:fake_engine",
                                 speech_transcoder="tests.test_speech:fake_transcoder",
                                 wechat_api_base=emulator.base)
    monkeypatch.setattr(svc, "config", config)
    ENGINE.said.clear()
    ENGINE.heard.clear()
    TRANSCODED.clear()
    h = speech.from_config(svc)
    speech.install(h)
    yield h
    speech.install(None)


def voice(openid: str, msg_id: int, media_id: str = "m_voice_1") -> t.Message:
    return t.Message(openid=openid, kind=t.VOICE, text="", msg_id=msg_id, create_time=1_796_000_000 + msg_id,
                     extra={"media_id": media_id, "format": "amr"})


def text(openid: str, content: str, msg_id: int) -> t.Message:
    return t.Message(openid=openid, kind=t.TEXT, text=content, msg_id=msg_id, create_time=1_796_000_000 + msg_id)


def following(emulator, openid: str) -> None:
    user = emulator.state.user(openid)
    user.following = True
    emulator.state.interact(openid, "message")


def put_media(emulator, media_id: str, audio: bytes) -> None:
    requests.put(f"{emulator.url}/_emulator/media/{media_id}", data=audio,
                 headers={"Content-Type": "audio/amr"}, timeout=10).raise_for_status()


def in_the_demo_form(svc, emulator, openid: str, said: str | None) -> Pipeline:
    """`openid` follows (its message window open) and has started the demo form; the voice
    m_voice_1 holds AUDIO, which the engine hears as `said`."""
    following(emulator, openid)
    put_media(emulator, "m_voice_1", AUDIO)
    if said is not None:
        ENGINE.said[b"WAV:" + AUDIO] = said
    pipe = Pipeline(svc)
    assert "请选择服务项目" in pipe.handle(text(openid, "演示", 1)).text
    return pipe


def test_an_unheard_voice_is_answered_at_once_then_transcribed_and_applied(hearing, svc, emulator):
    openid = "o_speech_1"
    pipe = in_the_demo_form(svc, emulator, openid, "第二个")
    first = pipe.handle(voice(openid, 2)).text
    assert "这段语音没能听清" in first and "请选择服务项目" in first  # the kind reply, at once
    assert drain(svc) == 1
    assert TRANSCODED == [(AUDIO, "amr", "wav")]
    assert ENGINE.heard == [(b"WAV:" + AUDIO, "wav")]
    sent = emulator.state.custom_messages
    assert len(sent) == 1 and sent[0]["touser"] == openid
    assert sent[0]["text"]["content"].startswith("您说的是：“第二个”\n")
    assert "哪几天需要服务" in sent[0]["text"]["content"]  # "2" (助洁) was taken as the answer
    state = pipe.states.load(openid)
    assert state["step"] == "days" and state["answers"]["service"] == "clean"
    assert "unheard" not in state


def test_a_transcript_after_the_user_typed_on_is_dropped(hearing, svc, emulator):
    openid = "o_speech_2"
    pipe = in_the_demo_form(svc, emulator, openid, "第三个")
    pipe.handle(voice(openid, 2))
    assert "哪几天需要服务" in pipe.handle(text(openid, "2", 3)).text  # typed, as the reply suggested
    drain(svc)
    assert emulator.state.custom_messages == []
    state = pipe.states.load(openid)
    assert state["step"] == "days" and state["answers"]["service"] == "clean"


def test_nothing_understood_or_no_media_sends_nothing(hearing, svc, emulator):
    openid = "o_speech_3"
    pipe = in_the_demo_form(svc, emulator, openid, None)  # the engine makes nothing of it
    pipe.handle(voice(openid, 2))
    pipe.handle(voice(openid, 3, media_id="m_gone"))  # expired media: 40007
    assert drain(svc) == 2
    assert emulator.state.custom_messages == []
    assert [c["errcode"] for c in emulator.calls("media_get")] == [0, 40007]


def test_without_an_engine_nothing_is_queued(svc, emulator):
    demo_flows.register()
    pipe = Pipeline(svc)
    assert not pipe.hears
    pipe.handle(text("o_speech_4", "演示", 1))
    assert "没能听清" in pipe.handle(voice("o_speech_4", 2)).text
    assert drain(svc) == 0


def test_recognise_converts_only_what_the_engine_cannot_read():
    engine = FakeEngine()
    engine.formats = ("amr", "wav")
    engine.said[b"a"] = "  你好  "
    calls = []
    assert recognise(b"a", "AMR", engine, lambda *a: calls.append(a)) == "你好"
    assert calls == []
    assert recognise(b"", "amr", engine, lambda *a: b"x") is None  # nothing to hear
    engine.formats = ("wav",)
    assert recognise(b"a", "silk", engine, lambda *a: None) is None  # cannot be converted


def test_an_engine_that_fails_counts_as_not_understood(caplog):
    class Broken:
        formats = ("wav",)

        def transcribe(self, audio, format):
            raise RuntimeError("model missing")

    with caplog.at_level(logging.ERROR, "volbot.speech"):
        assert recognise(b"a", "wav", Broken(), lambda *a: b"") is None
    assert "the engine failed" in caplog.text


def test_ffmpeg_missing_is_logged_once_and_converts_nothing(caplog, monkeypatch):
    monkeypatch.setattr("pushes.speech.shutil.which", lambda name: None)
    convert = FfmpegTranscoder()
    with caplog.at_level(logging.WARNING, "volbot.speech"):
        assert convert(AUDIO, "amr", "wav") is None
        assert convert(AUDIO, "amr", "wav") is None
    assert caplog.text.count("is not installed") == 1


@pytest.mark.parametrize("spec", ["noseparator", "a b:c", "mod:", ":factory"])
def test_a_malformed_engine_setting_stops_start_up(tmp_path, spec):
    with pytest.raises(ConfigError, match="SPEECH_ENGINE"):
        load_config(tmp_path, environ={"SPEECH_ENGINE": spec})


def test_the_engine_setting_is_read(tmp_path):
    config = load_config(tmp_path, environ={"SPEECH_ENGINE": "mypkg.stt:engine"})
    assert config.speech_engine == "mypkg.stt:engine" and config.speech_transcoder == ""
