"""Standalone mock providers: python3 -m tests.mocks --listen openai=18001 --listen anthropic=18002"""

from __future__ import annotations

import argparse
import asyncio

from .server import serve_forever


def _listener(spec: str) -> tuple[str, int]:
    name, _, port = spec.partition("=")
    if not name or (port and not port.isdigit()):
        raise argparse.ArgumentTypeError(f"expected NAME=PORT (or NAME for an OS-picked port), got {spec!r}")
    return name, int(port or 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.mocks",
        description="Serve mock LLM providers on 127.0.0.1 until SIGINT/SIGTERM. "
        "Every listener answers OpenAI, Azure OpenAI, Anthropic, Gemini and Bedrock paths.",
    )
    parser.add_argument(
        "--listen",
        action="append",
        type=_listener,
        required=True,
        metavar="NAME=PORT",
        help="a named listener; repeat for more (port 0 or omitted = OS-picked)",
    )
    args = parser.parse_args(argv)
    listeners = dict(args.listen)
    if len(listeners) != len(args.listen):
        parser.error("listener names must be unique")
    asyncio.run(serve_forever(listeners, announce=lambda line: print(line, flush=True)))


if __name__ == "__main__":
    main()
