//! The agent's user actions (init, class add, record, import, review) and readings (class list,
//! report, list, status), independent of how they are invoked.
//!
//! Every action loads the documents it touches, validates against the school profile, writes one
//! record at a time, recomputes the policy findings of the class-days it touched, commits one
//! Automerge change per document, and stores all of it in one flushed batch ([`DocStore::commit`]).
//! The CLI (`cli`) parses arguments and renders results; a running agent will call the same
//! functions for commands it receives (see ARCHITECTURE.md, "One store, one process").

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Days, NaiveDate};
use schoolsync_protocol::doc::{self, CommitMeta, Conflict, MonthRecords, RECORD_MAPS};
use schoolsync_protocol::ids::{ClassId, CountyCode, DocId, Month, SchoolId};
use schoolsync_protocol::records::{
    AfterSchool, Attendance, ClassInfo, HomeworkItem, Profile, Review,
};
use schoolsync_protocol::rules::{evaluate, ClassDay, Finding, Limits};
use schoolsync_protocol::{HardError, Lang};
use serde::Serialize;

use crate::config::Config;
use schoolsync_store::{DocStore, LoadedDoc, StoreError};

/// Errors of user actions, each with an exit code (see `cli::exit`) and a message a clerk can act on.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("this data directory has no school yet; run `schoolsync-agent init` first")]
    NotInitialised,
    #[error("this data directory belongs to school {existing}, not {requested}")]
    OtherSchool { existing: String, requested: String },
    #[error("refused: {0}")]
    Refused(#[from] HardError),
    #[error("import refused: {} bad rows", .0.len())]
    ImportRefused(Vec<crate::import::RowError>),
    #[error("cannot read {path}: {reason}")]
    FileUnreadable { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no upstream server is configured; run `schoolsync-agent init ... --upstream URL --ca FILE`")]
    NoUpstream,
    #[error("sync failed: {message}")]
    SyncFailed { message: String },
}

impl From<doc::DocError> for AppError {
    fn from(e: doc::DocError) -> Self {
        AppError::Store(StoreError::from(e))
    }
}

/// Who is acting, for commit metadata.
#[derive(Clone, Debug)]
pub struct Actor {
    pub clerk: String,
    pub machine: String,
}

/// An open agent: the store, the configuration and who is acting.
pub struct Agent {
    pub store: DocStore,
    pub config: Config,
    pub actor: Actor,
}

/// Documents loaded for one user action, written together by [`Agent::save`].
#[derive(Default)]
struct Work {
    docs: BTreeMap<DocId, LoadedDoc>,
    /// Class-days whose findings must be recomputed before saving.
    touched: BTreeSet<(NaiveDate, ClassId)>,
}

impl Work {
    fn doc(&mut self, store: &DocStore, id: DocId) -> Result<&mut LoadedDoc, AppError> {
        match self.docs.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::btree_map::Entry::Vacant(e) => {
                let loaded = store.load(e.key())?;
                Ok(e.insert(loaded))
            }
        }
    }
}

/// What an action wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Written {
    /// Records given (rows of an import, 1 for a single entry).
    pub records: usize,
    /// Automerge changes stored: 0 when everything was already there exactly so.
    pub changes: usize,
    /// Policy findings now standing on the class-days touched.
    pub findings: Vec<(String, Finding)>,
}

/// One class on one day, for `report`.
#[derive(Clone, Debug, Serialize)]
pub struct ClassReport {
    pub class: ClassInfo,
    pub attendance: Option<Attendance>,
    pub homework: Vec<HomeworkItem>,
    pub afterschool: Option<AfterSchool>,
    pub findings: Vec<Finding>,
    pub conflicts: Vec<Conflict>,
    /// Notes from the county or city on this class-day.
    pub feedback: Option<doc::Feedback>,
}

/// A stored document, for `list`.
#[derive(Clone, Debug, Serialize)]
pub struct DocSummary {
    pub id: String,
    pub attendance: usize,
    pub homework: usize,
    pub afterschool: usize,
    pub classes: usize,
    pub bytes: usize,
    pub increments: usize,
}

/// The agent's state, for `status`.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub school: String,
    pub name: String,
    pub county: String,
    pub county_name: String,
    pub classes: usize,
    pub documents: usize,
    pub store_bytes: u64,
    /// Local time (RFC 3339) of the last change made here, if any.
    pub last_change: Option<String>,
    /// Per upstream, in the order tried: last success, unconfirmed changes, last error.
    pub upstreams: Vec<crate::sync::LinkStatus>,
    /// Records edited concurrently on two computers (both values kept; see `report`).
    pub conflicts: usize,
}

fn month_doc(school: &SchoolId, date: NaiveDate) -> DocId {
    DocId::records(school, Month::of(date))
}

impl Agent {
    pub fn new(store: DocStore, config: Config, actor: Actor) -> Agent {
        Agent {
            store,
            config,
            actor,
        }
    }

    /// The school this data directory belongs to.
    pub fn school(&self) -> Result<SchoolId, AppError> {
        let text = self.store.meta("school")?.ok_or(AppError::NotInitialised)?;
        text.parse().map_err(|_| {
            AppError::Store(StoreError::Corrupt {
                doc: "m/school".to_owned(),
                reason: format!("bad school id {text:?}"),
            })
        })
    }

    pub fn profile(&self) -> Result<Profile, AppError> {
        let school = self.school()?;
        let loaded = self.store.load(&DocId::profile(&school))?;
        Ok(doc::read_profile(&loaded.doc)?)
    }

    fn limits(&self, profile: &Profile) -> Limits {
        self.config.rules.for_county(&profile.county).clone()
    }

    fn meta(&self, school: &SchoolId, action: &str) -> CommitMeta {
        CommitMeta {
            school: school.to_string(),
            clerk: self.actor.clerk.clone(),
            machine: self.actor.machine.clone(),
            action: action.to_owned(),
        }
    }

    /// Binds the data directory to a school (or updates the name and county of the same school).
    pub fn init(
        &self,
        school: &str,
        county: &str,
        name: &str,
        upstreams: Option<&crate::sync::Upstreams>,
        now_ms: i64,
    ) -> Result<Written, AppError> {
        let school = SchoolId::parse_in(school, self.config.province())?;
        let county: CountyCode = self.config.counties.parse(county)?;
        let name = schoolsync_protocol::records::text("name", name, true)?;
        if let Some(existing) = self.store.meta("school")? {
            if existing != school.as_str() {
                return Err(AppError::OtherSchool {
                    existing,
                    requested: school.to_string(),
                });
            }
        }
        let mut loaded = self.store.load(&DocId::profile(&school))?;
        doc::put_identity(&mut loaded.doc, &name, county.as_str())?;
        doc::commit(&mut loaded.doc, &self.meta(&school, "init"), now_ms);
        let mut extra = vec![
            DocStore::meta_op("school", school.as_str()),
            DocStore::meta_op("last_change", &now_ms.to_string()),
        ];
        if let Some(upstreams) = upstreams {
            extra.push(crate::sync::upstreams_op(upstreams));
        }
        let changes = self.store.commit(&mut [&mut loaded], extra)?;
        Ok(Written {
            records: 1,
            changes,
            findings: Vec::new(),
        })
    }

    /// Adds or updates classes, as one change.
    pub fn add_classes(
        &self,
        classes: &[ClassInfo],
        action: &str,
        now_ms: i64,
    ) -> Result<Written, AppError> {
        let school = self.school()?;
        let mut loaded = self.store.load(&DocId::profile(&school))?;
        for class in classes {
            doc::put_class(&mut loaded.doc, class)?;
        }
        let changed = doc::commit(&mut loaded.doc, &self.meta(&school, action), now_ms).is_some();
        let extra = if changed {
            vec![DocStore::meta_op("last_change", &now_ms.to_string())]
        } else {
            Vec::new()
        };
        let changes = self.store.commit(&mut [&mut loaded], extra)?;
        Ok(Written {
            records: classes.len(),
            changes,
            findings: Vec::new(),
        })
    }

    /// Validates and writes records of the three kinds as one user action.
    pub fn write_records(
        &self,
        records: &[NewRecord],
        action: &str,
        now_ms: i64,
    ) -> Result<Written, AppError> {
        let school = self.school()?;
        let profile = self.profile()?;
        for record in records {
            record.validate(&profile)?;
        }
        let mut work = Work::default();
        for record in records {
            let (date, class) = record.class_day();
            let loaded = work.doc(&self.store, month_doc(&school, date))?;
            match record {
                NewRecord::AfterSchool(r) if r.enrolled != profile.class(&r.class)?.enrolled => {
                    let mut r = r.clone();
                    r.enrolled = profile.class(&r.class)?.enrolled;
                    doc::put_afterschool(&mut loaded.doc, &r)?
                }
                NewRecord::Attendance(r) => doc::put_attendance(&mut loaded.doc, r)?,
                NewRecord::Homework(r) => doc::put_homework(&mut loaded.doc, r)?,
                NewRecord::AfterSchool(r) => doc::put_afterschool(&mut loaded.doc, r)?,
            }
            work.touched.insert((date, class.clone()));
        }
        let findings = self.refresh_findings(&school, &profile, &mut work)?;
        let written = self.save(&school, work, action, now_ms)?;
        Ok(Written {
            records: records.len(),
            changes: written,
            findings,
        })
    }

    /// Marks the homework of a day (one class or all) as reviewed by `by`, and published if asked.
    pub fn review_homework(
        &self,
        date: NaiveDate,
        class: Option<&ClassId>,
        by: &str,
        publish: bool,
        now_ms: i64,
    ) -> Result<Written, AppError> {
        let school = self.school()?;
        let by = schoolsync_protocol::records::text("reviewer", by, true)?;
        let at = chrono::DateTime::from_timestamp_millis(now_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut work = Work::default();
        let loaded = work.doc(&self.store, month_doc(&school, date))?;
        let items: Vec<HomeworkItem> = doc::read_month(&loaded.doc)?
            .homework
            .into_values()
            .filter(|h| h.date.0 == date && class.is_none_or(|c| *c == h.class))
            .collect();
        for mut item in items.iter().cloned() {
            item.review = Some(Review {
                by: by.clone(),
                at: at.clone(),
            });
            item.published |= publish;
            doc::put_homework(&mut loaded.doc, &item)?;
        }
        let changes = self.save(&school, work, "homework review", now_ms)?;
        Ok(Written {
            records: items.len(),
            changes,
            findings: Vec::new(),
        })
    }

    /// Recomputes findings of every touched class-day and of the two days after it (illness
    /// clusters look three days back), and stores them in the month documents.
    fn refresh_findings(
        &self,
        school: &SchoolId,
        profile: &Profile,
        work: &mut Work,
    ) -> Result<Vec<(String, Finding)>, AppError> {
        let limits = self.limits(profile);
        let mut days: BTreeSet<(NaiveDate, ClassId)> = BTreeSet::new();
        for (date, class) in &work.touched {
            for d in 0..3 {
                if let Some(day) = date.checked_add_days(Days::new(d)) {
                    days.insert((day, class.clone()));
                }
            }
        }
        // The class-days to evaluate and the two days before each (illness clusters look back),
        // grouped by month: only these are read, not whole months.
        let mut needed: BTreeMap<Month, BTreeSet<(NaiveDate, ClassId)>> = BTreeMap::new();
        for (date, class) in &days {
            for back in 0..3 {
                if let Some(day) = date.checked_sub_days(Days::new(back)) {
                    needed
                        .entry(Month::of(day))
                        .or_default()
                        .insert((day, class.clone()));
                }
            }
        }
        let mut months: BTreeMap<Month, MonthRecords> = BTreeMap::new();
        for (month, class_days) in needed {
            let loaded = work.doc(&self.store, DocId::records(school, month))?;
            let records =
                doc::read_class_days(&loaded.doc, class_days.iter().map(|(d, c)| (*d, c)))?;
            months.insert(month, records);
        }
        let mut standing = Vec::new();
        for (date, class) in days {
            let Ok(info) = profile.class(&class) else {
                continue;
            };
            let Some(records) = months.get(&Month::of(date)) else {
                continue;
            };
            let key = doc::class_day_key(date, &class);
            let findings = evaluate(
                &class_day(&months, records, info.grade, date, &class),
                &limits,
            );
            let is_new_day = work.touched.contains(&(date, class.clone()));
            let loaded = work.doc(&self.store, month_doc(school, date))?;
            // Days after the touched ones get findings only if they have records already.
            let has_records = records.attendance.contains_key(&key)
                || records.afterschool.contains_key(&key)
                || records
                    .homework
                    .values()
                    .any(|h| h.date.0 == date && h.class == class);
            if is_new_day || has_records {
                doc::put_findings(&mut loaded.doc, &key, &findings)?;
            }
            if is_new_day {
                standing.extend(findings.into_iter().map(|f| (key.clone(), f)));
            }
        }
        Ok(standing)
    }

    /// Commits every changed document of `work` and stores them all in one flushed batch.
    fn save(
        &self,
        school: &SchoolId,
        mut work: Work,
        action: &str,
        now_ms: i64,
    ) -> Result<usize, AppError> {
        let meta = self.meta(school, action);
        let mut any = false;
        for loaded in work.docs.values_mut() {
            any |= doc::commit(&mut loaded.doc, &meta, now_ms).is_some();
        }
        let extra = if any {
            vec![DocStore::meta_op("last_change", &now_ms.to_string())]
        } else {
            Vec::new()
        };
        let mut docs: Vec<&mut LoadedDoc> = work.docs.values_mut().collect();
        Ok(self.store.commit(&mut docs, extra)?)
    }

    /// Every class's records and findings on one day. Reads only that day and the two before it
    /// (illness clusters look back), not whole months: a day's report costs the same on the 1st
    /// and on the 30th.
    pub fn report(&self, date: NaiveDate) -> Result<Vec<ClassReport>, AppError> {
        let school = self.school()?;
        let profile = self.profile()?;
        let limits = self.limits(&profile);
        let mut needed: BTreeMap<Month, BTreeSet<(NaiveDate, ClassId)>> = BTreeMap::new();
        needed.entry(Month::of(date)).or_default();
        for info in profile.classes.values() {
            for back in 0..3 {
                if let Some(day) = date.checked_sub_days(Days::new(back)) {
                    needed
                        .entry(Month::of(day))
                        .or_default()
                        .insert((day, info.class.clone()));
                }
            }
        }
        let mut months = BTreeMap::new();
        let mut conflicts = Vec::new();
        for (month, class_days) in needed {
            let loaded = self.store.load(&DocId::records(&school, month))?;
            if !loaded.exists() {
                months.insert(month, MonthRecords::default());
                continue;
            }
            if month == Month::of(date) {
                let prefix = format!("{}/", schoolsync_protocol::ids::date_key(date));
                conflicts = doc::conflicts_under(&loaded.doc, &RECORD_MAPS, &prefix)?;
            }
            let records =
                doc::read_class_days(&loaded.doc, class_days.iter().map(|(d, c)| (*d, c)))?;
            months.insert(month, records);
        }
        let empty = MonthRecords::default();
        let records = months.get(&Month::of(date)).unwrap_or(&empty);
        let mut classes: Vec<&ClassInfo> = profile.classes.values().collect();
        classes.sort_by(|a, b| (a.grade, &a.class).cmp(&(b.grade, &b.class)));
        let prefix_of = |class: &ClassId| format!("{}/", doc::class_day_key(date, class));
        Ok(classes
            .into_iter()
            .map(|info| {
                let day = class_day(&months, records, info.grade, date, &info.class);
                let prefix = prefix_of(&info.class);
                ClassReport {
                    class: info.clone(),
                    attendance: day.attendance.cloned(),
                    homework: day.homework.iter().map(|h| (*h).clone()).collect(),
                    afterschool: day.afterschool.cloned(),
                    findings: evaluate(&day, &limits),
                    feedback: records
                        .feedback
                        .get(&doc::class_day_key(date, &info.class))
                        .cloned(),
                    conflicts: conflicts
                        .iter()
                        .filter(|c| format!("{}/", c.key).starts_with(&prefix))
                        .cloned()
                        .collect(),
                }
            })
            .collect())
    }

    /// Feedback from the county or city on class-days from `from` to `to` (inclusive), newest
    /// day first, as `(date, class, feedback)`: notes often come days after the day they are on.
    pub fn feedback_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, doc::Feedback)>, AppError> {
        let school = self.school()?;
        let mut months = BTreeSet::new();
        let mut day = from;
        while day <= to {
            months.insert(Month::of(day));
            day = match day.checked_add_days(Days::new(1)) {
                Some(d) => d,
                None => break,
            };
        }
        let mut out = Vec::new();
        for month in months {
            let loaded = self.store.load(&DocId::records(&school, month))?;
            if !loaded.exists() {
                continue;
            }
            for (key, feedback) in doc::read_feedback(&loaded.doc)? {
                let Some((date, class)) = key.split_once('/') else {
                    continue;
                };
                let Ok(date) = schoolsync_protocol::ids::parse_date(date) else {
                    continue;
                };
                if (from..=to).contains(&date) {
                    out.push((date, class.to_owned(), feedback));
                }
            }
        }
        out.sort_by(|a, b| (b.0, &a.1).cmp(&(a.0, &b.1)));
        Ok(out)
    }

    /// Every document in the store with its record counts and size.
    pub fn list(&self) -> Result<Vec<DocSummary>, AppError> {
        let mut out = Vec::new();
        for id in self.store.doc_ids()? {
            let loaded = self.store.load(&id)?;
            let (bytes, increments) = self.store.doc_size(&id)?;
            let mut summary = DocSummary {
                id: id.to_string(),
                attendance: 0,
                homework: 0,
                afterschool: 0,
                classes: 0,
                bytes,
                increments,
            };
            match id.kind {
                schoolsync_protocol::ids::DocKind::Profile => {
                    summary.classes = doc::read_profile(&loaded.doc)?.classes.len();
                }
                schoolsync_protocol::ids::DocKind::Records(_) => {
                    let records = doc::read_month(&loaded.doc)?;
                    summary.attendance = records.attendance.len();
                    summary.homework = records.homework.len();
                    summary.afterschool = records.afterschool.len();
                }
            }
            out.push(summary);
        }
        Ok(out)
    }

    pub fn status(&self) -> Result<Status, AppError> {
        let profile = self.profile()?;
        let county_name = profile
            .county
            .parse::<CountyCode>()
            .ok()
            .and_then(|c| self.config.counties.name(&c).map(str::to_owned))
            .unwrap_or_default();
        let last_change = self
            .store
            .meta("last_change")?
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            });
        Ok(Status {
            school: profile.school.clone(),
            name: profile.name.clone(),
            county: profile.county.clone(),
            county_name,
            classes: profile.classes.len(),
            documents: self.store.doc_ids()?.len(),
            store_bytes: self.store.size_on_disk()?,
            last_change,
            upstreams: crate::sync::statuses(self)?,
            conflicts: self.conflict_count()?,
        })
    }

    /// Conflicts over every stored records document.
    fn conflict_count(&self) -> Result<usize, AppError> {
        let mut count = 0;
        for id in self.store.doc_ids()? {
            if let schoolsync_protocol::ids::DocKind::Records(_) = id.kind {
                let loaded = self.store.load(&id)?;
                count += doc::conflicts(&loaded.doc, &RECORD_MAPS)?.len();
            }
        }
        Ok(count)
    }
}

/// Builds the records of one class-day from loaded months.
fn class_day<'a>(
    months: &'a BTreeMap<Month, MonthRecords>,
    records: &'a MonthRecords,
    grade: u32,
    date: NaiveDate,
    class: &ClassId,
) -> ClassDay<'a> {
    let key = doc::class_day_key(date, class);
    let earlier = (1..=2)
        .filter_map(|d| date.checked_sub_days(Days::new(d)))
        .filter_map(|d| {
            months
                .get(&Month::of(d))?
                .attendance
                .get(&doc::class_day_key(d, class))
        })
        .collect();
    ClassDay {
        grade,
        attendance: records.attendance.get(&key),
        earlier_attendance: earlier,
        homework: records
            .homework
            .range(format!("{key}/")..)
            .take_while(|(k, _)| k.starts_with(&format!("{key}/")))
            .map(|(_, v)| v)
            .collect(),
        afterschool: records.afterschool.get(&key),
    }
}

/// A record entered by a clerk or read from a sheet, before it is written.
#[derive(Clone, Debug, PartialEq)]
pub enum NewRecord {
    Attendance(Attendance),
    Homework(HomeworkItem),
    AfterSchool(AfterSchool),
}

impl NewRecord {
    pub fn class_day(&self) -> (NaiveDate, &ClassId) {
        match self {
            NewRecord::Attendance(r) => (r.date.0, &r.class),
            NewRecord::Homework(r) => (r.date.0, &r.class),
            NewRecord::AfterSchool(r) => (r.date.0, &r.class),
        }
    }

    /// The record's key in its document: two records with one key are the same record.
    pub fn key(&self) -> String {
        match self {
            NewRecord::Attendance(r) => {
                format!("attendance {}", doc::class_day_key(r.date.0, &r.class))
            }
            NewRecord::Homework(r) => format!("homework {}", doc::homework_key(r)),
            NewRecord::AfterSchool(r) => {
                format!("afterschool {}", doc::class_day_key(r.date.0, &r.class))
            }
        }
    }

    /// Hard validation against the profile; an after-school record also takes the class's
    /// enrolment as its denominator.
    pub fn validate(&self, profile: &Profile) -> Result<(), HardError> {
        match self {
            NewRecord::Attendance(r) => r.validate(profile),
            NewRecord::Homework(r) => r.validate(profile),
            NewRecord::AfterSchool(r) => r.validate(profile),
        }
    }
}

/// Message for a language, used by callers that render [`AppError`].
pub fn error_message(e: &AppError, lang: Lang) -> String {
    match (e, lang) {
        (AppError::NotInitialised, Lang::Zh) => {
            "本数据目录还没有登记学校，请先运行 schoolsync-agent init --school 学校标识码 --county 县区代码 --name 学校名称".to_owned()
        }
        (AppError::OtherSchool { existing, requested }, Lang::Zh) => {
            format!("本数据目录属于学校 {existing}，不能改为 {requested}；如需另建，请用 --data-dir 指定新目录")
        }
        (AppError::Refused(h), lang) => match lang {
            Lang::Zh => format!("未保存：{}", h.message(lang)),
            Lang::En => format!("not saved: {}", h.message(lang)),
        },
        (AppError::ImportRefused(rows), Lang::Zh) => {
            format!("导入未执行：{} 处错误，文件中的数据一条也没有写入（改正后重新导入即可）", rows.len())
        }
        (AppError::ImportRefused(rows), Lang::En) => {
            format!("import refused: {} errors; nothing from the file was written (fix them and import again)", rows.len())
        }
        (AppError::FileUnreadable { path, reason }, Lang::Zh) => format!("无法读取文件 {path}：{reason}"),
        (AppError::Store(StoreError::Kv(schoolsync_store::kv::KvError::Locked { path })), Lang::Zh) => format!(
            "数据目录 {} 正被另一个 schoolsync-agent 程序使用（例如正在运行的 schoolsync-agent run）。请等它结束或关闭它后再试。",
            path.display()
        ),
        (AppError::Store(StoreError::Kv(schoolsync_store::kv::KvError::Locked { path })), Lang::En) => format!(
            "the data directory {} is in use by another schoolsync-agent (for example a running `schoolsync-agent run`). Wait for it to finish or stop it, then try again.",
            path.display()
        ),
        (AppError::Store(StoreError::Corrupt { doc, reason }), Lang::Zh) => {
            format!("数据文件 {doc} 已损坏（{reason}），未作任何修改。请运行 schoolsync-agent repair 修复（可读的数据全部保留，其余在下次同步时从上级取回），或联系县教育局技术人员。")
        }
        (AppError::Store(StoreError::Corrupt { doc, reason }), Lang::En) => {
            format!("document {doc} is damaged ({reason}); nothing was changed. Run `schoolsync-agent repair`: it keeps everything readable and the next sync fetches the rest from upstream.")
        }
        (AppError::Store(StoreError::Kv(schoolsync_store::kv::KvError::Corrupt { path, reason })), Lang::Zh) => {
            format!("数据存储 {} 已损坏（{reason}），未作任何修改。请运行 schoolsync-agent repair 修复。", path.display())
        }
        (AppError::Store(StoreError::Kv(schoolsync_store::kv::KvError::Corrupt { path, reason })), Lang::En) => {
            format!("the store {} is damaged ({reason}); nothing was changed. Run `schoolsync-agent repair`: it keeps everything readable and the next sync fetches the rest from upstream.", path.display())
        }
        (AppError::Store(StoreError::Kv(e @ schoolsync_store::kv::KvError::EngineMismatch { .. })), Lang::Zh) => {
            format!("存储引擎设置与现有数据不符：{e}。请去掉 --engine / SCHOOLSYNC_ENGINE / agent.toml 中的 engine 设置。")
        }
        (AppError::Store(StoreError::Kv(e @ schoolsync_store::kv::KvError::EngineMismatch { .. })), Lang::En) => {
            format!("{e}: remove the --engine / SCHOOLSYNC_ENGINE / agent.toml engine setting (or run `schoolsync-agent repair --engine NAME` to move the data to another engine)")
        }
        (AppError::Store(StoreError::Kv(e)), Lang::Zh) if e.is_disk_full() => {
            "磁盘空间已满，本次未保存（之前保存的数据完好）。请清理磁盘空间后重试。".to_owned()
        }
        (AppError::Store(StoreError::Kv(e)), Lang::En) if e.is_disk_full() => {
            "the disk is full: this entry was not saved (everything saved before is intact). Free some disk space and try again.".to_owned()
        }
        (AppError::Store(e), Lang::Zh) => format!("数据存储出错：{e}"),
        (AppError::NoUpstream, Lang::Zh) => {
            "尚未配置上级服务器：请运行 schoolsync-agent init ... --upstream 地址 --ca 证书文件".to_owned()
        }
        (AppError::SyncFailed { message }, _) => message.clone(),
        (e, _) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolsync_protocol::records::Day;

    /// `report` reads only the day and the two before it, across a month boundary too: three days
    /// of illness absences (Oct 30 to Nov 1) make a three-day cluster on Nov 1.
    #[test]
    fn report_looks_back_across_a_month_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let agent = Agent::new(
            DocStore::open(dir.path()).unwrap(),
            Config::default(),
            Actor {
                clerk: "t".to_owned(),
                machine: "t".to_owned(),
            },
        );
        agent
            .init("2113000001", "130821", "承德县第一小学", None, 0)
            .unwrap();
        let class: ClassId = "3-1".parse().unwrap();
        agent
            .add_classes(&[ClassInfo::new(class.clone(), 3, 45).unwrap()], "t", 0)
            .unwrap();
        let records: Vec<NewRecord> = [(10, 30), (10, 31), (11, 1)]
            .iter()
            .map(|&(m, d)| {
                NewRecord::Attendance(Attendance {
                    date: Day(NaiveDate::from_ymd_opt(2026, m, d).unwrap()),
                    class: class.clone(),
                    expected: 45,
                    present: 43,
                    sick: 2,
                    personal: 0,
                    other: 0,
                    symptoms: BTreeMap::new(),
                })
            })
            .collect();
        agent.write_records(&records, "t", 0).unwrap();
        let nov1 = agent
            .report(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap())
            .unwrap();
        assert_eq!(nov1.len(), 1);
        assert_eq!(nov1[0].attendance.as_ref().unwrap().sick, 2);
        let codes: Vec<&str> = nov1[0].findings.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["illness-cluster-three-days"], "{codes:?}");
        let nov2 = agent
            .report(NaiveDate::from_ymd_opt(2026, 11, 2).unwrap())
            .unwrap();
        assert!(nov2[0].attendance.is_none() && nov2[0].findings.is_empty());
        // A month nobody has written yet is empty, not an error.
        let empty = agent
            .report(NaiveDate::from_ymd_opt(2027, 3, 2).unwrap())
            .unwrap();
        assert!(empty[0].attendance.is_none());
    }
}
