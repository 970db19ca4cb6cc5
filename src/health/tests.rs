use super::*;

fn settings() -> HealthSettings {
    HealthSettings {
        half_life_ms: 10_000,
        breaker: BreakerSettings {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_requests: 10.0,
            open_ms: 1_000,
            max_open_ms: 8_000,
            half_open_trials: 2,
        },
        slow_ms: 1_000,
        lease_ms: 60_000,
    }
}

fn ok(latency_ms: u64) -> AttemptOutcome {
    AttemptOutcome {
        failure: None,
        retry_after_ms: None,
        latency_ms,
        first_token_ms: Some(latency_ms / 2),
    }
}

fn failed(kind: FailureKind) -> AttemptOutcome {
    AttemptOutcome {
        failure: Some(kind),
        retry_after_ms: None,
        latency_ms: 10,
        first_token_ms: None,
    }
}

fn attempt(health: &mut DeploymentHealth, now: u64, outcome: AttemptOutcome) -> Option<Transition> {
    trial_attempt(health, now, None, outcome)
}

fn trial_attempt(
    health: &mut DeploymentHealth,
    now: u64,
    trial: Option<LeaseToken>,
    outcome: AttemptOutcome,
) -> Option<Transition> {
    let in_flight = health.begin_attempt(now, &settings());
    health.finish_attempt(now, AttemptLease { in_flight, trial }, Some(&outcome), &settings())
}

#[test]
fn consecutive_failures_open_the_circuit() {
    let mut health = DeploymentHealth::default();
    assert_eq!(attempt(&mut health, 100, failed(FailureKind::Server)), None);
    assert_eq!(attempt(&mut health, 200, failed(FailureKind::Timeout)), None);
    assert_eq!(
        attempt(&mut health, 300, failed(FailureKind::Unreachable)),
        Some(Transition::Opened { until_ms: 1_300 })
    );
    assert_eq!(
        health.availability(500, &settings()),
        Availability::Open { until_ms: 1_300 }
    );
    assert_eq!(health.score(500, &settings()), 0.0);
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let mut health = DeploymentHealth::default();
    attempt(&mut health, 100, failed(FailureKind::Server));
    attempt(&mut health, 200, failed(FailureKind::Server));
    attempt(&mut health, 300, ok(100));
    assert_eq!(attempt(&mut health, 400, failed(FailureKind::Server)), None);
    assert_eq!(health.availability(500, &settings()), Availability::Available);
}

#[test]
fn a_high_failure_rate_opens_the_circuit_once_enough_requests_were_seen() {
    let mut health = DeploymentHealth::default();
    let mut opened = None;
    for step in 0..20u64 {
        let outcome = if step % 2 == 0 {
            ok(50)
        } else {
            failed(FailureKind::Server)
        };
        opened = opened.or(attempt(&mut health, 100 + step, outcome));
    }
    assert!(matches!(opened, Some(Transition::Opened { .. })));
}

#[test]
fn client_errors_do_not_count_against_the_deployment() {
    let mut health = DeploymentHealth::default();
    for step in 0..10 {
        assert_eq!(attempt(&mut health, step, failed(FailureKind::Client)), None);
        attempt(&mut health, step, failed(FailureKind::ContextLength));
    }
    assert_eq!(health.availability(20, &settings()), Availability::Available);
    assert_eq!(health.failure_rate(), 0.0);
    assert!((health.failures_of(FailureKind::Client) - 10.0).abs() < 0.01);
}

#[test]
fn after_the_open_period_a_bounded_number_of_trials_may_go_through() {
    let mut health = DeploymentHealth::default();
    for now in [1, 2, 3] {
        attempt(&mut health, now, failed(FailureKind::Server));
    }
    let settings = settings();
    assert!(health.claim_trial(500, &settings).is_none(), "still open");
    assert_eq!(health.availability(1_003, &settings), Availability::NeedsTrial);
    assert!(health.claim_trial(1_003, &settings).is_some());
    assert!(health.claim_trial(1_004, &settings).is_some());
    assert!(health.claim_trial(1_005, &settings).is_none(), "two trials at most");
    assert_eq!(health.availability(1_005, &settings), Availability::TrialsBusy);
}

#[test]
fn a_trial_slot_never_used_is_given_back_or_expires_on_its_own() {
    let mut health = DeploymentHealth::default();
    for now in [1, 2, 3] {
        attempt(&mut health, now, failed(FailureKind::Server));
    }
    let settings = settings();
    let first = health.claim_trial(1_003, &settings).unwrap();
    health.claim_trial(1_004, &settings).unwrap();
    assert_eq!(health.availability(1_005, &settings), Availability::TrialsBusy);
    health.release_trial(first);
    assert_eq!(health.availability(1_006, &settings), Availability::NeedsTrial);
    health.claim_trial(1_006, &settings).unwrap();
    assert_eq!(health.availability(1_007, &settings), Availability::TrialsBusy);
    // Holders that never come back (a worker died) stop counting after the lease.
    let later = 1_007 + settings.lease_ms * 4 / 3 + 1;
    assert_eq!(health.availability(later, &settings), Availability::NeedsTrial);
}

#[test]
fn an_attempt_that_says_nothing_about_the_provider_only_gives_its_leases_back() {
    let mut health = DeploymentHealth::default();
    for now in [1, 2, 3] {
        attempt(&mut health, now, failed(FailureKind::Server));
    }
    let settings = settings();
    let trial = health.claim_trial(1_003, &settings);
    let in_flight = health.begin_attempt(1_003, &settings);
    let before = health;
    assert_eq!(
        health.finish_attempt(1_010, AttemptLease { in_flight, trial }, None, &settings),
        None
    );
    assert_eq!(health.in_flight(1_010, &settings), 0);
    assert_eq!(health.requests(), before.requests(), "nothing recorded");
    assert_eq!(health.availability(1_010, &settings), Availability::NeedsTrial);
}

#[test]
fn a_successful_trial_closes_and_a_failed_one_reopens_for_longer() {
    let settings = settings();
    let mut health = DeploymentHealth::default();
    for now in [1, 2, 3] {
        attempt(&mut health, now, failed(FailureKind::Server));
    }
    let trial = health.claim_trial(1_003, &settings);
    let reopened = trial_attempt(&mut health, 1_010, trial, failed(FailureKind::Server));
    assert_eq!(
        reopened,
        Some(Transition::Opened {
            until_ms: 1_010 + 2_000
        }),
        "second opening waits twice as long"
    );
    let trial = health.claim_trial(3_010, &settings);
    assert!(trial.is_some());
    assert_eq!(
        trial_attempt(&mut health, 3_020, trial, ok(80)),
        Some(Transition::Closed)
    );
    assert_eq!(health.availability(3_021, &settings), Availability::Available);
    assert_eq!(health.reopenings, 0);
}

#[test]
fn retry_after_on_a_429_cools_the_deployment_down() {
    let mut health = DeploymentHealth::default();
    let limited = AttemptOutcome {
        retry_after_ms: Some(5_000),
        ..failed(FailureKind::RateLimited)
    };
    attempt(&mut health, 1_000, limited);
    assert_eq!(
        health.availability(2_000, &settings()),
        Availability::CoolingDown { until_ms: 6_000 }
    );
    assert_eq!(health.availability(6_000, &settings()), Availability::Available);
}

#[test]
fn a_successful_probe_closes_an_open_circuit_while_no_traffic_flows() {
    let mut health = DeploymentHealth::default();
    for now in [1, 2, 3] {
        attempt(&mut health, now, failed(FailureKind::Unreachable));
    }
    assert_eq!(
        health.record_probe(500, &failed(FailureKind::Unreachable), &settings()),
        None
    );
    assert_eq!(health.record_probe(600, &ok(40), &settings()), Some(Transition::Closed));
    assert_eq!(health.availability(601, &settings()), Availability::Available);
}

#[test]
fn counts_fade_with_the_half_life() {
    let mut health = DeploymentHealth::default();
    attempt(&mut health, 1_000, failed(FailureKind::Server));
    attempt(&mut health, 11_000, ok(10));
    assert!((health.failures_of(FailureKind::Server) - 0.5).abs() < 0.01);
    assert!((health.successes - 1.0).abs() < 0.01);
}

#[test]
fn the_score_falls_with_failures_and_with_slowness() {
    let settings = settings();
    let fresh = DeploymentHealth::default();
    assert_eq!(fresh.score(0, &settings), 0.5);
    let mut fast = DeploymentHealth::default();
    let mut slow = DeploymentHealth::default();
    let mut flaky = DeploymentHealth::default();
    for step in 0..20 {
        attempt(&mut fast, step, ok(100));
        attempt(&mut slow, step, ok(8_000));
        attempt(
            &mut flaky,
            step,
            if step % 3 == 0 {
                failed(FailureKind::Client)
            } else {
                ok(100)
            },
        );
    }
    assert!(fast.score(30, &settings) > 0.9);
    assert!(slow.score(30, &settings) < fast.score(30, &settings) * 0.5);
    attempt(&mut flaky, 25, failed(FailureKind::Server));
    assert!(flaky.score(30, &settings) < fast.score(30, &settings));
}

#[test]
fn in_flight_counts_attempts_and_forgets_leaks() {
    let settings = settings();
    let mut health = DeploymentHealth::default();
    let first = health.begin_attempt(0, &settings);
    health.begin_attempt(1, &settings);
    assert_eq!(health.in_flight(1, &settings), 2);
    let lease = AttemptLease {
        in_flight: first,
        trial: None,
    };
    health.finish_attempt(2, lease, Some(&ok(1)), &settings);
    assert_eq!(health.in_flight(2, &settings), 1);
    health.begin_attempt(100_000, &settings);
    assert_eq!(
        health.in_flight(100_000, &settings),
        1,
        "the leaked attempt was forgotten"
    );
}

#[test]
fn the_record_round_trips_through_its_encoding() {
    let mut health = DeploymentHealth::default();
    for now in [1, 2, 3] {
        attempt(&mut health, now, failed(FailureKind::Server));
    }
    attempt(&mut health, 5_000, ok(300));
    health.begin_attempt(5_001, &settings());
    let decoded = DeploymentHealth::decode(&health.encode()).unwrap();
    assert_eq!(decoded, health);
    let mut truncated = health.encode();
    truncated.pop();
    assert_eq!(DeploymentHealth::decode(&truncated), None);
    assert_eq!(DeploymentHealth::decode(b"\x01garbage"), None);
}

#[test]
fn statuses_map_to_failure_kinds() {
    assert_eq!(FailureKind::from_status(200), None);
    assert_eq!(FailureKind::from_status(429), Some(FailureKind::RateLimited));
    assert_eq!(FailureKind::from_status(529), Some(FailureKind::Overloaded));
    assert_eq!(FailureKind::from_status(502), Some(FailureKind::Server));
    assert_eq!(FailureKind::from_status(401), Some(FailureKind::Auth));
    assert_eq!(FailureKind::from_status(504), Some(FailureKind::Timeout));
    assert_eq!(FailureKind::from_status(400), Some(FailureKind::Client));
}
