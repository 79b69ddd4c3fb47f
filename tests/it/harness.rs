//! Shared harness: a school data directory in a temp folder and the agent run against it as a
//! real child process, plus generators of CSV files shaped like clerks' sheets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The agent binary cargo built for these tests (the same `main` as `schoolsync-agent`).
pub const AGENT: &str = env!("CARGO_BIN_EXE_agent-under-test");

pub const SCHOOL: &str = "2113000001";
pub const COUNTY: &str = "130821";

/// A school: a fresh data directory, initialised unless asked otherwise.
pub struct School {
    pub dir: tempfile::TempDir,
}

/// What a finished agent command returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

impl School {
    /// An empty data directory.
    pub fn empty() -> School {
        School {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A school with `classes` classes of grade 3 named `3-1`, `3-2`, ... (45 pupils each).
    pub fn with_classes(classes: usize) -> School {
        let school = School::empty();
        school
            .agent(&[
                "init",
                "--school",
                SCHOOL,
                "--county",
                COUNTY,
                "--name",
                "承德县第一小学",
            ])
            .ok();
        let path = school.file("classes.csv", classes_csv(classes).as_bytes());
        school
            .agent(&["import", "classes", path.to_str().unwrap()])
            .ok();
        school
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(AGENT);
        cmd.args(args)
            .env("SCHOOLSYNC_DATA_DIR", self.data_dir())
            .env("SCHOOLSYNC_LANG", "en")
            .env("SCHOOLSYNC_CLERK", "test clerk")
            .env_remove("SCHOOLSYNC_CONFIG");
        cmd
    }

    /// Runs the agent to completion.
    pub fn agent(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().unwrap())
    }

    /// Writes a file beside the data directory and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.data_dir().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Attendance records in the store, as `report --json` sees them for `date`.
    pub fn attendance_on(&self, date: &str) -> Vec<serde_json::Value> {
        self.agent(&["report", "--date", date, "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c.get("attendance").filter(|a| !a.is_null()).cloned())
            .collect()
    }

    /// Records per kind over all documents, from `list --json`.
    pub fn counts(&self) -> (u64, u64, u64) {
        let list = self.agent(&["list", "--json"]).ok().json();
        let sum = |k: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .map(|d| d[k].as_u64().unwrap())
                .sum()
        };
        (sum("attendance"), sum("homework"), sum("afterschool"))
    }
}

pub fn classes_csv(classes: usize) -> String {
    let mut out = String::from("班级,年级,在籍人数\r\n");
    for c in 1..=classes {
        out.push_str(&format!("3-{c},3,45\r\n"));
    }
    out
}

/// School days (weekdays) from `start` on, `n` of them.
pub fn school_days(start: &str, n: usize) -> Vec<chrono::NaiveDate> {
    schoolsync_sim::school_days_from(
        chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").unwrap(),
        n,
    )
}

/// A homework sheet: two items per class-day (written maths at home, reading).
pub fn homework_csv(classes: usize, days: &[chrono::NaiveDate]) -> String {
    let mut out = String::from("date,class,subject,content,type,place,minutes\r\n");
    for (i, day) in days.iter().enumerate() {
        for c in 1..=classes {
            out.push_str(&format!(
                "{day},3-{c},数学,练习册第{i}页,书面,家庭,{}\r\n",
                20 + (i + c) % 30
            ));
            out.push_str(&format!("{day},3-{c},语文,课外阅读,阅读,家庭,20\r\n"));
        }
    }
    out
}

/// An after-school sheet: every class on every day.
pub fn afterschool_csv(classes: usize, days: &[chrono::NaiveDate]) -> String {
    let mut out = String::from("date,class,participants,start,end,content,teachers\r\n");
    for (i, day) in days.iter().enumerate() {
        for c in 1..=classes {
            out.push_str(&format!(
                "{day},3-{c},{},16:00,18:00,作业辅导、社团,2\r\n",
                40 + (i + c) % 5
            ));
        }
    }
    out
}

/// An attendance sheet: every class on every day, present = 45 - sick.
pub fn attendance_csv(classes: usize, days: &[chrono::NaiveDate]) -> String {
    let mut out = String::from("date,class,expected,present,sick,personal,other\r\n");
    for (i, day) in days.iter().enumerate() {
        for c in 1..=classes {
            let sick = (i + c) % 3;
            out.push_str(&format!("{day},3-{c},45,{},{sick},0,0\r\n", 45 - sick));
        }
    }
    out
}
