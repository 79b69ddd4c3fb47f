//! CSV import as clerks produce it, through the real binary: encodings, a bad row deep in a large
//! file, a duplicate import.

use crate::harness::*;

/// 1. A GBK sheet with Chinese headers, CRLF and a trailing blank row imports.
#[test]
fn gbk_sheet_with_chinese_headers() {
    let school = School::with_classes(2);
    let text = "日期,班级,应到,实到,因病缺课,事假,发热\r\n2026/11/3,3-1,45,43,2,0,2\r\n2026/11/3,3-2,45,44,0,1,\r\n,,,,,,\r\n";
    let (gbk, _, _) = encoding_rs::GBK.encode(text);
    let path = school.file("出勤.csv", &gbk);
    let run = school
        .agent(&["import", "attendance", path.to_str().unwrap()])
        .ok();
    assert!(run.stdout.contains("2 rows imported"), "{}", run.stdout);
    let records = school.attendance_on("2026-11-03");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["symptoms"]["fever"], 2);
    assert_eq!(records[1]["personal"], 1);
}

/// 2. One bad row deep in a large file: nothing is written, and the row is named with its line
///    and column among every other bad row.
#[test]
fn a_bad_row_deep_in_a_large_file_refuses_all() {
    let school = School::with_classes(30);
    let days = school_days("2026-09-01", 60);
    let mut csv = attendance_csv(30, &days);
    // Line 1501 (header is line 1): present one short of the sum.
    let mut lines: Vec<String> = csv.split("\r\n").map(str::to_owned).collect();
    let cells: Vec<&str> = lines[1500].split(',').collect();
    let broken = format!(
        "{},{},{},{},{},{},{}",
        cells[0], cells[1], cells[2], "1", cells[4], cells[5], cells[6]
    );
    lines[1500] = broken;
    lines[1700] = lines[1700].replacen("3-", "9-", 1);
    csv = lines.join("\r\n");
    let path = school.file("term.csv", csv.as_bytes());
    let run = school.agent(&["import", "attendance", path.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("line 1501, column \"present\""),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("line 1701, column \"class\""),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("nothing from the file was written"),
        "{}",
        run.stderr
    );
    assert_eq!(school.counts(), (0, 0, 0));
}

/// 3. Importing the same file twice changes nothing the second time.
#[test]
fn importing_twice_changes_nothing() {
    let school = School::with_classes(5);
    let days = school_days("2026-11-02", 10);
    let path = school.file("a.csv", attendance_csv(5, &days).as_bytes());
    school
        .agent(&["import", "attendance", path.to_str().unwrap()])
        .ok();
    let before = school.agent(&["list", "--json"]).ok().json();
    let report_before = school
        .agent(&["report", "--date", "2026-11-04", "--json"])
        .ok()
        .stdout;
    let again = school
        .agent(&["import", "attendance", path.to_str().unwrap()])
        .ok();
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    assert_eq!(school.agent(&["list", "--json"]).ok().json(), before);
    assert_eq!(
        school
            .agent(&["report", "--date", "2026-11-04", "--json"])
            .ok()
            .stdout,
        report_before
    );
    assert_eq!(school.counts(), (50, 0, 0));
}

/// 4. Homework and after-school sheets with Chinese values; a missing file is exit 7.
#[test]
fn homework_and_afterschool_sheets() {
    let school = School::with_classes(2);
    let hw = "\u{feff}日期,班级,学科,内容,作业类型,完成地点,分层,预计时长,问题标记\n2026-11-03,3-1,数学,口算,书面,家庭,必做,30,\n2026-11-03,3-1,语文,朗读,阅读,家庭,选做,20,布置给家长\n2026-11-03,3-2,英语,单词,书面,校内,必做,15\n";
    let path = school.file("作业.csv", hw.as_bytes());
    school
        .agent(&["import", "homework", path.to_str().unwrap()])
        .ok();
    let after =
        "date\tclass\tparticipants\tstart\tend\tcontent\n2026-11-03\t3-1\t40\t16:00\t17:30\t社团\n";
    let path = school.file("after.tsv", after.as_bytes());
    let run = school
        .agent(&["import", "afterschool", path.to_str().unwrap()])
        .ok();
    assert!(
        run.stdout
            .contains("after-school service lasted 90 min, under 120 min"),
        "{}",
        run.stdout
    );
    assert_eq!(school.counts(), (0, 3, 1));
    let report = school
        .agent(&["report", "--date", "2026-11-03", "--lang", "zh"])
        .ok()
        .stdout;
    assert!(report.contains("作业被标记为“布置给家长”"), "{report}");
    let missing = school.agent(&["import", "homework", "/nonexistent/x.csv"]);
    assert_eq!(missing.code, 7, "{missing:?}");
}
