//! The router's part in the response cache: looking a planned request up
//! (exact, then semantic with an embeddings call the request waits for),
//! answering a hit locally, and keeping (and indexing) an answer once it is
//! complete. The decisions are `crate::cache`'s; this moves bytes.

use std::time::Duration;

use proxy_wasm::types::Action;

use super::answer::capture;
use super::{read_trail, ChatFilter, Phase};
use crate::cache::plan::{CacheResult, CacheTicket, HEADER_CACHE, HEADER_CACHE_SIMILARITY};
use crate::cache::semantic::{self, EmbeddingCall, Quantised};
use crate::cache::{self, Entry, Lookup};
use crate::config::Config;
use crate::filter::host::{self, HostStore};
use crate::filter::root::Loaded;
use crate::filter::shared;
use crate::govern::ledger;
use crate::ingress::relay::{self, Relay};
use crate::route::{self, RequestPlan, RoutingDecision};
use crate::telemetry::report::CacheReport;
use crate::telemetry::{Family, Label, Outcome, Sample};

/// Where the response cache left a request.
pub(super) enum CacheStep {
    /// Answered from the cache, or held for a semantic lookup.
    Answered(Action),
    /// On to admission and a provider.
    Proceed(Box<RequestPlan>),
}

/// What the reports need of a request answered from the cache.
pub(super) struct Replayed {
    pub(super) decision: RoutingDecision,
    pub(super) requested_model: String,
}

/// A planned request that missed the exact cache, waiting for the vector
/// of its last user text.
pub(super) struct SemanticWait {
    pub(super) token: u32,
    call: EmbeddingCall,
    plan: RequestPlan,
    ticket: CacheTicket,
    /// What the exact lookup found (`miss` or `stale`).
    result: CacheResult,
}

/// The longest a request waits for its semantic lookup's embedding; past
/// it the request goes on as a miss.
const EMBEDDING_TIMEOUT: Duration = Duration::from_millis(2_000);

impl ChatFilter {
    /// Looks the request up in the response cache. A hit is answered here
    /// (nothing admitted, nothing spent); an exact miss of a tenant with a
    /// semantic cache waits for its embedding; otherwise the ticket waits
    /// for an answer to keep, and the response says what the cache did.
    pub(super) fn consult_cache(
        &mut self,
        state: &Loaded,
        mut plan: RequestPlan,
        step: Option<Result<CacheTicket, CacheResult>>,
    ) -> CacheStep {
        let (Some(step), Some(layout)) = (step, &state.cache_layout) else {
            return CacheStep::Proceed(Box::new(plan));
        };
        let now = host::now_ms();
        let result = match step {
            Err(result) => result,
            Ok(ticket) => {
                let found = if ticket.look_up {
                    cache::lookup(&HostStore, layout, &ticket.key, now)
                } else {
                    Lookup::Miss
                };
                let result = match found {
                    Lookup::Hit(entry) => match self.answer_from_cache(state, &plan, &ticket, &entry, None, now) {
                        Some(action) => return CacheStep::Answered(action),
                        None => CacheResult::Miss,
                    },
                    Lookup::Stale(_) => CacheResult::Stale,
                    Lookup::Miss if ticket.look_up => CacheResult::Miss,
                    Lookup::Miss => CacheResult::Bypass,
                };
                if ticket.look_up && ticket.semantic.is_some() {
                    return self.ask_for_embedding(state, plan, ticket, result);
                }
                self.cache_ticket = Some(ticket);
                result
            }
        };
        self.cache_proceeds(&mut plan, result);
        CacheStep::Proceed(Box::new(plan))
    }

    /// The request goes to a provider: the response says what the cache did.
    fn cache_proceeds(&mut self, plan: &mut RequestPlan, result: CacheResult) {
        self.cache_report = Some(CacheReport {
            result,
            hit: None,
            semantic: false,
        });
        plan.response_headers.push((HEADER_CACHE, result.name().to_string()));
    }

    /// Sends the embeddings call of a semantic lookup and holds the request
    /// for it; a call that cannot be sent is a miss.
    fn ask_for_embedding(
        &mut self,
        state: &Loaded,
        mut plan: RequestPlan,
        ticket: CacheTicket,
        result: CacheResult,
    ) -> CacheStep {
        let config = &state.config;
        let (Some(semantic), Some(probe)) = (config.cache.semantic.as_ref(), ticket.semantic.as_ref()) else {
            self.cache_ticket = Some(ticket);
            self.cache_proceeds(&mut plan, result);
            return CacheStep::Proceed(Box::new(plan));
        };
        let sent = semantic::embedding_call(config, semantic.model, &probe.text, host::now_ms() / 1000)
            .ok()
            .and_then(|call| {
                let headers = call
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                host::dispatch(&call.cluster, headers, &call.body, EMBEDDING_TIMEOUT).map(|token| (token, call))
            });
        let Some((token, call)) = sent else {
            count_embedding(state, false);
            self.cache_ticket = Some(ticket);
            self.cache_proceeds(&mut plan, result);
            return CacheStep::Proceed(Box::new(plan));
        };
        self.semantic_wait = Some(SemanticWait {
            token,
            call,
            plan,
            ticket,
            result,
        });
        CacheStep::Answered(Action::Pause)
    }

    /// The embedding came (or not): a near-duplicate's entry answers, or the
    /// request goes on as a miss, to be indexed once its answer is kept.
    pub(super) fn embedding_answered(&mut self, state: &Loaded, status: u16, body: &[u8]) -> Action {
        let Some(SemanticWait {
            call,
            mut plan,
            ticket,
            result,
            ..
        }) = self.semantic_wait.take()
        else {
            return Action::Pause;
        };
        let config = &state.config;
        let now = host::now_ms();
        let vector =
            semantic::read_answer(config, &call, status, &[], body).and_then(|floats| Quantised::from_floats(&floats));
        count_embedding(state, vector.is_some());
        if vector.is_none() {
            log::info!("the semantic cache's embedding call failed (status {status}); the request goes on as a miss");
        }
        let tenant = self.tenant_name(config);
        if let (Some(vector), Some(probe), Some(layout), Some(exact)) = (
            vector,
            ticket.semantic.as_ref(),
            &state.semantic_layout,
            &state.cache_layout,
        ) {
            let found = semantic::search(
                &HostStore,
                layout,
                tenant.as_deref(),
                &probe.context,
                &vector,
                probe.threshold,
                now,
            );
            if let Some((key, similarity)) = found {
                if let Lookup::Hit(entry) = cache::lookup(&HostStore, exact, &key, now) {
                    if let Some(action) = self.answer_from_cache(state, &plan, &ticket, &entry, Some(similarity), now) {
                        return action;
                    }
                }
            }
            self.semantic_fill = Some((probe.context, vector));
        }
        self.cache_ticket = Some(ticket);
        self.cache_proceeds(&mut plan, result);
        self.admit(state, plan)
    }

    /// The calling tenant's configured name (tenants are keyed by name in
    /// the caches).
    fn tenant_name(&self, config: &Config) -> Option<String> {
        let tenant = self.identity.as_ref()?.tenant;
        Some(config.governance.as_ref()?.tenants.get(tenant)?.name.clone())
    }

    /// Replays a kept answer in the client's format and shape (whole or
    /// streamed); `None` when the entry cannot be replayed (a miss).
    fn answer_from_cache(
        &mut self,
        state: &Loaded,
        plan: &RequestPlan,
        ticket: &CacheTicket,
        entry: &Entry,
        similarity: Option<f32>,
        now: u64,
    ) -> Option<Action> {
        let config = &state.config;
        let id = format!("chatcmpl-{:016x}", state.rng.borrow_mut().next());
        let created = now / 1000;
        let chat = if ticket.stream {
            entry.replay_stream(&id, created, ticket.include_usage)?
        } else {
            entry.replay_whole(&id, created)
        };
        let (content_type, body) = match self.endpoint.ingress() {
            None if ticket.stream => (relay::EVENT_STREAM, chat),
            None => ("application/json", chat),
            Some(ingress) => match Relay::for_answer(ingress, 200, ticket.stream, &plan.requested_model, created) {
                // A kept answer the client's format cannot take is a miss.
                Relay::Whole { .. } => match relay::whole_answer(ingress, 200, &chat) {
                    (200, body) => ("application/json", body),
                    _ => return None,
                },
                Relay::Stream(mut encoder) => {
                    let mut events = Vec::with_capacity(chat.len() + 256);
                    encoder.push(&chat, &mut events);
                    encoder.finish(&mut events);
                    (relay::EVENT_STREAM, events)
                }
            },
        };
        let model = config.model_named(&entry.model);
        let saved = model.map_or(0, |model| {
            ledger::cost_micros(&config.models[model].price, &entry.usage)
        });
        self.cache_report = Some(CacheReport {
            result: CacheResult::Hit,
            hit: model.map(|model| (model, saved)),
            semantic: similarity.is_some(),
        });
        self.replayed = Some(Replayed {
            decision: plan.decision.clone(),
            requested_model: plan.requested_model.clone(),
        });
        // Audited as the whole chat answer it is, whatever shape it goes
        // out in (the reply's own body is not captured again).
        capture(self.audit.as_mut(), &entry.body);
        self.outcome = Some(Outcome::Ok);
        self.write_request_fields();
        let mut headers = plan.response_headers.clone();
        headers.push((HEADER_CACHE, CacheResult::Hit.name().to_string()));
        if let Some(similarity) = similarity {
            headers.push((HEADER_CACHE_SIMILARITY, format!("{similarity:.3}")));
        }
        headers.push((route::HEADER_MODEL, entry.model.clone()));
        host::send_reply(200, content_type, &headers, &body);
        self.phase = Phase::Replied;
        Some(Action::Pause)
    }

    /// Gathers a cacheable answer's (chat-format) bytes; an answer over the
    /// policy's entry size is dropped at once. Kept when complete.
    pub(super) fn capture_for_cache(&mut self, chunk: &[u8], end_of_stream: bool) {
        let (Some(captured), Some(ticket)) = (self.cache_capture.as_mut(), self.cache_ticket.as_ref()) else {
            return;
        };
        if !captured.feed(chunk, ticket.policy.max_entry_bytes) {
            self.cache_capture = None;
            return;
        }
        if end_of_stream {
            if let Some(state) = self.state.clone() {
                self.keep_answer(&state);
            }
        }
    }

    /// Keeps a complete answer for the cache ticket's key.
    fn keep_answer(&mut self, state: &Loaded) {
        let (Some(ticket), Some(captured), Some(layout)) =
            (self.cache_ticket.take(), self.cache_capture.take(), &state.cache_layout)
        else {
            return;
        };
        // What the provider reported, whatever the client asked to see.
        let usage = shared::answer_usage(self.context_id);
        let Some(answer) = captured.finish(usage) else {
            return;
        };
        let Ok(stored) = cache::admit_answer(&ticket.policy, 200, &answer) else {
            return;
        };
        let config = &state.config;
        let Some(deployment) = read_trail(config, self.context_id)
            .last()
            .map(|record| record.deployment)
        else {
            return;
        };
        let answered_by = config.deployments[deployment].model;
        if !ticket.kept_from(config, answered_by) {
            return;
        }
        let model = &config.models[answered_by].name;
        let now = host::now_ms();
        let entry = Entry::new(
            ticket.key,
            model,
            stored.usage.or(usage).unwrap_or_default(),
            answer,
            now,
            ticket.policy.ttl_ms,
        );
        if let Err(error) = cache::insert(&HostStore, layout, &entry, now) {
            log::debug!("an answer was not cached: {error:?}");
            return;
        }
        if let (Some((context, vector)), Some(semantic)) = (self.semantic_fill.take(), &state.semantic_layout) {
            let tenant = self.tenant_name(config);
            let added = semantic::add(
                &HostStore,
                semantic,
                tenant.as_deref(),
                context,
                vector,
                entry.key,
                entry.expires_ms,
                now,
            );
            if let Err(error) = added {
                log::debug!("an answer was not indexed for near-duplicates: {error:?}");
            }
        }
    }
}

/// Counts a semantic lookup's embeddings call (an outage of the embedding
/// model shows as `failed`, each costing its request up to the timeout).
fn count_embedding(state: &Loaded, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    let sample = Sample::new(Family::CacheEmbeddings, &[Label::Fixed("result", result)], 1);
    state.metrics.emit(&state.config, &[sample]);
}
