use super::*;
use crate::govern::keys::Identity;
use crate::govern::ledger::Consumed;
use crate::state::MemoryStore;
use crate::testing::{governed_config, tokens};

/// 2026-11-24T12:00:00Z.
const NOON: u64 = 1_795_521_600_000;

fn alice() -> Identity {
    Identity {
        tenant: 1,
        user: Some("alice".into()),
        key_name: "alice".into(),
    }
}

fn bob() -> Identity {
    Identity {
        tenant: 1,
        user: Some("bob".into()),
        key_name: "bob".into(),
    }
}

#[test]
fn tenants_are_resolved_in_name_order() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    assert_eq!(governance.tenants[1].name, "research");
}

#[test]
fn the_user_limit_refuses_and_gives_the_tenant_booking_back() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    let store = MemoryStore::default();
    admit(&governance.tenants[1], &store, &alice(), tokens(10), NOON).unwrap();
    admit(&governance.tenants[1], &store, &alice(), tokens(10), NOON).unwrap();
    let refused = admit(&governance.tenants[1], &store, &alice(), tokens(10), NOON).unwrap_err();
    assert!(
        matches!(
            refused,
            Denial::Rate {
                scope: "user",
                retry_after_ms: Some(_),
                ..
            }
        ),
        "{refused:?}"
    );
    // The tenant's third request slot was given back: bob still fits.
    admit(&governance.tenants[1], &store, &bob(), tokens(10), NOON).unwrap();
    assert!(matches!(
        admit(&governance.tenants[1], &store, &bob(), tokens(10), NOON),
        Err(Denial::Rate { scope: "tenant", .. })
    ));
}

#[test]
fn concurrent_reservations_never_pass_the_quota_together() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    let store = MemoryStore::default();
    // 1,200-token requests against a 5,000-token day: four fit, whatever the interleaving.
    let mut admitted = Vec::new();
    for minute in 0..20 {
        let identity = if minute % 2 == 0 { alice() } else { bob() };
        if let Ok(admission) = admit(
            &governance.tenants[1],
            &store,
            &identity,
            tokens(1_200),
            NOON + minute * 61_000,
        ) {
            admitted.push(admission);
        }
    }
    assert_eq!(admitted.len(), 4);
    let refused = admit(
        &governance.tenants[1],
        &store,
        &alice(),
        tokens(1_200),
        NOON + 30 * 61_000,
    )
    .unwrap_err();
    assert!(
        matches!(
            refused,
            Denial::Quota {
                period: Period::Day,
                dimension: "tokens",
                ..
            }
        ),
        "{refused:?}"
    );
}

#[test]
fn settling_below_the_estimate_frees_room_and_records_cost() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    let store = MemoryStore::default();
    let small = config.model_named("small").unwrap();
    let admission = admit(&governance.tenants[1], &store, &alice(), tokens(4_000), NOON).unwrap();
    assert!(
        admit(&governance.tenants[1], &store, &bob(), tokens(2_000), NOON).is_err(),
        "4,000 + 2,000 > 5,000"
    );
    let usage = TokenUsage {
        input: 300,
        cached_input: 0,
        cache_write: 0,
        output: 200,
    };
    let (cost, _) = settle(
        &config,
        &governance.tenants[1],
        &store,
        &admission,
        &served(small, usage),
        NOON + 1_000,
    );
    // gpt-4o-mini: 300 × 0.15 + 200 × 0.6 micro-USD.
    assert_eq!(cost, 165);
    admit(&governance.tenants[1], &store, &bob(), tokens(2_000), NOON + 2_000).unwrap();
    let ledger: LedgerRecord = crate::state::read(&store, &ledger_key(&governance.tenants[1], "small")).unwrap();
    assert_eq!(
        (ledger.requests, ledger.cost_micros, ledger.usage.output),
        (1, 165, 200)
    );
}

/// One attempt on `model` that reported `usage`.
fn served(model: ModelId, usage: TokenUsage) -> Consumption {
    Consumption(vec![Consumed {
        model,
        usage,
        estimated: false,
    }])
}

#[test]
fn every_attempt_that_consumed_is_billed_on_its_own_model() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    let store = MemoryStore::default();
    let small = config.model_named("small").unwrap();
    let large = config.model_named("large").unwrap();
    let admission = admit(&governance.tenants[1], &store, &alice(), tokens(4_000), NOON).unwrap();
    let usage = |input, output| TokenUsage {
        input,
        output,
        ..TokenUsage::default()
    };
    // The first attempt timed out after the provider did work (estimated),
    // the second answered with its usage.
    let consumption = Consumption(vec![
        Consumed {
            model: large,
            usage: usage(100, 0),
            estimated: true,
        },
        Consumed {
            model: small,
            usage: usage(100, 50),
            estimated: false,
        },
    ]);
    let (cost, _) = settle(
        &config,
        &governance.tenants[1],
        &store,
        &admission,
        &consumption,
        NOON + 1_000,
    );
    // large: 100 × 2.5; small: 100 × 0.15 + 50 × 0.6.
    assert_eq!(cost, 250 + 15 + 30);
    let ledger = |model: &str| -> LedgerRecord {
        crate::state::read(&store, &ledger_key(&governance.tenants[1], model)).unwrap()
    };
    assert_eq!((ledger("large").requests, ledger("large").estimated), (1, 1));
    assert_eq!((ledger("small").cost_micros, ledger("small").estimated), (45, 0));
}

#[test]
fn a_failed_request_releases_its_reservation_without_charging_tokens() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    let store = MemoryStore::default();
    let admission = admit(&governance.tenants[1], &store, &alice(), tokens(4_900), NOON).unwrap();
    settle(
        &config,
        &governance.tenants[1],
        &store,
        &admission,
        &Consumption::default(),
        NOON + 500,
    );
    admit(&governance.tenants[1], &store, &bob(), tokens(4_900), NOON + 61_000).unwrap();
}

#[test]
fn the_soft_alert_is_reported_once() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    let store = MemoryStore::default();
    let small = config.model_named("small").unwrap();
    let mut alerts = Vec::new();
    for step in 0..4 {
        let admission = admit(
            &governance.tenants[1],
            &store,
            &alice(),
            tokens(1_000),
            NOON + step * 61_000,
        )
        .unwrap();
        let usage = TokenUsage {
            input: 500,
            cached_input: 0,
            cache_write: 0,
            output: 500,
        };
        alerts.extend(
            settle(
                &config,
                &governance.tenants[1],
                &store,
                &admission,
                &served(small, usage),
                NOON + step * 61_000 + 1,
            )
            .1,
        );
    }
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].period, Period::Day);
    assert!(past_soft_threshold(&store, &governance.tenants[1], NOON + 300_000));
}

#[test]
fn admission_survives_contention() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    let store = MemoryStore::default();
    store.inject_conflicts(5);
    admit(&governance.tenants[1], &store, &alice(), tokens(10), NOON).unwrap();
}

fn bounds(links: &[ModelId], output_limit: Option<u64>, choices: u64, stream: bool) -> Bounds<'_> {
    Bounds {
        links,
        prompt_tokens: 1_000,
        output_limit,
        choices,
        predicted_output: 0,
        stream,
        escalation_link: None,
    }
}

#[test]
fn a_prediction_is_reserved_as_output_beyond_max_tokens() {
    let config = governed_config();
    let links = [config.model_named("small").unwrap()];
    let predicted = Bounds {
        predicted_output: 5_000,
        ..bounds(&links, Some(10), 1, false)
    };
    let amounts = estimate(&config, &predicted, 512);
    // Rejected prediction tokens are billed as output: max_tokens does not bound them.
    assert_eq!(amounts.tokens, 1_000 + 10 + 5_000);
    // small: 1000 × 0.15 + 5010 × 0.6.
    assert_eq!(amounts.cost_micros, 150 + 3_006);
}

#[test]
fn the_cost_of_a_whole_answer_is_reserved_on_every_link_of_its_chain() {
    let config = governed_config();
    let links = [
        config.model_named("small").unwrap(),
        config.model_named("large").unwrap(),
    ];
    // Each link can be billed its prompt and, when its attempt times out
    // after the provider generated the answer, its whole output.
    let amounts = estimate(&config, &bounds(&links, Some(1_000), 1, false), 512);
    assert_eq!(amounts.tokens, 1_000 + 1_000, "tokens bound one attempt");
    // small: 1000 × 0.15 + 1000 × 0.6; large: 1000 × 2.5 + 1000 × 10.
    assert_eq!(amounts.cost_micros, 150 + 600 + 2_500 + 10_000);
}

#[test]
fn a_cascading_request_reserves_the_tokens_of_both_its_answers() {
    let config = governed_config();
    let links = [
        config.model_named("small").unwrap(),
        config.model_named("small").unwrap(),
        config.model_named("large").unwrap(),
    ];
    let cascading = Bounds {
        escalation_link: Some(2),
        ..bounds(&links, Some(1_000), 1, false)
    };
    let amounts = estimate(&config, &cascading, 512);
    assert_eq!(
        amounts.tokens,
        2 * (1_000 + 1_000),
        "the cheap answer and the strong one"
    );
    let plain = estimate(&config, &bounds(&links, Some(1_000), 1, false), 512);
    assert_eq!(amounts.cost_micros, plain.cost_micros, "cost already bounds every link");
}

#[test]
fn a_stream_reserves_every_prompt_but_only_the_dearest_output() {
    let config = governed_config();
    let links = [
        config.model_named("small").unwrap(),
        config.model_named("large").unwrap(),
    ];
    let amounts = estimate(&config, &bounds(&links, Some(1_000), 1, true), 512);
    assert_eq!(amounts.tokens, 1_000 + 1_000);
    assert_eq!(amounts.cost_micros, 150 + 2_500 + 10_000);
}

#[test]
fn an_estimate_bounds_every_answer_asked_for() {
    let mut config = governed_config();
    let large = config.model_named("large").unwrap();
    config.models[large].max_output_tokens = Some(4_000);
    let links = [large];
    // No max_tokens: the model's own maximum, for each of the n answers.
    let amounts = estimate(&config, &bounds(&links, None, 3, false), 512);
    assert_eq!(amounts.tokens, 1_000 + 3 * 4_000);
    assert_eq!(amounts.cost_micros, 2_500 + 12_000 * 10);
    // Without a model maximum the default reservation stands in.
    config.models[large].max_output_tokens = None;
    assert_eq!(
        estimate(&config, &bounds(&links, None, 2, false), 512).tokens,
        1_000 + 1_024
    );
}

#[test]
fn records_made_before_traffic_keep_the_first_reservations_from_racing() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    let store = MemoryStore::default();
    ensure_records(&config, governance, &store);
    let mut tenant = governance.tenants[1].clone();
    tenant.quotas.truncate(1);
    tenant.quotas[0].caps = crate::govern::quota::Caps {
        requests: Some(1),
        ..Default::default()
    };
    let key = account_key(&tenant);
    let one = Amounts {
        requests: 1,
        ..Amounts::default()
    };
    let mut second = None;
    // Worker A reads the account; before its write lands, worker B runs its
    // whole admission: A's write then conflicts and A reads again.
    let (_, first) = update::<Account, _>(&store, &key, |account| {
        if second.is_none() {
            second = Some(update::<Account, _>(&store, &key, |account| {
                account.book(&tenant, one, NOON)
            }));
        }
        account.book(&tenant, one, NOON)
    })
    .unwrap();
    let (_, second) = second.unwrap().unwrap();
    assert!(!(first.is_ok() && second.is_ok()), "both passed a cap of one");
}

#[test]
fn a_refused_quota_gives_the_tenant_window_back() {
    let config = governed_config();
    let governance = config.governance.as_ref().unwrap();
    let tenant = &governance.tenants[1];
    let store = MemoryStore::default();
    ensure_records(&config, governance, &store);
    let before: Account = crate::state::read(&store, &account_key(tenant)).unwrap();
    // Far over the day's token quota, well within the minute's requests.
    let refused = admit(tenant, &store, &alice(), tokens(10_000_000), NOON).unwrap_err();
    assert!(
        matches!(refused, Denial::Quota { .. } | Denial::Rate { .. }),
        "{refused:?}"
    );
    let after: Account = crate::state::read(&store, &account_key(tenant)).unwrap();
    assert_eq!(after.window, before.window);
    assert!(after.quotas.iter().all(|quota| quota.reserved == Amounts::default()));
}
