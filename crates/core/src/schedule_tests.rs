//! Table tests of the next-fire computation: every field form, month ends,
//! leap days, both DST transitions in a zone that has them (New York), a
//! zone that has none (Tokyo), and the catch-up planner.

use super::*;

/// A time written with any offset, as an oj timestamp.
fn ts(text: &str) -> Timestamp {
    let i: Instant = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    timestamp(i)
}

fn zone(name: &str) -> TimeZone {
    parse_zone(name, &TimeZone::UTC).unwrap()
}

fn cron(text: &str) -> CronExpr {
    CronExpr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn accepted_expressions() {
    for text in [
        "* * * * *",
        "*/15 * * * *",
        "0 3 * * *",
        "5,35 9-17 * * 1-5",
        "0 0 1 * *",
        "0 0 * * SUN",
        "0 12 1 JAN,JUL *",
        "0 0 * * 7",
        "15 14 1 * *",
        "0 22 * * 1-5",
        "23 0-20/2 * * *",
        "  0 4 * * *  ",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@ANNUALLY",
    ] {
        assert!(CronExpr::parse(text).is_ok(), "{text} refused");
    }
}

#[test]
fn refused_expressions_say_why() {
    for (text, why) in [
        ("", "empty"),
        ("@reboot", "@reboot is not supported"),
        ("@every 5m", "not a known shorthand"),
        ("0 0 0 * * *", "seconds"),
        ("* * *", "3 field(s)"),
        ("0 0 L * *", "`L`"),
        ("0 0 15W * *", "`W`"),
        ("0 0 * * 5#3", "`#`"),
        ("0 0 ? * *", "`?`"),
        ("0 0 * * 5L", "`L`"),
        ("0 0 * * +5", "`+`"),
        ("60 * * * *", "not a valid cron expression"),
        ("* 24 * * *", "not a valid cron expression"),
        ("* * 0 * *", "not a valid cron expression"),
        ("* * * 13 *", "not a valid cron expression"),
        ("a b c d e", "not a valid cron expression"),
    ] {
        let e = CronExpr::parse(text).expect_err(text).to_string();
        assert!(e.contains(why), "{text:?}: {e}");
        assert!(e.contains("five fields"), "{text:?}: {e}");
    }
}

#[test]
fn next_fire_in_utc_for_every_field_form() {
    let utc = TimeZone::UTC;
    for (expr, after, want) in [
        // every minute; strictly after, seconds ignored
        ("* * * * *", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
        (
            "* * * * *",
            "2026-01-01T00:00:59.900Z",
            "2026-01-01T00:01:00Z",
        ),
        // steps, lists, ranges
        (
            "*/15 * * * *",
            "2026-01-01T00:07:30Z",
            "2026-01-01T00:15:00Z",
        ),
        (
            "5,35 * * * *",
            "2026-01-01T00:06:00Z",
            "2026-01-01T00:35:00Z",
        ),
        (
            "0 9-17 * * *",
            "2026-01-01T17:00:00Z",
            "2026-01-02T09:00:00Z",
        ),
        (
            "23 0-20/2 * * *",
            "2026-01-01T01:00:00Z",
            "2026-01-01T02:23:00Z",
        ),
        // a fixed time is strictly after: the same instant is not repeated
        ("0 3 * * *", "2026-01-01T03:00:00Z", "2026-01-02T03:00:00Z"),
        // month ends: the 31st skips months without one
        ("0 0 31 * *", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z"),
        ("0 0 31 * *", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("0 0 30 * *", "2026-01-30T00:00:00Z", "2026-03-30T00:00:00Z"),
        // leap days
        ("0 0 29 2 *", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"),
        (
            "0 12 28-29 2 *",
            "2028-02-28T12:00:00Z",
            "2028-02-29T12:00:00Z",
        ),
        (
            "0 12 28-29 2 *",
            "2027-02-28T12:00:00Z",
            "2028-02-28T12:00:00Z",
        ),
        // day of week by number (0 and 7 are Sunday) and by name
        ("0 0 * * 0", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
        ("0 0 * * 7", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
        (
            "0 0 * * SUN",
            "2026-01-01T00:00:00Z",
            "2026-01-04T00:00:00Z",
        ),
        (
            "0 22 * * 1-5",
            "2026-01-02T22:00:00Z",
            "2026-01-05T22:00:00Z",
        ),
        // months by name
        (
            "0 12 1 JAN,JUL *",
            "2026-01-01T12:00:00Z",
            "2026-07-01T12:00:00Z",
        ),
        // crontab(5): both day fields restricted = either matches
        // (2026-01-02 is a Friday; AND would wait for Friday 13 February)
        ("0 0 13 * 5", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
        ("0 0 13 * 5", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z"),
        // one of them `*`: only the other counts
        ("0 0 13 * *", "2026-01-01T00:00:00Z", "2026-01-13T00:00:00Z"),
        ("0 0 * * 5", "2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"),
        // shorthands
        ("@hourly", "2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z"),
        ("@daily", "2026-01-01T00:30:00Z", "2026-01-02T00:00:00Z"),
        ("@weekly", "2026-01-01T00:30:00Z", "2026-01-04T00:00:00Z"),
        ("@monthly", "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z"),
        ("@yearly", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ] {
        assert_eq!(
            next_fire(&cron(expr), ts(after), &utc),
            Some(ts(want)),
            "{expr} after {after}"
        );
    }
}

#[test]
fn an_expression_that_never_matches_has_no_next_fire() {
    assert_eq!(
        next_fire(
            &cron("0 0 30 2 *"),
            ts("2026-01-01T00:00:00Z"),
            &TimeZone::UTC
        ),
        None
    );
}

#[test]
fn dst_in_new_york_follows_section_8_3() {
    // 2026-03-08 02:00 EST jumps to 03:00 EDT (07:00Z);
    // 2026-11-01 02:00 EDT falls back to 01:00 EST (06:00Z).
    let ny = zone("America/New_York");
    for (expr, after, want, why) in [
        // spring forward, fixed time in the gap: once, at the first instant after it
        (
            "30 2 * * *",
            "2026-03-08T00:00:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "gap, fixed",
        ),
        (
            "30 2 * * *",
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:30:00-04:00",
            "the day after the gap",
        ),
        (
            "0 2 * * *",
            "2026-03-07T02:00:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "gap at its start",
        ),
        // spring forward, wall-clock entries skip the missing times
        (
            "*/30 * * * *",
            "2026-03-08T01:45:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "gap, interval",
        ),
        (
            "30 * * * *",
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:30:00-04:00",
            "gap, hourly",
        ),
        // fixed times around the gap are unaffected
        (
            "30 1 * * *",
            "2026-03-07T12:00:00-05:00",
            "2026-03-08T01:30:00-05:00",
            "before the gap",
        ),
        (
            "30 3 * * *",
            "2026-03-08T01:59:00-05:00",
            "2026-03-08T03:30:00-04:00",
            "after the gap",
        ),
        // fall back, fixed time in the repeat: once, at its first occurrence
        (
            "30 1 * * *",
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "repeat, first",
        ),
        (
            "30 1 * * *",
            "2026-11-01T01:30:00-04:00",
            "2026-11-02T01:30:00-05:00",
            "repeat, not twice",
        ),
        // fall back, wall-clock entries fire at both occurrences
        (
            "30 * * * *",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:30:00-05:00",
            "repeat, hourly",
        ),
        (
            "*/20 * * * *",
            "2026-11-01T01:40:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "repeat, interval",
        ),
        // 02:00 exists once on the fall-back day
        (
            "0 2 * * *",
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T02:00:00-05:00",
            "after the repeat",
        ),
    ] {
        assert_eq!(
            next_fire(&cron(expr), ts(after), &ny),
            Some(ts(want)),
            "{why}: {expr} after {after}"
        );
    }
}

#[test]
fn a_zone_without_dst_keeps_its_offset_all_year() {
    let tokyo = zone("Asia/Tokyo");
    for (expr, after, want) in [
        ("0 9 * * *", "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z"),
        ("30 2 * * *", "2026-03-07T18:00:00Z", "2026-03-08T17:30:00Z"),
        ("30 1 * * *", "2026-10-31T17:00:00Z", "2026-11-01T16:30:00Z"),
        ("0 0 1 1 *", "2026-06-01T00:00:00Z", "2026-12-31T15:00:00Z"),
    ] {
        assert_eq!(
            next_fire(&cron(expr), ts(after), &tokyo),
            Some(ts(want)),
            "{expr} after {after}"
        );
    }
    assert_eq!(
        first_dst_note(
            &cron("30 2 * * *"),
            ts("2026-01-01T00:00:00Z"),
            ts("2027-01-01T00:00:00Z"),
            &tokyo
        ),
        None
    );
}

#[test]
fn next_three_fires_step_forward() {
    let fires = next_fires(
        &cron("0 */6 * * *"),
        ts("2026-01-01T01:00:00Z"),
        &TimeZone::UTC,
        3,
    );
    assert_eq!(
        fires,
        vec![
            ts("2026-01-01T06:00:00Z"),
            ts("2026-01-01T12:00:00Z"),
            ts("2026-01-01T18:00:00Z")
        ]
    );
}

#[test]
fn job_tables_build_specs_in_runbook_or_spec_shape() {
    let table = serde_json::json!({"env": {"A": "1"}, "step": [{"name": "s", "run": "true", "timeout": "5m"}]});
    let spec = job_spec("nightly", &table).unwrap();
    assert_eq!((spec.name.as_str(), spec.steps.len()), ("nightly", 1));
    let table = serde_json::json!({"name": "report", "steps": [{"name": "s", "run": "make"}]});
    assert_eq!(job_spec("nightly", &table).unwrap().name, "report");
    for (bad, why) in [
        (
            serde_json::json!({"vars": ["x"], "step": [{"name": "s", "run": "${var.x}"}]}),
            "x",
        ),
        (
            serde_json::json!({"step": [{"name": "s", "run": "${var.y}"}]}),
            "var.y",
        ),
        (serde_json::json!({"step": []}), "step"),
        (serde_json::json!({"stpe": []}), "stpe"),
    ] {
        let e = job_spec("nightly", &bad).expect_err(&bad.to_string());
        assert!(
            e.contains("schedules.nightly.job") || e.contains(why),
            "{e}"
        );
        assert!(e.contains(why), "{e}");
    }
}

#[test]
fn zones_are_iana_names_or_local() {
    let local = zone("Europe/Paris");
    assert_eq!(parse_zone("local", &local).unwrap(), local);
    assert_eq!(parse_zone("UTC", &local).unwrap(), TimeZone::UTC);
    assert!(parse_zone("Europe/Berlin", &local).is_ok());
    for bad in ["", "Mars/Olympus_Mons", "EST5EDT6", "../etc/passwd"] {
        let e = parse_zone(bad, &local).expect_err(bad).to_string();
        assert!(e.contains("IANA name"), "{e}");
    }
}

#[test]
fn dst_notes_name_gaps_and_repeats() {
    let ny = zone("America/New_York");
    let year = (ts("2026-01-01T00:00:00Z"), ts("2027-01-01T00:00:00Z"));
    let gap = first_dst_note(&cron("30 2 * * *"), year.0, year.1, &ny).unwrap();
    assert!(gap.gap);
    assert_eq!(gap.wall, "2026-03-08T02:30");
    assert!(
        gap.to_string()
            .contains("fires once at 2026-03-08T03:00:00-04:00"),
        "{gap}"
    );
    let repeat =
        first_dst_note(&cron("30 1 * * *"), ts("2026-06-01T00:00:00Z"), year.1, &ny).unwrap();
    assert!(!repeat.gap);
    assert_eq!(repeat.wall, "2026-11-01T01:30");
    assert!(repeat.to_string().contains("first occurrence"), "{repeat}");
    let hourly =
        first_dst_note(&cron("0 * * * *"), ts("2026-06-01T00:00:00Z"), year.1, &ny).unwrap();
    assert!(hourly.to_string().contains("both occurrences"), "{hourly}");
    assert_eq!(
        first_dst_note(&cron("0 12 * * *"), year.0, year.1, &ny),
        None
    );
    assert_eq!(
        first_dst_note(&cron("30 2 * * *"), year.0, year.1, &TimeZone::UTC),
        None
    );
}

#[test]
fn plan_runs_the_latest_missed_fire_within_the_window() {
    let c = cron("* * * * *");
    let utc = TimeZone::UTC;
    let day = Duration::from_secs(86_400);
    // nothing due yet
    assert_eq!(
        plan(
            &c,
            &utc,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-01T00:00:59Z"),
            CatchUp::Latest,
            day
        ),
        None
    );
    // on time: one fire, nothing missed
    assert_eq!(
        plan(
            &c,
            &utc,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-01T00:01:00.010Z"),
            CatchUp::Latest,
            day
        ),
        Some(Due {
            fire_time: ts("2026-01-01T00:01:00Z"),
            run: true,
            missed_before: 0,
            missed_until: None
        })
    );
    // two fires missed while down: one catch-up run for the newest
    assert_eq!(
        plan(
            &c,
            &utc,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-01T00:02:30Z"),
            CatchUp::Latest,
            day
        ),
        Some(Due {
            fire_time: ts("2026-01-01T00:02:00Z"),
            run: true,
            missed_before: 1,
            missed_until: Some(ts("2026-01-01T00:01:00Z"))
        })
    );
    // catch_up = none: late fires are missed, an on-time one runs
    assert_eq!(
        plan(
            &c,
            &utc,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-01T00:05:10Z"),
            CatchUp::None,
            day
        ),
        Some(Due {
            fire_time: ts("2026-01-01T00:05:00Z"),
            run: true,
            missed_before: 4,
            missed_until: Some(ts("2026-01-01T00:04:00Z"))
        })
    );
    let daily = cron("0 3 * * *");
    assert_eq!(
        plan(
            &daily,
            &utc,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-01T05:00:00Z"),
            CatchUp::None,
            day
        ),
        Some(Due {
            fire_time: ts("2026-01-01T03:00:00Z"),
            run: false,
            missed_before: 0,
            missed_until: None
        })
    );
    // older than catch_up_within: dropped (missed)
    assert_eq!(
        plan(
            &daily,
            &utc,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-01T05:00:00Z"),
            CatchUp::Latest,
            Duration::from_secs(3600)
        ),
        Some(Due {
            fire_time: ts("2026-01-01T03:00:00Z"),
            run: false,
            missed_before: 0,
            missed_until: None
        })
    );
    // weeks of downtime of a minute schedule stay cheap to plan
    let due = plan(
        &c,
        &utc,
        ts("2026-01-01T00:00:00Z"),
        ts("2026-03-01T00:00:30Z"),
        CatchUp::Latest,
        day,
    )
    .unwrap();
    assert_eq!(due.fire_time, ts("2026-03-01T00:00:00Z"));
    assert!(due.run);
    assert!(due.missed_before >= 1440, "{due:?}");
}
