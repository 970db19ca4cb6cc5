//! Tier pinning: the turns of one conversation stay on the tier it was
//! routed to. A later turn that scores lower (a "thanks", a short follow-up)
//! does not drop to a weaker model mid-task and lose the provider's warm
//! prompt cache; one that scores higher moves the conversation up only when
//! its score clears the pinned tier's bound by the configured margin, and
//! the conversation then stays at the new tier. The conversation is the one
//! affinity names (`route::affinity`); its tier is kept in a ring of
//! shared-data slots, so every worker of an Envoy agrees, by name (a
//! reloaded configuration may number tiers differently).

use crate::config::affinity::TierPinning;
use crate::config::{Config, TierId, STATE_PREFIX};
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

/// What pinning did to a turn's tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    /// No tier known for the conversation: the score decided, and is kept.
    New,
    /// The conversation's tier held (the score alone would have chosen
    /// `scored`, which may be the same tier).
    Kept { scored: TierId },
    /// The score cleared the pinned tier's bound by the margin: moved up.
    Raised { from: TierId },
}

impl Pinning {
    /// `x-signalbox-pin`.
    pub fn name(self) -> &'static str {
        match self {
            Pinning::New => "new",
            Pinning::Kept { .. } => "kept",
            Pinning::Raised { .. } => "raised",
        }
    }
}

/// The tier for a turn scored `score` (the score alone chose `scored`) of a
/// conversation pinned to `pinned`.
pub fn apply(
    config: &Config,
    pinning: &TierPinning,
    scored: TierId,
    score: f64,
    pinned: Option<TierId>,
) -> (TierId, Pinning) {
    let Some(pinned) = pinned else {
        return (scored, Pinning::New);
    };
    let bound = config.tiers.get(pinned).map_or(f64::INFINITY, |tier| tier.max_score);
    if scored > pinned && score >= bound + pinning.margin {
        (scored, Pinning::Raised { from: pinned })
    } else {
        (pinned, Pinning::Kept { scored })
    }
}

/// One conversation's tier, in its slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinnedTier {
    /// The conversation's hash (0: an empty slot).
    pub conversation: u64,
    pub tier: String,
    /// Its last turn.
    pub at_ms: u64,
}

impl PinnedTier {
    /// The tier, if the slot holds `conversation`, seen within `idle_ms`.
    pub fn tier_of(&self, config: &Config, conversation: u64, now_ms: u64, idle_ms: u64) -> Option<TierId> {
        (self.conversation == conversation && now_ms.saturating_sub(self.at_ms) < idle_ms)
            .then(|| config.tier_named(&self.tier))
            .flatten()
    }
}

/// The shared-data key of the slot a conversation lands in.
pub fn slot_key(conversation: u64, remember: u32) -> String {
    format!("{STATE_PREFIX}pin/{}", conversation % u64::from(remember.max(1)))
}

const VERSION: u8 = 1;

impl Record for PinnedTier {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer
            .u64(self.conversation)
            .bytes(self.tier.as_bytes())
            .u64(self.at_ms);
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let pinned = PinnedTier {
            conversation: reader.u64()?,
            tier: String::from_utf8(reader.bytes()?.to_vec()).ok()?,
            at_ms: reader.u64()?,
        };
        reader.is_done().then_some(pinned)
    }
}
