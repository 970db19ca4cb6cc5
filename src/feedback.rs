//! User feedback on answers. Every answered request with an id
//! (`x-request-id`) is remembered in a bounded ring of shared-data slots:
//! which tenant asked, which model served it, in which tier, and the kind and
//! score the classifier gave its prompt. A rating posted later with that id
//! (by the same tenant's key) is counted once per answer, by tier, model
//! and prompt kind, so the classifier's weights can be re-fitted from what
//! users thought of the answers.

use serde::Deserialize;

use crate::classify::PromptKind;
use crate::config::{Config, STATE_PREFIX};
use crate::error::GatewayError;
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

/// Request ids longer than this are not remembered (Envoy's are 36).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// One answered request, as a rating needs it. Tenant, model and tier are
/// kept by name: shared data outlives a configuration, and a reloaded one
/// may number them differently.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Served {
    pub request_id: String,
    /// The tenant's name (empty without governance).
    pub tenant: String,
    pub model: String,
    pub tier: Option<String>,
    pub kind: Option<PromptKind>,
    /// The classifier's score, in thousandths.
    pub score_milli: Option<u16>,
    pub at_ms: u64,
    /// A rating was counted for it already.
    pub rated: bool,
    /// With the fleet store: Redis has it (from then on Redis alone decides
    /// whether a rating counts; this slot's copy is no longer sent along).
    pub in_fleet: bool,
}

/// The slot of `tenant`'s answer `request_id`, when feedback is on.
pub fn slot_of(config: &Config, tenant: &str, request_id: &str) -> Option<String> {
    let settings = config.feedback.as_ref()?;
    Some(slot_key(tenant, request_id, settings.remember))
}

/// The shared-data key of the slot a tenant's request id lands in. The
/// tenant is part of the hash: a client-chosen id that another tenant also
/// uses lands elsewhere (but for ring collisions) and never takes its slot.
pub fn slot_key(tenant: &str, request_id: &str, slots: u32) -> String {
    // FNV-1a: stable across workers and restarts, cheap, good enough spread.
    let hash = tenant
        .bytes()
        .chain(std::iter::once(0))
        .chain(request_id.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{STATE_PREFIX}feedback/{}", hash % u64::from(slots.max(1)))
}

/// A posted rating.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rating {
    pub request_id: String,
    /// 0 (bad) to 1 (good).
    pub rating: f64,
    /// Whether the task the answer was for succeeded, when the client knows.
    #[serde(default)]
    pub success: Option<bool>,
}

impl Rating {
    pub fn parse(body: &[u8]) -> Result<Rating, GatewayError> {
        let rating: Rating = serde_json::from_slice(body).map_err(|err| {
            GatewayError::invalid(format!(
                "A feedback body is {{\"request_id\": \"…\", \"rating\": 0..1, \"success\": true|false}}: {err}"
            ))
        })?;
        if rating.request_id.is_empty() || rating.request_id.len() > MAX_REQUEST_ID_BYTES {
            return Err(GatewayError::invalid(format!(
                "`request_id` must be 1 to {MAX_REQUEST_ID_BYTES} bytes."
            )));
        }
        if !(0.0..=1.0).contains(&rating.rating) {
            return Err(GatewayError::invalid(
                "`rating` must be a number from 0 (bad) to 1 (good).",
            ));
        }
        Ok(rating)
    }

    /// The metric's `result`.
    pub fn result(&self) -> &'static str {
        if self.rating >= 0.5 {
            "positive"
        } else {
            "negative"
        }
    }
}

/// What a rating did to the slot its id lands in.
#[derive(Debug, Clone, PartialEq)]
pub enum Rated {
    /// Counted, for this answer.
    Counted(Served),
    /// No answer with this id is remembered for this tenant (never seen,
    /// pushed out by newer answers, or another tenant's).
    Unknown,
    /// This answer was rated already.
    Again,
}

/// Marks `slot` rated by `tenant` (its name, empty without governance) for
/// `request_id` if it holds that answer.
pub fn rate(slot: &mut Served, request_id: &str, tenant: &str) -> Rated {
    if slot.request_id != request_id || slot.tenant != tenant {
        return Rated::Unknown;
    }
    if slot.rated {
        return Rated::Again;
    }
    slot.rated = true;
    Rated::Counted(slot.clone())
}

/// The feedback line for the log (one JSON object): what the evaluation
/// tool joins with the access log by request id.
pub fn log_line(served: &Served, rating: &Rating) -> String {
    serde_json::json!({
        "request_id": served.request_id,
        "tenant": Some(served.tenant.as_str()).filter(|tenant| !tenant.is_empty()),
        "model": served.model,
        "tier": served.tier,
        "kind": served.kind.map(PromptKind::name),
        "score": served.score_milli.map(|score| f64::from(score) / 1000.0),
        "rating": rating.rating,
        "success": rating.success,
        "answered_at_ms": served.at_ms,
    })
    .to_string()
}

const VERSION: u8 = 2;
const NONE_U8: u8 = u8::MAX;

impl Record for Served {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer
            .bytes(self.request_id.as_bytes())
            .bytes(self.tenant.as_bytes())
            .bytes(self.model.as_bytes())
            .u8(u8::from(self.tier.is_some()))
            .bytes(self.tier.as_deref().unwrap_or_default().as_bytes())
            .u8(self.kind.map_or(NONE_U8, |kind| kind.index() as u8))
            .u16(self.score_milli.unwrap_or(u16::MAX))
            .u64(self.at_ms)
            .u8(u8::from(self.rated) | u8::from(self.in_fleet) << 1);
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let mut text = || String::from_utf8(reader.bytes()?.to_vec()).ok();
        let request_id = text()?;
        let tenant = text()?;
        let model = text()?;
        let has_tier = reader.u8()? != 0;
        let tier = String::from_utf8(reader.bytes()?.to_vec()).ok()?;
        let kind = reader.u8()?;
        let score = reader.u16()?;
        let at_ms = reader.u64()?;
        let flags = reader.u8()?;
        let served = Served {
            request_id,
            tenant,
            model,
            tier: has_tier.then_some(tier),
            kind: PromptKind::ALL.get(usize::from(kind)).copied(),
            score_milli: (score != u16::MAX).then_some(score),
            at_ms,
            rated: flags & 1 != 0,
            in_fleet: flags & 2 != 0,
        };
        reader.is_done().then_some(served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Served {
        Served {
            request_id: "7352194e-83e3-4042-a763-40af24e8b740".into(),
            tenant: "acme".into(),
            model: "small".into(),
            tier: Some("simple".into()),
            kind: Some(PromptKind::Math),
            score_milli: Some(412),
            at_ms: 1_000,
            rated: false,
            in_fleet: false,
        }
    }

    #[test]
    fn a_rating_counts_once_and_only_for_the_tenant_that_asked() {
        let mut slot = served();
        let id = slot.request_id.clone();
        assert_eq!(rate(&mut slot, &id, "globex"), Rated::Unknown, "another tenant");
        assert_eq!(rate(&mut slot, "other-id", "acme"), Rated::Unknown);
        assert!(matches!(rate(&mut slot, &id, "acme"), Rated::Counted(counted) if counted.model == "small"));
        assert_eq!(rate(&mut slot, &id, "acme"), Rated::Again);
    }

    #[test]
    fn ratings_are_checked() {
        let rating = Rating::parse(br#"{"request_id": "abc", "rating": 0.8, "success": true}"#).unwrap();
        assert_eq!(
            (rating.rating, rating.success, rating.result()),
            (0.8, Some(true), "positive")
        );
        assert_eq!(
            Rating::parse(br#"{"request_id": "abc", "rating": 0}"#)
                .unwrap()
                .result(),
            "negative"
        );
        for bad in [
            &br#"{"request_id": "abc", "rating": 1.5}"#[..],
            br#"{"request_id": "", "rating": 1}"#,
            br#"{"request_id": "abc"}"#,
            br#"{"request_id": "abc", "rating": 1, "stars": 5}"#,
            b"not json",
            b"\xff",
        ] {
            assert_eq!(Rating::parse(bad).unwrap_err().status(), 400, "{bad:?}");
        }
        let long = format!(r#"{{"request_id": "{}", "rating": 1}}"#, "x".repeat(200));
        assert_eq!(Rating::parse(long.as_bytes()).unwrap_err().status(), 400);
    }

    #[test]
    fn slots_round_trip_and_ids_spread_over_the_ring() {
        let record = served();
        assert_eq!(Served::decode(&record.encode()), Some(record));
        let anonymous = Served {
            tenant: String::new(),
            tier: None,
            kind: None,
            score_milli: None,
            rated: true,
            in_fleet: true,
            ..served()
        };
        assert_eq!(Served::decode(&anonymous.encode()), Some(anonymous));
        assert_eq!(Served::decode(b"\x01\xff"), None);
        let keys: std::collections::HashSet<String> = (0..64)
            .map(|index| slot_key("acme", &format!("request-{index}"), 4096))
            .collect();
        assert!(keys.len() > 60, "{} distinct slots", keys.len());
        assert_eq!(slot_key("acme", "same", 16), slot_key("acme", "same", 16));
        assert_ne!(
            slot_key("acme", "shared-id", 1 << 20),
            slot_key("globex", "shared-id", 1 << 20),
            "one id, two tenants, two slots"
        );
    }
}
