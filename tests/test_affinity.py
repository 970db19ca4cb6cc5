"""Cache-aware affinity through the real Envoy: a coding agent's conversation
(Claude Code's shape: a system prompt, a growing history, the newest turn
marked for caching) keeps one deployment and key under a 50/50 weighted split
over two Anthropic providers, one of them with two keys, so the provider's
prompt cache is read on every later turn; it moves only while that deployment
fails. The Anthropic mocks model prompt caching per instance and key."""

from __future__ import annotations

import pytest

from tests.gateway import add_cluster
from tests.test_agents import claude_client
from tests.test_observability import eventually, scrape, total

WEST = "anthropic-west"
SYSTEM = [{"type": "text", "text": "You are a coding agent working in a Rust repository."}]
TURNS = 10
CONVERSATIONS = 8


def affinity_config(**affinity) -> dict:
    return {
        "explain": "always",
        "providers": {
            "east": {
                "kind": "anthropic",
                "cluster": "anthropic",
                "api_keys": [{"name": "k1", "key": "sk-east-1"}, {"name": "k2", "key": "sk-east-2"}],
            },
            "west": {"kind": "anthropic", "cluster": WEST, "api_key": "sk-west"},
        },
        "models": {
            "claude-east": {"provider": "east", "id": "claude-sonnet-4-5"},
            "claude-west": {"provider": "west", "id": "claude-sonnet-4-5"},
        },
        "tiers": [
            {
                "name": "agents",
                "models": ["claude-east", "claude-west"],
                "strategy": "weighted",
                "weights": {"claude-east": 50, "claude-west": 50},
            }
        ],
        "affinity": affinity,
    }


@pytest.fixture
def start_split(start_gateway, mocks):
    mocks.start([WEST])

    def start(**affinity):
        return start_gateway(affinity_config(**affinity), tweak=lambda envoy: add_cluster(envoy, WEST))

    return start


class Conversation:
    """One agent session: each turn re-sends the whole history, the newest block marked for caching."""

    def __init__(self, gateway, task: int):
        self.client = claude_client(gateway)
        self.gateway = gateway
        self.messages: list[dict] = []
        self.next_user = f"Task {task}: make the tokenizer handle escaped quotes."

    def turn(self):
        """Sends the next turn; returns (usage, (mock instance, api key) that answered it, response headers)."""
        for message in self.messages:
            for block in message["content"]:
                block.pop("cache_control", None)
        self.messages.append(
            {
                "role": "user",
                "content": [{"type": "text", "text": self.next_user, "cache_control": {"type": "ephemeral"}}],
            }
        )
        raw = self.client.messages.with_raw_response.create(
            model="auto", max_tokens=64, system=SYSTEM, messages=self.messages
        )
        answer = raw.parse()
        self.messages.append({"role": "assistant", "content": [{"type": "text", "text": answer.content[0].text}]})
        self.next_user = f"Good. Now step {len(self.messages) // 2 + 1}, please."
        served = self.gateway.mocks.requests()[-1]
        return answer.usage, (served.instance, served.header("x-api-key")), raw.headers


def test_ten_turns_keep_one_deployment_and_read_the_prompt_cache(start_split):
    gateway = start_split()
    placements = set()
    for task in range(CONVERSATIONS):
        conversation = Conversation(gateway, task)
        usage, first, headers = conversation.turn()
        assert headers["x-signalbox-affinity"] == "prefix"
        assert usage.cache_creation_input_tokens > 0 and usage.cache_read_input_tokens == 0
        for number in range(2, TURNS + 1):
            usage, served, _ = conversation.turn()
            assert served == first, f"conversation {task} moved on turn {number}"
            assert usage.cache_read_input_tokens > 0, f"conversation {task} missed the cache on turn {number}"
        placements.add(first)
    # The split still splits: conversations went to both providers.
    assert {instance for instance, _ in placements} == {"anthropic", WEST}, placements

    # The cache-hit share per model, from the token counters.
    def shares():
        samples = scrape(gateway)
        return {
            model: total(samples, "signalbox_tokens_total", model=model, kind="cached_input")
            / max(1.0, total(samples, "signalbox_tokens_total", model=model, kind="input")
                  + total(samples, "signalbox_tokens_total", model=model, kind="cached_input"))
            for model in ("claude-east", "claude-west")
        }

    share = eventually(shares, lambda found: all(value > 0.5 for value in found.values()))
    assert all(value > 0.5 for value in share.values()), share


def test_without_affinity_a_conversation_is_scattered_and_misses_the_cache(start_split):
    # Only a session header names conversations, and this client sends none.
    gateway = start_split(sources=["session_header"])
    conversation = Conversation(gateway, 0)
    turns = [conversation.turn() for _ in range(TURNS)]
    assert "x-signalbox-affinity" not in turns[0][2]
    assert len({served for _, served, _ in turns}) > 1
    assert sum(1 for usage, _, _ in turns if usage.cache_read_input_tokens == 0) > 1


def test_a_session_header_names_the_conversation(start_split):
    gateway = start_split(sources=["session_header", "prefix"], session_header="x-agent-session")
    placements = set()
    for turn in range(6):
        # Different openings, one session: the header decides.
        answer = claude_client(gateway).messages.with_raw_response.create(
            model="auto",
            max_tokens=16,
            messages=[{"role": "user", "content": f"Question {turn}"}],
            extra_headers={"x-agent-session": "session-42"},
        )
        assert answer.headers["x-signalbox-affinity"] == "session_header"
        served = gateway.mocks.requests()[-1]
        placements.add((served.instance, served.header("x-api-key")))
    assert len(placements) == 1, placements


def test_a_conversation_moves_only_while_its_deployment_fails(start_split, mocks):
    gateway = start_split()
    conversation = Conversation(gateway, 3)
    _, home, _ = conversation.turn()
    for _ in range(3):
        assert conversation.turn()[1] == home
    failing_instance = home[0]
    mocks.set_behavior(failing_instance, {"status": 500})
    try:
        usage, moved, headers = conversation.turn()
        assert moved[0] != failing_instance, "failover took the turn to the other provider"
        assert headers["x-signalbox-route"].startswith("fallback")
    finally:
        mocks.reset_behavior(failing_instance)
    # Healthy again (one failure opens no circuit): the conversation returns home,
    # where its prompt cache still is.
    usage, back, _ = conversation.turn()
    assert back == home
    assert usage.cache_read_input_tokens > 0


HARD = (
    "Prove step by step that the sum of the first n odd numbers is n^2, then implement a Rust function "
    "that checks it for n up to 10^6 with overflow handling, and analyse its complexity."
)


def pinning_config() -> dict:
    return {
        "explain": "always",
        "providers": {
            "openai": {"cluster": "openai", "api_key": "sk-provider-openai"},
            "anthropic": {"kind": "anthropic", "cluster": "anthropic", "api_key": "sk-provider-anthropic"},
        },
        "models": {
            "cheap": {"provider": "openai", "id": "cheap-model"},
            "strong": {"provider": "anthropic", "id": "strong-model"},
        },
        "tiers": [
            {"name": "simple", "max_score": 0.4, "models": ["cheap"]},
            {"name": "complex", "models": ["strong"]},
        ],
        "affinity": {"sources": ["session_header"], "pin_tier": {"margin": 0.1}},
    }


def test_a_pinned_conversation_keeps_its_tier_for_easy_turns_and_says_so(start_gateway):
    gateway = start_gateway(pinning_config())

    def turn(session: str, history: list[dict], text: str):
        history.append({"role": "user", "content": text})
        response = gateway.chat({"model": "auto", "messages": history}, headers={"x-session-id": session})
        assert response.status_code == 200, response.text
        history.append({"role": "assistant", "content": response.json()["choices"][0]["message"]["content"]})
        return response.headers

    hard: list[dict] = []
    first = turn("session-hard", hard, HARD)
    assert (first["x-signalbox-tier"], first["x-signalbox-pin"], first["x-signalbox-reason"]) == ("complex", "new", "score")
    for easy in ["thanks!", "ok", "and the next one?"]:
        later = turn("session-hard", hard, easy)
        assert (later["x-signalbox-tier"], later["x-signalbox-model"]) == ("complex", "strong"), dict(later)
        assert (later["x-signalbox-pin"], later["x-signalbox-reason"]) == ("kept", "pinned")

    # Another conversation starts easy, and moves up for good on a clearly harder turn.
    easy: list[dict] = []
    assert turn("session-easy", easy, "thanks!")["x-signalbox-tier"] == "simple"
    raised = turn("session-easy", easy, HARD)
    assert (raised["x-signalbox-tier"], raised["x-signalbox-pin"]) == ("complex", "raised")
    assert turn("session-easy", easy, "ok")["x-signalbox-tier"] == "complex"
    # Without a session the turn is scored alone.
    alone = gateway.chat({"model": "auto", "messages": [{"role": "user", "content": "thanks!"}]})
    assert alone.headers["x-signalbox-tier"] == "simple" and "x-signalbox-pin" not in alone.headers
