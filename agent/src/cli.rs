//! The `schoolsync-agent` command line: argument parsing, output in Chinese or English (or JSON),
//! and documented exit codes. The actions themselves are in `app`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use schoolsync_protocol::ids::{parse_date, ClassId};
use schoolsync_protocol::records::{
    count, homework_minutes, AfterSchool, Attendance, ClassInfo, Clock, Day, HomeworkItem,
    HomeworkType, Layer, Place, Symptom,
};
use schoolsync_protocol::{HardError, Lang};

use crate::app::{error_message, Actor, Agent, AppError, ClassReport, NewRecord, Written};
use crate::config::{Config, CONFIG_FILE};
use crate::import::{self, Kind};
use schoolsync_store::DocStore;

/// Exit codes, stable for scripts.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// An unexpected internal error (a bug: please report it).
    pub const INTERNAL: u8 = 1;
    /// The command line is wrong (unknown command, missing or malformed flag).
    pub const USAGE: u8 = 2;
    /// Refused: a record breaks a hard rule, or an import file has bad rows. Nothing was written.
    pub const REFUSED: u8 = 3;
    /// The data directory has no school yet (run `init`), or belongs to another school.
    pub const NOT_INITIALISED: u8 = 4;
    /// The store is in use by another schoolsync-agent process.
    pub const STORE_LOCKED: u8 = 5;
    /// The store could not be read or written (disk error, damaged file).
    pub const STORE_ERROR: u8 = 6;
    /// An input file or the configuration file cannot be read or used.
    pub const INPUT_ERROR: u8 = 7;
    /// Sync failed: no upstream answered, or one refused. Local data is safe and kept.
    pub const SYNC_FAILED: u8 = 8;
}

const AFTER_HELP: &str = "\
Exit codes / 退出码:
  0  done / 成功
  2  wrong command line / 命令行有误
  3  refused: a hard rule is broken or an import file has bad rows; nothing was written
     / 数据不合规或导入文件有错误行，未写入任何数据
  4  no school in this data directory yet (run init) / 尚未初始化
  5  another schoolsync-agent is using the data directory / 数据目录正被占用
  6  the store cannot be read or written / 数据存储出错
  7  an input file or the configuration cannot be read / 文件或配置无法读取
  8  sync failed (no upstream answered); data stays safe here / 同步失败，数据仍保存在本机

Example / 示例:
  schoolsync-agent init --school 2113000001 --county 130821 --name 承德县第一小学
  schoolsync-agent class add --class 3-2 --grade 3 --enrolled 45
  schoolsync-agent attendance record --date 2026-11-03 --class 3-2 --expected 45 --present 43 --sick 2
  schoolsync-agent import attendance 出勤.csv
  schoolsync-agent report --date 2026-11-03";

/// schoolsync-agent: records a school's daily data (attendance, homework publicity, after-school
/// service) on this computer, with or without a network.
///
/// 学校端：在本机登记每日出勤、作业公示和课后服务数据，无网络也能使用。
#[derive(Debug, Parser)]
#[command(name = "schoolsync-agent", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Where the data lives (default: the system's application-data folder).
    /// 数据目录（默认：系统的应用数据目录）
    #[arg(long, global = true, env = "SCHOOLSYNC_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (default: agent.toml in the data directory). 配置文件
    #[arg(long, global = true, env = "SCHOOLSYNC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Message language (default: from the system locale). 提示语言
    #[arg(long, global = true, env = "SCHOOLSYNC_LANG", value_parser = ["zh", "en"])]
    pub lang: Option<String>,
    /// Who is entering data, recorded with every change (default: the system user name).
    /// 录入人（默认：系统用户名）
    #[arg(long, global = true, env = "SCHOOLSYNC_CLERK")]
    pub clerk: Option<String>,
    /// Print machine-readable JSON instead of text. 输出 JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// Storage engine of a new store (an existing store keeps its own). 新建存储所用的引擎
    #[arg(long, global = true, env = "SCHOOLSYNC_ENGINE", value_parser = ["redb", "sled"])]
    pub engine: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register this computer's school (once). 登记本校（只需一次）
    Init(InitArgs),
    /// Classes of the school. 班级管理
    #[command(subcommand)]
    Class(ClassCommand),
    /// Daily attendance. 每日出勤
    #[command(subcommand)]
    Attendance(AttendanceCommand),
    /// Homework publicity. 作业公示
    #[command(subcommand)]
    Homework(HomeworkCommand),
    /// After-school service. 课后服务
    #[command(subcommand)]
    Afterschool(AfterschoolCommand),
    /// Import a CSV file saved from Excel or WPS (all rows or none). 从 CSV 文件导入（全部成功才写入）
    Import(ImportArgs),
    /// A day's records and policy findings, per class. 某日各班数据和政策提示
    Report {
        /// The day, e.g. 2026-11-03. 日期
        #[arg(long)]
        date: String,
    },
    /// Documents in the store. 本机存储的文档
    List,
    /// The school, the store, the last change, and each upstream's sync state. 状态
    Status,
    /// Install this computer's credential file (from the county or city bureau). 安装接入凭证
    Enroll {
        /// The credential file. 凭证文件
        file: PathBuf,
    },
    /// Send and receive changes now (county relay first, then the city). 立即同步
    Sync,
    /// Rebuild a damaged store: keep every readable change, set the damaged one aside, and let
    /// the next sync fetch the rest from upstream. 修复损坏的数据存储
    Repair,
    /// Keep running: sync soon after each change and every few minutes, and serve the clerk
    /// desk page on http://127.0.0.1:8421/; Ctrl-C stops.
    /// 持续运行：有修改后自动同步，并定时同步；同时在本机提供录入页面
    Run {
        /// Seconds between syncs when nothing changes (default 300).
        #[arg(long, default_value_t = 300)]
        interval_secs: u64,
        #[command(flatten)]
        desk: DeskArgs,
    },
}

/// The clerk desk served by `run` (flags win over `[desk]` in agent.toml).
#[derive(Debug, Args)]
pub struct DeskArgs {
    /// Port of the clerk desk page (default 8421; 0 = any free port). 录入页面端口
    #[arg(long, value_name = "PORT")]
    pub desk_port: Option<u16>,
    /// Address of the desk (default 127.0.0.1: this computer only; others need
    /// --desk-allow-remote and a PIN). 录入页面监听地址
    #[arg(long, value_name = "ADDR")]
    pub desk_bind: Option<std::net::IpAddr>,
    /// Allow a --desk-bind address other computers can reach. 允许其他电脑访问
    #[arg(long)]
    pub desk_allow_remote: bool,
    /// PIN asked by the desk page, for shared computers. 录入页面密码
    #[arg(
        long,
        env = "SCHOOLSYNC_DESK_PIN",
        value_name = "PIN",
        hide_env_values = true
    )]
    pub desk_pin: Option<String>,
    /// Do not serve the desk page (sync only). 不提供录入页面
    #[arg(long)]
    pub no_desk: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// 10-digit school identifier (学校标识码).
    #[arg(long)]
    pub school: String,
    /// 6-digit county code (县区代码), e.g. 130821 承德县.
    #[arg(long)]
    pub county: String,
    /// School name (学校名称).
    #[arg(long)]
    pub name: String,
    /// Upstream server URL: the county relay first, then the city as fallback (repeatable).
    /// 上级服务器地址（先县区，后市级）
    #[arg(long = "upstream", value_name = "URL")]
    pub upstreams: Vec<String>,
    /// CA certificate (PEM) given by the county or city bureau. 上级服务器的 CA 证书
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// This computer's credential file, issued by the city for this school (can also be added
    /// later with `enroll`). 本机接入凭证文件
    #[arg(long, value_name = "FILE")]
    pub credential: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ClassCommand {
    /// Add a class or change its grade and enrolment. 添加或修改班级
    Add {
        /// Class name, e.g. 3-2 or 三年级2班. 班级
        #[arg(long)]
        class: String,
        /// Grade 1-9 (7-9 = 初一..初三). 年级
        #[arg(long)]
        grade: String,
        /// Pupils enrolled. 在籍人数
        #[arg(long, allow_negative_numbers = true)]
        enrolled: i64,
    },
    /// List classes. 班级列表
    List,
}

#[derive(Debug, Subcommand)]
pub enum AttendanceCommand {
    /// Record one class's attendance for one day (a second entry replaces the first).
    /// 登记一个班一天的出勤（再次登记将覆盖）
    Record {
        #[arg(long)]
        date: String,
        #[arg(long)]
        class: String,
        /// Expected (应到).
        #[arg(long, allow_negative_numbers = true)]
        expected: i64,
        /// Present (实到).
        #[arg(long, allow_negative_numbers = true)]
        present: i64,
        /// Absent for illness (因病缺课).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        sick: i64,
        /// Absent on personal leave (事假).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        personal: i64,
        /// Absent for other reasons (其他).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        other: i64,
        /// Illness absences with a symptom, e.g. --symptom fever=2 (发热/咳嗽/腹泻/呕吐/皮疹).
        #[arg(long, value_name = "SYMPTOM=N")]
        symptom: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HomeworkCommand {
    /// Publish one homework item (the same subject and content again updates it).
    /// 登记一项作业（同学科同内容再次登记将更新）
    Add {
        #[arg(long)]
        date: String,
        #[arg(long)]
        class: String,
        /// Subject (学科), e.g. 数学.
        #[arg(long)]
        subject: String,
        /// Estimated minutes to complete (预计完成时间).
        #[arg(long, allow_negative_numbers = true)]
        minutes: i64,
        /// written|practical|reading|sports|arts|labour|other (书面/实践/阅读/体育/艺术/劳动/其他).
        #[arg(long = "type", default_value = "written")]
        kind: String,
        /// Done at home (default). 家庭完成（默认）
        #[arg(long, conflicts_with = "in_school")]
        at_home: bool,
        /// Done in school. 校内完成
        #[arg(long)]
        in_school: bool,
        /// required|optional (必做/选做).
        #[arg(long, default_value = "required")]
        layer: String,
        /// What the homework is (作业内容).
        #[arg(long, default_value = "")]
        content: String,
        /// Teacher who set it (布置教师).
        #[arg(long)]
        teacher: Option<String>,
        /// A forbidden practice to record (reported, not refused): for-parents|self-marking|
        /// punitive|repetitive (布置给家长/学生自批/惩罚性/机械重复). Repeatable.
        #[arg(long = "flag", value_name = "FLAG")]
        flags: Vec<String>,
    },
    /// Show a day's homework and its review state; with --by, mark it reviewed.
    /// 查看某日作业审核状态；加 --by 则标记为已审核
    Review {
        #[arg(long)]
        date: String,
        /// Only this class. 仅此班级
        #[arg(long)]
        class: Option<String>,
        /// Reviewer's name: marks the items reviewed. 审核人
        #[arg(long)]
        by: Option<String>,
        /// Also mark them published to parents. 同时标记为已公示
        #[arg(long, requires = "by")]
        publish: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AfterschoolCommand {
    /// Record one class's after-school session for one day. 登记一个班一天的课后服务
    Record {
        #[arg(long)]
        date: String,
        #[arg(long)]
        class: String,
        /// Pupils taking part (参加人数).
        #[arg(long, allow_negative_numbers = true)]
        participants: i64,
        /// Start time HH:MM (开始时间).
        #[arg(long)]
        start: String,
        /// End time HH:MM (结束时间).
        #[arg(long)]
        end: String,
        /// Content types, e.g. 作业辅导、社团 (homework-help,clubs,...).
        #[arg(long, default_value = "")]
        content: String,
        /// Teachers taking part (教师人数).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        teachers: i64,
        /// Outside staff (校外人员).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        outside_staff: i64,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the file holds. 文件内容
    #[arg(value_enum)]
    pub kind: Kind,
    /// CSV file (UTF-8 or GBK; headers in English or Chinese, see README). CSV 文件
    pub file: PathBuf,
}

/// Runs the CLI with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    ExitCode::from(run(cli))
}

fn system_lang() -> Lang {
    sys_locale::get_locale().map_or(Lang::Zh, |l| Lang::from_locale(&l))
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("cn", "schoolsync", "schoolsync").map_or_else(
        || PathBuf::from("schoolsync-data"),
        |d| d.data_dir().to_owned(),
    )
}

fn os_user() -> String {
    std::env::var("USERNAME")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> u8 {
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| data_dir.join(CONFIG_FILE));
    let early_lang = cli
        .lang
        .as_deref()
        .map_or_else(system_lang, Lang::from_locale);
    let config = match Config::load(&config_path, cli.config.is_some()) {
        Ok(mut c) => {
            if c.credential.is_none() {
                c.credential = Some(data_dir.join(crate::config::CREDENTIAL_FILE));
            }
            c
        }
        Err(e) => {
            eprintln!(
                "{}",
                early_lang.pick(&format!("配置文件无法使用：{e}"), &e.to_string())
            );
            return exit::INPUT_ERROR;
        }
    };
    let lang = match cli.lang.as_deref() {
        Some(l) => Lang::from_locale(l),
        None => config.lang.unwrap_or_else(system_lang),
    };
    let clerk = cli
        .clerk
        .clone()
        .or_else(|| config.clerk.clone())
        .unwrap_or_else(os_user);
    let machine = gethostname::gethostname().to_string_lossy().into_owned();
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!(
            "{}: {} ({e})",
            lang.pick("无法创建数据目录", "cannot create the data directory"),
            data_dir.display()
        );
        return exit::STORE_ERROR;
    }
    let engine = match cli.engine.as_deref() {
        Some(name) => match name.parse::<schoolsync_store::Engine>() {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("{e}");
                return exit::USAGE;
            }
        },
        None => config.engine,
    };
    // A repair cut between its renames is finished before any store is opened.
    if let Err(e) = crate::repair::finish_interrupted(&data_dir.join("store")) {
        return report_error(&AppError::Store(e), lang);
    }
    let actor = Actor { clerk, machine };
    let out = Output {
        lang,
        json: cli.json,
    };
    if let Command::Run {
        interval_secs,
        desk,
    } = cli.command
    {
        let desk_config = match desk_config(&config, desk, lang) {
            Ok(d) => d,
            Err(code) => return code,
        };
        let opener = crate::gate::Opener {
            store_dir: data_dir.join("store"),
            engine,
            config: config.clone(),
            actor: actor.clone(),
            // The desk is Chinese unless English is asked for (flag, variable or agent.toml); the
            // system locale of a school PC says little about its clerk.
            lang: cli
                .lang
                .as_deref()
                .map(Lang::from_locale)
                .or(config.lang)
                .unwrap_or(Lang::Zh),
        };
        return run_agent(opener, desk_config, interval_secs, lang);
    }
    if let Command::Repair = cli.command {
        return match crate::repair::repair(&data_dir.join("store"), engine) {
            Ok(report) => {
                report.print(lang, cli.json);
                exit::OK
            }
            Err(e) => report_error(&AppError::Store(e), lang),
        };
    }
    let store = match open_store(&data_dir.join("store"), lang, engine) {
        Ok(s) => s,
        Err(e) => return report_error(&e, lang),
    };
    let agent = Agent::new(store, config, actor);
    match execute(&agent, cli.command, &out) {
        Ok(()) => exit::OK,
        Err(e) => report_error(&e, lang),
    }
}

/// Merges `run`'s desk flags over `[desk]` and checks the address; an exit code if refused.
fn desk_config(
    config: &Config,
    args: DeskArgs,
    lang: Lang,
) -> Result<crate::config::DeskConfig, u8> {
    let mut desk = config.desk.clone();
    desk.enabled &= !args.no_desk;
    desk.port = args.desk_port.unwrap_or(desk.port);
    desk.bind = args.desk_bind.unwrap_or(desk.bind);
    desk.allow_remote |= args.desk_allow_remote;
    if let Some(pin) = args.desk_pin {
        desk.pin = Some(pin);
    }
    if let Err(e) = crate::desk::check_config(&desk) {
        eprintln!("{}", e.message(lang));
        return Err(exit::USAGE);
    }
    Ok(desk)
}

/// `run`: the sync loop and, unless turned off, the clerk desk, until Ctrl-C.
fn run_agent(
    opener: crate::gate::Opener,
    desk: crate::config::DeskConfig,
    interval_secs: u64,
    lang: Lang,
) -> u8 {
    eprintln!(
        "{}",
        lang.pick(
            "schoolsync-agent 正在运行：有修改后会自动同步。按 Ctrl-C 停止。",
            "schoolsync-agent is running: changes are synced soon after they are made. Ctrl-C stops it."
        )
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(_) => return exit::INTERNAL,
    };
    let wait_ms = lock_wait_ms();
    let gate = crate::gate::Gate::new(opener, wait_ms);
    runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let desk_task = if desk.enabled {
            match crate::desk::serve(gate.clone(), &desk, stop_rx.clone()).await {
                Ok((addr, task)) => {
                    eprintln!(
                        "{} http://{addr}/",
                        lang.pick(
                            "录入页面（用浏览器打开）：",
                            "clerk desk (open in a browser):"
                        )
                    );
                    Some(task)
                }
                Err(e) => {
                    eprintln!(
                        "{} {}:{}: {e}",
                        lang.pick(
                            "录入页面无法启动（端口可能被占用，可用 --desk-port 换一个）",
                            "the clerk desk cannot start (the port may be in use; try --desk-port)"
                        ),
                        desk.bind,
                        desk.port
                    );
                    return exit::INPUT_ERROR;
                }
            }
        } else {
            None
        };
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let result = crate::sync::run_loop(&gate, lang, interval_secs.max(1) * 1000, stop).await;
        let _ = stop_tx.send(true);
        if let Some(task) = desk_task {
            let _ = task.await;
        }
        match result {
            Ok(()) => exit::OK,
            Err(e) => report_error(&e, lang),
        }
    })
}

fn lock_wait_ms() -> u64 {
    std::env::var("SCHOOLSYNC_LOCK_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LOCK_WAIT_MS)
}

/// How long a command waits for a running agent's sync round to release the store
/// (`SCHOOLSYNC_LOCK_WAIT_MS`, default 20 s): a round takes seconds, so a clerk's command waits
/// briefly instead of failing.
pub const LOCK_WAIT_MS: u64 = 20_000;

/// Opens the store, waiting while another agent process (a `run` round) holds it.
fn open_store(
    dir: &std::path::Path,
    lang: Lang,
    engine: Option<schoolsync_store::Engine>,
) -> Result<DocStore, AppError> {
    let wait_ms = lock_wait_ms();
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        // The agent's store is small: check all of it on open where the engine can (redb).
        match DocStore::open_with(dir, engine, true) {
            Err(schoolsync_store::StoreError::Kv(schoolsync_store::KvError::Locked { .. }))
                if (started.elapsed().as_millis() as u64) < wait_ms =>
            {
                if !told {
                    eprintln!(
                        "{}",
                        lang.pick(
                            "正在等待另一个 schoolsync-agent 完成同步……",
                            "waiting for another schoolsync-agent to finish syncing..."
                        )
                    );
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other.map_err(AppError::Store),
        }
    }
}

fn report_error(e: &AppError, lang: Lang) -> u8 {
    eprintln!("{}", error_message(e, lang));
    if let AppError::ImportRefused(rows) = e {
        for row in rows {
            let column = row.column.as_deref().map(|c| match lang {
                Lang::Zh => format!("“{c}”列"),
                Lang::En => format!("column {c:?}"),
            });
            match lang {
                Lang::Zh => eprintln!(
                    "  第 {} 行{}：{}",
                    row.line,
                    column.unwrap_or_default(),
                    row.reason
                ),
                Lang::En => eprintln!(
                    "  line {}{}: {}",
                    row.line,
                    column.map(|c| format!(", {c}")).unwrap_or_default(),
                    row.reason
                ),
            }
        }
    }
    use schoolsync_store::kv::KvError;
    use schoolsync_store::StoreError;
    match e {
        AppError::NotInitialised | AppError::OtherSchool { .. } => exit::NOT_INITIALISED,
        AppError::Refused(_) | AppError::ImportRefused(_) => exit::REFUSED,
        AppError::FileUnreadable { .. } => exit::INPUT_ERROR,
        AppError::Store(StoreError::Kv(KvError::Locked { .. })) => exit::STORE_LOCKED,
        AppError::Store(StoreError::Kv(KvError::EngineMismatch { .. })) => exit::INPUT_ERROR,
        AppError::Store(_) => exit::STORE_ERROR,
        AppError::NoUpstream => exit::NOT_INITIALISED,
        AppError::SyncFailed { .. } => exit::SYNC_FAILED,
    }
}

struct Output {
    lang: Lang,
    json: bool,
}

impl Output {
    fn json<T: serde::Serialize>(&self, value: &T) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }

    fn written(&self, w: &Written, zh: &str, en: &str) {
        if self.json {
            return self.json(w);
        }
        let note = if w.changes == 0 {
            self.lang.pick(
                "（内容与已保存的相同，未作修改）",
                " (identical to what was saved: nothing changed)",
            )
        } else {
            ""
        };
        println!("{}{note}", self.lang.pick(zh, en));
        for (key, finding) in &w.findings {
            println!(
                "  {} {key}: {}",
                self.lang.pick("提示", "finding"),
                finding.message(self.lang)
            );
        }
    }
}

fn class_id(text: &str) -> Result<ClassId, AppError> {
    Ok(text.parse()?)
}

fn date(text: &str) -> Result<Day, AppError> {
    Ok(Day(parse_date(text)?))
}

fn execute(agent: &Agent, command: Command, out: &Output) -> Result<(), AppError> {
    let lang = out.lang;
    match command {
        Command::Init(a) => {
            let upstreams = if a.upstreams.is_empty() && a.ca.is_none() {
                None
            } else {
                Some(crate::sync::Upstreams {
                    urls: a.upstreams.clone(),
                    ca_pem: a.ca.as_deref().map(crate::sync::read_ca).transpose()?,
                })
            };
            if let Some(file) = &a.credential {
                // Checked before anything is written: a wrong file must not half-initialise.
                crate::sync::read_credential_for(file, &a.school, &a.county)?;
            }
            let w = agent.init(&a.school, &a.county, &a.name, upstreams.as_ref(), now_ms())?;
            if let Some(file) = &a.credential {
                crate::sync::install_credential(agent, file)?;
            }
            out.written(
                &w,
                &format!("已登记学校 {} {}", a.school, a.name),
                &format!("school {} {} registered", a.school, a.name),
            );
        }
        Command::Class(ClassCommand::Add {
            class,
            grade,
            enrolled,
        }) => {
            let grade = schoolsync_protocol::records::parse_grade(&grade)?;
            let info = ClassInfo::new(class_id(&class)?, grade, enrolled)?;
            let w = agent.add_classes(std::slice::from_ref(&info), "class add", now_ms())?;
            out.written(
                &w,
                &format!("已保存班级 {class}"),
                &format!("class {class} saved"),
            );
        }
        Command::Class(ClassCommand::List) => {
            let profile = agent.profile()?;
            let mut classes: Vec<_> = profile.classes.values().collect();
            classes.sort_by(|a, b| (a.grade, &a.class).cmp(&(b.grade, &b.class)));
            if out.json {
                out.json(&classes);
                return Ok(());
            }
            println!(
                "{}",
                lang.pick("班级\t年级\t在籍人数", "class\tgrade\tenrolled")
            );
            for c in classes {
                println!("{}\t{}\t{}", c.class, c.grade, c.enrolled);
            }
        }
        Command::Attendance(AttendanceCommand::Record {
            date: d,
            class,
            expected,
            present,
            sick,
            personal,
            other,
            symptom,
        }) => {
            let mut symptoms = std::collections::BTreeMap::new();
            for s in &symptom {
                let (name, n) = s.split_once('=').ok_or_else(|| HardError::Invalid {
                    field: "symptom",
                    text: s.clone(),
                })?;
                let code = Symptom::parse(name).ok_or_else(|| HardError::Invalid {
                    field: "symptom",
                    text: name.to_owned(),
                })?;
                let n: i64 = n.trim().parse().map_err(|_| HardError::Invalid {
                    field: "symptom",
                    text: s.clone(),
                })?;
                symptoms.insert(code.code().to_owned(), count("sick", n)?);
            }
            let record = Attendance {
                date: date(&d)?,
                class: class_id(&class)?,
                expected: count("expected", expected)?,
                present: count("present", present)?,
                sick: count("sick", sick)?,
                personal: count("personal", personal)?,
                other: count("other", other)?,
                symptoms,
            };
            let w = agent.write_records(
                &[NewRecord::Attendance(record)],
                "attendance record",
                now_ms(),
            )?;
            out.written(
                &w,
                &format!("已保存 {class} 班 {d} 出勤"),
                &format!("attendance of {class} on {d} saved"),
            );
        }
        Command::Homework(HomeworkCommand::Add {
            date: d,
            class,
            subject,
            minutes,
            kind,
            at_home: _,
            in_school,
            layer,
            content,
            teacher,
            flags,
        }) => {
            let item = HomeworkItem {
                date: date(&d)?,
                class: class_id(&class)?,
                subject: schoolsync_protocol::records::text("subject", &subject, true)?,
                content: schoolsync_protocol::records::text("content", &content, false)?,
                kind: HomeworkType::parse(&kind).ok_or(HardError::Invalid {
                    field: "type",
                    text: kind.clone(),
                })?,
                layer: Layer::parse(&layer).ok_or(HardError::Invalid {
                    field: "layer",
                    text: layer.clone(),
                })?,
                place: if in_school {
                    Place::InSchool
                } else {
                    Place::AtHome
                },
                minutes: homework_minutes(minutes)?,
                teacher: teacher
                    .map(|t| schoolsync_protocol::records::text("teacher", &t, false))
                    .transpose()?
                    .filter(|t| !t.is_empty()),
                review: None,
                published: false,
                flags: import::homework_flags(&flags.join(","))?,
            };
            let w = agent.write_records(&[NewRecord::Homework(item)], "homework add", now_ms())?;
            out.written(
                &w,
                &format!("已保存 {class} 班 {d} {subject}作业"),
                &format!("{subject} homework of {class} on {d} saved"),
            );
        }
        Command::Homework(HomeworkCommand::Review {
            date: d,
            class,
            by,
            publish,
        }) => {
            let day = date(&d)?;
            let class = class.as_deref().map(class_id).transpose()?;
            if let Some(by) = by {
                let w = agent.review_homework(day.0, class.as_ref(), &by, publish, now_ms())?;
                out.written(
                    &w,
                    &format!("已审核 {} 项作业", w.records),
                    &format!("{} homework items reviewed", w.records),
                );
            } else {
                let items: Vec<HomeworkItem> = agent
                    .report(day.0)?
                    .into_iter()
                    .filter(|r| class.as_ref().is_none_or(|c| *c == r.class.class))
                    .flat_map(|r| r.homework)
                    .collect();
                if out.json {
                    out.json(&items);
                    return Ok(());
                }
                for h in &items {
                    let state = match (&h.review, h.published) {
                        (None, _) => lang.pick("未审核", "not reviewed").to_owned(),
                        (Some(r), false) => format!(
                            "{} {}",
                            lang.pick("已审核，未公示", "reviewed, not published"),
                            r.by
                        ),
                        (Some(r), true) => format!(
                            "{} {}",
                            lang.pick("已审核并公示", "reviewed and published"),
                            r.by
                        ),
                    };
                    println!(
                        "{}\t{}\t{}\t{}min\t{}",
                        h.class, h.subject, h.content, h.minutes, state
                    );
                }
            }
        }
        Command::Afterschool(AfterschoolCommand::Record {
            date: d,
            class,
            participants,
            start,
            end,
            content,
            teachers,
            outside_staff,
        }) => {
            let record = AfterSchool {
                date: date(&d)?,
                class: class_id(&class)?,
                enrolled: 0,
                participants: count("participants", participants)?,
                start: Clock::parse("start", &start)?,
                end: Clock::parse("end", &end)?,
                content: import::service_content(&content)?,
                teachers: count("teachers", teachers)?,
                outside_staff: count("outside_staff", outside_staff)?,
            };
            let w = agent.write_records(
                &[NewRecord::AfterSchool(record)],
                "afterschool record",
                now_ms(),
            )?;
            out.written(
                &w,
                &format!("已保存 {class} 班 {d} 课后服务"),
                &format!("after-school of {class} on {d} saved"),
            );
        }
        Command::Import(a) => import_file(agent, a, out)?,
        Command::Report { date: d } => {
            let day = date(&d)?;
            let report = agent.report(day.0)?;
            if out.json {
                out.json(&report);
                return Ok(());
            }
            print_report(&report, &d, lang);
        }
        Command::List => {
            let docs = agent.list()?;
            if out.json {
                out.json(&docs);
                return Ok(());
            }
            println!(
                "{}",
                lang.pick(
                    "文档\t出勤\t作业\t课后服务\t班级\t字节",
                    "document\tattendance\thomework\tafterschool\tclasses\tbytes"
                )
            );
            for d in docs {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    d.id, d.attendance, d.homework, d.afterschool, d.classes, d.bytes
                );
            }
        }
        Command::Status => {
            let s = agent.status()?;
            if out.json {
                out.json(&s);
                return Ok(());
            }
            let none = lang.pick("无", "none");
            println!("{}: {} {}", lang.pick("学校", "school"), s.school, s.name);
            println!(
                "{}: {} {}",
                lang.pick("县区", "county"),
                s.county,
                s.county_name
            );
            println!("{}: {}", lang.pick("班级数", "classes"), s.classes);
            println!(
                "{}: {} ({} KiB)",
                lang.pick("文档数", "documents"),
                s.documents,
                s.store_bytes / 1024
            );
            println!(
                "{}: {}",
                lang.pick("最近修改", "last change"),
                s.last_change.as_deref().unwrap_or(none)
            );
            if s.upstreams.is_empty() {
                println!(
                    "{}: {}",
                    lang.pick("上级服务器", "upstream"),
                    lang.pick(
                        "未配置（仅本机保存）",
                        "not configured (saved on this computer only)"
                    )
                );
            }
            for u in &s.upstreams {
                let when = |ms: Option<i64>| {
                    ms.and_then(chrono::DateTime::from_timestamp_millis)
                        .map(|t| {
                            t.with_timezone(&chrono::Local)
                                .format("%Y-%m-%d %H:%M:%S")
                                .to_string()
                        })
                        .unwrap_or_else(|| lang.pick("从未", "never").to_owned())
                };
                println!("{}: {}", lang.pick("上级服务器", "upstream"), u.url);
                println!(
                    "  {}: {}",
                    lang.pick("最近成功同步", "last success"),
                    when(u.last_success_ms)
                );
                println!(
                    "  {}: {}",
                    lang.pick("未确认的修改", "changes not yet confirmed"),
                    u.unconfirmed_changes
                );
                let error = match lang {
                    Lang::Zh => u.last_error_zh.as_deref(),
                    Lang::En => u.last_error_en.as_deref(),
                };
                if let Some(error) = error {
                    println!("  {}: {error}", lang.pick("最近错误", "last error"));
                }
            }
            if s.conflicts > 0 {
                println!(
                    "{}: {} ({})",
                    lang.pick("冲突", "conflicts"),
                    s.conflicts,
                    lang.pick("两台电脑同时修改了同一记录，两个值都已保留，见 report", "the same record was edited on two computers; both values are kept, see report")
                );
            }
        }
        Command::Enroll { file } => {
            let claims = crate::sync::install_credential(agent, &file)?;
            if out.json {
                out.json(&serde_json::json!({ "credential": claims.id }));
            } else {
                println!(
                    "{}",
                    lang.pick(
                        &format!("已安装接入凭证 {}，下次同步时生效。", claims.id),
                        &format!(
                            "credential {} installed; it is used from the next sync.",
                            claims.id
                        )
                    )
                );
            }
        }
        Command::Sync => sync_command(agent, out)?,
        Command::Run { .. } | Command::Repair => {} // Handled before the store is opened.
    }
    Ok(())
}

fn sync_command(agent: &Agent, out: &Output) -> Result<(), AppError> {
    let lang = out.lang;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::SyncFailed {
            message: e.to_string(),
        })?;
    let bar = if std::io::stderr().is_terminal() && !out.json {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let outcome = runtime.block_on(crate::sync::sync_now(agent, now_ms(), lang, &mut |s| {
        bar.set_message(match lang {
            Lang::Zh => format!(
                "同步中：第 {} 轮，上传 {} 项，下载 {} 项",
                s.rounds, s.changes_up, s.changes_down
            ),
            Lang::En => format!(
                "syncing: round {}, {} up, {} down",
                s.rounds, s.changes_up, s.changes_down
            ),
        });
    }));
    bar.finish_and_clear();
    let outcome = outcome?;
    for (url, reason) in &outcome.failed {
        eprintln!("{} {url}: {reason}", lang.pick("未连上", "could not reach"));
    }
    if out.json {
        out.json(&outcome);
        return Ok(());
    }
    let s = &outcome.summary;
    match lang {
        Lang::Zh => println!(
            "已与 {} 同步：{} 个文档，上传 {} 项修改，下载 {} 项修改，发送 {} 字节，接收 {} 字节，{} 轮，用时 {:.1} 秒",
            outcome.upstream, s.documents_sent, s.changes_up, s.changes_down, s.bytes_up, s.bytes_down, s.rounds,
            outcome.elapsed_ms as f64 / 1000.0
        ),
        Lang::En => println!(
            "synced with {}: {} documents, {} changes up, {} changes down, {} bytes sent, {} bytes received, {} rounds, {:.1} s",
            outcome.upstream, s.documents_sent, s.changes_up, s.changes_down, s.bytes_up, s.bytes_down, s.rounds,
            outcome.elapsed_ms as f64 / 1000.0
        ),
    }
    for (school, reason) in &s.refused {
        eprintln!(
            "{} {school}: {reason}",
            lang.pick("上级拒收", "refused upstream")
        );
    }
    Ok(())
}

fn import_file(agent: &Agent, args: ImportArgs, out: &Output) -> Result<(), AppError> {
    let lang = out.lang;
    let unreadable = |reason: String| AppError::FileUnreadable {
        path: args.file.display().to_string(),
        reason,
    };
    let size = std::fs::metadata(&args.file)
        .map_err(|e| unreadable(e.to_string()))?
        .len();
    if size > import::FILE_BYTES_MAX as u64 {
        return Err(unreadable(format!(
            "{size} bytes > {}",
            import::FILE_BYTES_MAX
        )));
    }
    let bytes = std::fs::read(&args.file).map_err(|e| unreadable(e.to_string()))?;
    let profile = agent.profile()?;
    let bar = progress_bar(bytes.iter().filter(|b| **b == b'\n').count() as u64, lang);
    let parsed = import::parse(args.kind, &bytes, &profile, lang, &mut |n| {
        bar.set_position(n)
    });
    bar.finish_and_clear();
    for column in &parsed.ignored_columns {
        eprintln!(
            "{}",
            match lang {
                Lang::Zh => format!("提示：不认识的列“{column}”，已忽略"),
                Lang::En => format!("note: unknown column {column:?} ignored"),
            }
        );
    }
    if !parsed.errors.is_empty() {
        if parsed.errors_not_listed > 0 {
            eprintln!(
                "{}",
                match lang {
                    Lang::Zh => format!("（另有 {} 处错误未列出）", parsed.errors_not_listed),
                    Lang::En => format!("({} more errors not listed)", parsed.errors_not_listed),
                }
            );
        }
        return Err(AppError::ImportRefused(parsed.errors));
    }
    let action = format!("import {}", args.kind.name());
    let saving = spinner(parsed.rows, lang);
    let w = if args.kind == Kind::Classes {
        agent.add_classes(&parsed.classes, &action, now_ms())?
    } else {
        agent.write_records(&parsed.records, &action, now_ms())?
    };
    saving.finish_and_clear();
    out.written(
        &w,
        &format!("已导入 {} 行", parsed.rows),
        &format!("{} rows imported", parsed.rows),
    );
    Ok(())
}

fn progress_bar(len: u64, lang: Lang) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || len < 200 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let template = format!(
        "{} {{bar:40}} {{pos}}/{{len}}",
        lang.pick("检查中", "checking")
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// A spinner while a large import is written (the rows are checked by then).
fn spinner(rows: usize, lang: Lang) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || rows < 200 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(match lang {
        Lang::Zh => format!("正在保存 {rows} 行……"),
        Lang::En => format!("saving {rows} rows..."),
    });
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn print_report(report: &[ClassReport], date: &str, lang: Lang) {
    println!("{} {date}", lang.pick("日报", "Daily report"));
    for r in report {
        println!();
        println!(
            "== {} ({}{}, {} {}) ==",
            r.class.class,
            lang.pick("年级 ", "grade "),
            r.class.grade,
            lang.pick("在籍", "enrolled"),
            r.class.enrolled
        );
        match &r.attendance {
            Some(a) => println!(
                "  {}: {} {} / {} {}, {} {}, {} {}, {} {}",
                lang.pick("出勤", "attendance"),
                lang.pick("实到", "present"),
                a.present,
                lang.pick("应到", "expected"),
                a.expected,
                lang.pick("病假", "sick"),
                a.sick,
                lang.pick("事假", "personal"),
                a.personal,
                lang.pick("其他", "other"),
                a.other
            ),
            None => println!(
                "  {}",
                lang.pick("出勤：未登记", "attendance: not recorded")
            ),
        }
        if r.homework.is_empty() {
            println!(
                "  {}",
                lang.pick(
                    "作业：未登记（无作业公示记录）",
                    "homework: none recorded (no publicity record)"
                )
            );
        }
        for h in &r.homework {
            println!(
                "  {}: {} {} [{}, {}, {}] {} {}",
                lang.pick("作业", "homework"),
                h.subject,
                h.content,
                h.kind.label(lang),
                h.place.label(lang),
                h.layer.label(lang),
                h.minutes,
                lang.pick("分钟", "min")
            );
        }
        match &r.afterschool {
            Some(s) => println!(
                "  {}: {}–{} ({} {}), {} {}/{}",
                lang.pick("课后服务", "after-school"),
                s.start,
                s.end,
                s.minutes(),
                lang.pick("分钟", "min"),
                lang.pick("参加", "participants"),
                s.participants,
                s.enrolled
            ),
            None => println!(
                "  {}",
                lang.pick("课后服务：未登记", "after-school: not recorded")
            ),
        }
        for f in &r.findings {
            println!("  ! {}", f.message(lang));
        }
        if let Some(fb) = &r.feedback {
            println!(
                "  {} ({} {}): {}",
                lang.pick("上级意见", "feedback"),
                fb.by,
                fb.at,
                fb.note
            );
        }
        for c in &r.conflicts {
            println!(
                "  ? {} {} {}: {}",
                lang.pick(
                    "冲突（两台电脑同时修改，均已保留）",
                    "conflict (edited on two computers; both kept)"
                ),
                c.key,
                c.field.as_deref().unwrap_or(""),
                c.values.join(" | ")
            );
        }
    }
}
