//! Stories of a clerk's day at the command line, offline.

use crate::harness::*;

/// 1. A clerk records a day: attendance, homework and after-school, then reads the report.
#[test]
fn a_day_recorded_offline_and_reported() {
    let school = School::with_classes(2);
    school
        .agent(&[
            "attendance",
            "record",
            "--date",
            "2026-11-03",
            "--class",
            "3-1",
            "--expected",
            "45",
            "--present",
            "42",
            "--sick",
            "3",
            "--symptom",
            "fever=3",
        ])
        .ok();
    school
        .agent(&[
            "homework",
            "add",
            "--date",
            "2026-11-03",
            "--class",
            "3-1",
            "--subject",
            "数学",
            "--minutes",
            "40",
            "--content",
            "练习册P12",
        ])
        .ok();
    let second = school
        .agent(&[
            "homework",
            "add",
            "--date",
            "2026-11-03",
            "--class",
            "3-1",
            "--subject",
            "语文",
            "--minutes",
            "21",
            "--content",
            "作文",
        ])
        .ok();
    // 40 + 21 = 61 minutes of written homework at home in grade 3: a finding, not a refusal.
    assert!(
        second.stdout.contains("61 min, over the 60 min limit"),
        "{}",
        second.stdout
    );
    school
        .agent(&[
            "afterschool",
            "record",
            "--date",
            "2026-11-03",
            "--class",
            "3-1",
            "--participants",
            "44",
            "--start",
            "16:00",
            "--end",
            "18:00",
            "--content",
            "作业辅导、社团",
        ])
        .ok();

    let report = school
        .agent(&["report", "--date", "2026-11-03", "--json"])
        .ok()
        .json();
    let c1 = &report[0];
    assert_eq!(c1["class"]["class"], "3-1");
    assert_eq!(c1["attendance"]["present"], 42);
    assert_eq!(c1["homework"].as_array().unwrap().len(), 2);
    assert_eq!(c1["afterschool"]["participants"], 44);
    assert_eq!(c1["afterschool"]["enrolled"], 45);
    let codes: Vec<&str> = c1["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        vec!["written-minutes-over-limit", "illness-cluster-day"]
    );
    // The other class recorded nothing: the report says so rather than leaving it out.
    assert!(report[1]["attendance"].is_null());

    let text = school
        .agent(&["report", "--date", "2026-11-03", "--lang", "zh"])
        .ok()
        .stdout;
    assert!(
        text.contains("家庭书面作业合计 61 分钟，超过上限 60 分钟"),
        "{text}"
    );
    assert!(text.contains("症状：发热"), "{text}");

    let status = school.agent(&["status", "--json"]).ok().json();
    assert_eq!(status["school"], SCHOOL);
    assert_eq!(status["county_name"], "承德县");
    assert_eq!(status["classes"], 2);
}

/// 2. Hard rules refuse the entry with exit code 3 and a reason; nothing is stored.
#[test]
fn hard_errors_refuse_and_store_nothing() {
    let school = School::with_classes(1);
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "attendance",
                "record",
                "--date",
                "2026-11-03",
                "--class",
                "3-1",
                "--expected",
                "45",
                "--present",
                "40",
            ],
            "present 40 + absences 0 != expected 45",
        ),
        (
            &[
                "attendance",
                "record",
                "--date",
                "2026-11-03",
                "--class",
                "3-1",
                "--expected",
                "45",
                "--present",
                "46",
                "--sick",
                "-1",
            ],
            "sick is negative (-1)",
        ),
        (
            &[
                "attendance",
                "record",
                "--date",
                "2026-02-30",
                "--class",
                "3-1",
                "--expected",
                "45",
                "--present",
                "45",
            ],
            "date \"2026-02-30\" does not exist",
        ),
        (
            &[
                "attendance",
                "record",
                "--date",
                "2026-11-03",
                "--class",
                "9-9",
                "--expected",
                "45",
                "--present",
                "45",
            ],
            "class \"9-9\" does not exist",
        ),
        (
            &[
                "homework",
                "add",
                "--date",
                "2026-11-03",
                "--class",
                "3-1",
                "--subject",
                "数学",
                "--minutes",
                "1441",
            ],
            "1441 minutes is more than a day",
        ),
        (
            &[
                "afterschool",
                "record",
                "--date",
                "2026-11-03",
                "--class",
                "3-1",
                "--participants",
                "46",
                "--start",
                "16:00",
                "--end",
                "18:00",
            ],
            "participants 46 > enrolled 45",
        ),
        (
            &[
                "afterschool",
                "record",
                "--date",
                "2026-11-03",
                "--class",
                "3-1",
                "--participants",
                "40",
                "--start",
                "18:00",
                "--end",
                "16:00",
            ],
            "end 16:00 is not after start 18:00",
        ),
    ];
    for (args, reason) in cases {
        let run = school.agent(args);
        assert_eq!(run.code, 3, "{args:?}: {run:?}");
        assert!(run.stderr.contains(reason), "{args:?}: {}", run.stderr);
    }
    assert_eq!(school.counts(), (0, 0, 0));
    let zh = school.agent(&[
        "attendance",
        "record",
        "--date",
        "2026-11-03",
        "--class",
        "3-1",
        "--expected",
        "45",
        "--present",
        "40",
        "--lang",
        "zh",
    ]);
    assert!(
        zh.stderr.contains("实到 40 + 缺课 0 = 40，不等于应到 45"),
        "{}",
        zh.stderr
    );
}

/// 3. Exit codes a script can rely on: not initialised, usage, another school.
#[test]
fn documented_exit_codes() {
    let school = School::empty();
    assert_eq!(school.agent(&["report", "--date", "2026-11-03"]).code, 4);
    assert_eq!(school.agent(&["attendance", "record", "--date"]).code, 2);
    school
        .agent(&[
            "init",
            "--school",
            SCHOOL,
            "--county",
            "130823",
            "--name",
            "平泉一小",
        ])
        .ok();
    // The old Pingquan code is stored as the new one.
    assert_eq!(
        school.agent(&["status", "--json"]).ok().json()["county"],
        "130881"
    );
    let other = school.agent(&[
        "init",
        "--school",
        "2113000002",
        "--county",
        COUNTY,
        "--name",
        "x",
    ]);
    assert_eq!(other.code, 4, "{other:?}");
    let bad_county = school.agent(&[
        "init", "--school", SCHOOL, "--county", "110101", "--name", "x",
    ]);
    assert_eq!(bad_county.code, 3);
    let help = school.agent(&["--help"]).ok();
    assert!(help.stdout.contains("Exit codes"));
}

/// 4. While another process holds the store, a command says so clearly (exit 5), not a raw lock
///    error; once it is released, the command works.
#[test]
fn a_held_store_gives_a_clear_message() {
    let school = School::with_classes(1);
    let holder = schoolsync_store::DocStore::open(&school.data_dir().join("store")).unwrap();
    let run = Run::from_output(
        school
            .command(&["status"])
            .env("SCHOOLSYNC_LOCK_WAIT_MS", "0")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 5, "{run:?}");
    assert!(
        run.stderr.contains("in use by another schoolsync-agent"),
        "{}",
        run.stderr
    );
    drop(holder);
    school.agent(&["status"]).ok();
}

/// 5. Homework review marks a day's items reviewed and published.
#[test]
fn homework_review() {
    let school = School::with_classes(2);
    for class in ["3-1", "3-2"] {
        school
            .agent(&[
                "homework",
                "add",
                "--date",
                "2026-11-03",
                "--class",
                class,
                "--subject",
                "数学",
                "--minutes",
                "20",
                "--in-school",
            ])
            .ok();
    }
    let before = school
        .agent(&["homework", "review", "--date", "2026-11-03", "--json"])
        .ok()
        .json();
    assert!(before
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["review"].is_null()));
    school
        .agent(&[
            "homework",
            "review",
            "--date",
            "2026-11-03",
            "--class",
            "3-2",
            "--by",
            "张主任",
            "--publish",
        ])
        .ok();
    let after = school
        .agent(&["homework", "review", "--date", "2026-11-03", "--json"])
        .ok()
        .json();
    let states: Vec<(String, bool, bool)> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["class"].as_str().unwrap().to_owned(),
                !h["review"].is_null(),
                h["published"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![("3-1".into(), false, false), ("3-2".into(), true, true)]
    );
}

/// 6. A stricter county limit from the configuration file applies; a laxer one is refused.
#[test]
fn county_limits_from_config() {
    let school = School::with_classes(1);
    school.file(
        "agent.toml",
        format!("[rules.county.{COUNTY}]\nwritten_minutes_grade_3_6 = 45\n").as_bytes(),
    );
    let run = school
        .agent(&[
            "homework",
            "add",
            "--date",
            "2026-11-03",
            "--class",
            "3-1",
            "--subject",
            "数学",
            "--minutes",
            "46",
        ])
        .ok();
    assert!(
        run.stdout.contains("46 min, over the 45 min limit"),
        "{}",
        run.stdout
    );
    school.file(
        "agent.toml",
        b"[rules.default]\nwritten_minutes_grade_3_6 = 70\n",
    );
    let run = school.agent(&["status"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(
        run.stderr.contains("laxer than the national limit"),
        "{}",
        run.stderr
    );
}
