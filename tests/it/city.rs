//! The whole city in one story: 554 schools, 12 relays and the city converge, and the city's
//! figures are the bureau's.

/// 1. Chengde's 554 schools record a school day, syncing through their county relays with seeded
///    connectivity (some flaky, some offline); 2. every school comes online; 3. the city holds
///    every school's documents, and its report shows 554 schools, 385,679 students and 96.67 %.
#[test]
fn chengde_in_one_day() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = schoolsync_sim::SimConfig {
        days: 1,
        seed: 7,
        forward_interval_ms: 300,
    };
    let report = rt
        .block_on(schoolsync_sim::run(&config, &|line| eprintln!("{line}")))
        .unwrap();
    assert_eq!(
        (
            report.schools,
            report.primary_schools,
            report.junior_schools
        ),
        (554, 448, 106)
    );
    assert_eq!(report.students, 385_679);
    assert_eq!(report.participants, 372_836);
    assert_eq!(format!("{:.2}", report.participation_pct), "96.67");
    assert_eq!(report.failed_attempts, 0);
    // The oversight aggregates (what the API and dashboard read) say the same.
    assert_eq!(report.oversight_received, 554);
    assert_eq!(
        format!("{:.2}", report.oversight_participation_pct),
        "96.67"
    );
}
