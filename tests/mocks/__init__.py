"""Realistic fake LLM providers (OpenAI/Azure, Anthropic, Gemini, Bedrock) for Signalbox tests.

In-process:   with MockProviders() as mp: ports = mp.start(["openai", "anthropic"])
Standalone:   python3 -m tests.mocks --listen openai=18001 --listen anthropic=18002
"""

from .bedrock import EventMessage, decode_event_stream, encode_event
from .behaviors import KNOWN_KEYS as BEHAVIOR_KEYS
from .instance import FAULT_HEADER, RecordedRequest
from .server import MockProviders

__all__ = [
    "BEHAVIOR_KEYS",
    "FAULT_HEADER",
    "EventMessage",
    "MockProviders",
    "RecordedRequest",
    "decode_event_stream",
    "encode_event",
]
