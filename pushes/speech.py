"""Speech to text for voice messages that arrive without WeChat's `Recognition`: the port.

WeChat is withdrawing its recognition of voice messages. A voice message still carries its
`MediaId` and `Format` (amr, or speex for HD voice); the audio is fetched with `media/get`
(`ApiClient.download_media`), converted by a `Transcoder` into a format the engine reads,
and given to a `SpeechToText` engine. `recognise` is that pipe; bot/speech.py runs it as a
queued job, never inside the 5-second reply (docs/engine.md, "Voice without recognition").

No engine ships here: an operator names one with SPEECH_ENGINE ("module:factory"), and
whatever it needs (a model on disk, a cloud account) is its own business, set up before
the worker starts: nothing is downloaded at run time. The default transcoder runs ffmpeg
if it is installed (it decodes AMR; WeChat's SILK needs a decoder ffmpeg does not have: a
transcoder of its own, SPEECH_TRANSCODER), and says once in the log when it is missing.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import subprocess
from typing import Callable, Protocol

log = logging.getLogger("volbot.speech")

MAX_AUDIO = 2 * 1024 * 1024  # bytes; a 60-second voice message is well under 200 KB
TRANSCODE_SECONDS = 20


class SpeechToText(Protocol):
    """A speech-to-text engine. `formats` are the audio formats it reads (lower case, e.g.
    ("wav",)); the first is what other formats are converted to."""

    formats: tuple[str, ...]

    def transcribe(self, audio: bytes, format: str) -> str | None:
        """The words spoken in `audio`, or None when nothing could be made out."""


# (audio, source format, target format) -> converted audio, or None when it cannot be done
Transcoder = Callable[[bytes, str, str], "bytes | None"]


class FfmpegTranscoder:
    """ffmpeg as a pipe (16 kHz mono, what speech engines read); None, logged, without ffmpeg."""

    def __init__(self, binary: str = "ffmpeg"):
        self.binary = binary
        self._warned = False

    def __call__(self, audio: bytes, source: str, target: str) -> bytes | None:
        path = shutil.which(self.binary)
        if path is None:
            if not self._warned:
                log.warning("speech: %s is not installed; voice messages cannot be transcoded", self.binary)
                self._warned = True
            return None
        try:
            done = subprocess.run([path, "-hide_banner", "-loglevel", "error", "-f", source, "-i", "pipe:0",
                                   "-ar", "16000", "-ac", "1", "-f", target, "pipe:1"],
                                  input=audio, capture_output=True, timeout=TRANSCODE_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("speech: %s failed (%s)", self.binary, type(e).__name__)
            return None
        if done.returncode != 0 or not done.stdout:
            log.warning("speech: %s could not convert %s to %s: %s", self.binary, source, target,
                        done.stderr.decode("utf-8", "replace")[-200:])
            return None
        return done.stdout


def load(spec: str):
    """The object `factory()` returns, for a "module:factory" setting."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)()


def recognise(audio: bytes, fmt: str, engine: SpeechToText, transcoder: Transcoder) -> str | None:
    """The text spoken in `audio` (format `fmt`), or None: too big, not convertible, or not
    understood. An engine that fails is logged and counts as not understood."""
    if not audio or len(audio) > MAX_AUDIO:
        log.info("speech: audio of %d bytes not transcribed", len(audio))
        return None
    fmt = (fmt or "amr").lower()
    if fmt not in engine.formats:
        target = engine.formats[0]
        audio = transcoder(audio, fmt, target)
        if not audio:
            return None
        fmt = target
    try:
        text = engine.transcribe(audio, fmt)
    except Exception:
        log.exception("speech: the engine failed")
        return None
    text = (text or "").strip()
    return text or None
