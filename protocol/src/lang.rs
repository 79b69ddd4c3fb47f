//! The two languages of every user-facing message, and the Chinese names of record fields.
//!
//! Chinese is first: clerks read it. Field names here are the same words the CSV importer
//! accepts as column headers (see `agent::import`).

use serde::{Deserialize, Serialize};

/// A message language.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    /// Picks the language of a locale name such as `zh_CN.UTF-8`, `zh-Hans-CN` or `en-US`.
    /// Anything that is not English gets Chinese: the users are Chinese-speaking.
    pub fn from_locale(locale: &str) -> Lang {
        if locale.to_ascii_lowercase().starts_with("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }

    /// Chooses between a Chinese and an English text.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// Field names with their Chinese names: the first Chinese name is the one shown in messages;
/// all of them are accepted as CSV headers.
pub const FIELDS: &[(&str, &[&str])] = &[
    ("school", &["学校标识码", "学校代码"]),
    ("county", &["县区代码", "县区"]),
    ("class", &["班级", "班级名称"]),
    ("grade", &["年级"]),
    ("enrolled", &["在籍人数", "班级人数", "学生数"]),
    ("date", &["日期"]),
    ("expected", &["应到", "应到人数"]),
    ("present", &["实到", "实到人数"]),
    ("sick", &["因病缺课", "病假"]),
    ("personal", &["事假"]),
    ("other", &["其他缺课", "其他"]),
    ("fever", &["发热"]),
    ("cough", &["咳嗽"]),
    ("diarrhoea", &["腹泻"]),
    ("vomiting", &["呕吐"]),
    ("rash", &["皮疹"]),
    ("subject", &["学科", "科目"]),
    ("minutes", &["预计时长", "预计完成时间", "时长", "分钟"]),
    ("type", &["作业类型", "类型"]),
    ("place", &["完成地点", "地点"]),
    ("layer", &["分层", "作业分层"]),
    ("content", &["内容", "作业内容", "服务内容"]),
    ("teacher", &["教师", "布置教师"]),
    ("participants", &["参加人数", "参与人数"]),
    ("start", &["开始时间"]),
    ("end", &["结束时间"]),
    ("teachers", &["教师人数", "参与教师数"]),
    ("outside_staff", &["校外人员", "校外人员数"]),
    ("month", &["月份"]),
    ("document", &["文档"]),
    ("reviewer", &["审核人"]),
    ("flags", &["问题标记", "标记"]),
];

/// The Chinese name of a field, for messages; the field itself when it has none.
pub fn field_zh(field: &str) -> &str {
    FIELDS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, zh)| zh[0])
        .unwrap_or(field)
}

/// The field a CSV header names, in English or Chinese, ignoring case, spaces and `-`/`_`.
pub fn field_of_header(header: &str) -> Option<&'static str> {
    let norm: String = header
        .trim()
        .trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    FIELDS.iter().find_map(|(name, zh)| {
        let en: String = name.chars().filter(|c| *c != '_').collect();
        (en == norm || zh.contains(&norm.as_str()) || (*name == "diarrhoea" && norm == "diarrhea"))
            .then_some(*name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(field_of_header("班级"), Some("class"));
        assert_eq!(field_of_header(" Enrolled "), Some("enrolled"));
        assert_eq!(field_of_header("outside-staff"), Some("outside_staff"));
        assert_eq!(field_of_header("\u{feff}日期"), Some("date"));
        assert_eq!(field_of_header("预计完成时间"), Some("minutes"));
        assert_eq!(field_of_header("colour"), None);
        assert_eq!(Lang::from_locale("en_US.UTF-8"), Lang::En);
        assert_eq!(Lang::from_locale("zh-Hans-CN"), Lang::Zh);
    }
}
