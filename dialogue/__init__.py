"""The dialogue engine: plain messages in, plain replies out, forms declared as data.

Nothing here knows Flask, XML or wechatpy. `bot/` turns WeChat pushes into `Message`s and
`Reply`s back into XML; `handlers/` declare the journeys with `Flow` and `Step`.
"""

from dialogue.flows import YES_NO, Choice, Flow, Invalid, Step
from dialogue.types import Article, Location, Message, Reply

__all__ = ["Article", "Location", "Message", "Reply", "Choice", "Flow", "Invalid", "Step", "YES_NO"]
