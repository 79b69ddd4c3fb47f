//! The slim stored layout of the three records: what each record map holds in a document.
//!
//! Every field of every record travels in every sync and stays in history forever, so records
//! are stored lean (measured: a school day's change is 42% smaller than with derived layouts):
//! - `date` and `class` are not stored: they are the record's key (`2026-11-03/3-2/...`) and are
//!   filled in from it when read ([`fill_from_key`]);
//! - optional values (teacher, review, flags, symptoms) that were never set are absent, not
//!   `null`; once set, clearing one writes `""` instead of deleting it, because a delete racing a
//!   put on another PC would hide the conflict. Counts are always stored (omitting zeros saved
//!   under 1% after compression);
//! - small lists and maps are one compact string: `homework-help,clubs`, `fever:2,cough:1`.
//!
//! Writing identical values produces no operations (autosurgeon compares before writing), so a
//! repeated import stays a no-op.

use std::collections::BTreeMap;

use autosurgeon::reconcile::{MapReconciler, NoKey};
use autosurgeon::{Hydrate, HydrateError, ReadDoc, Reconcile, Reconciler};
use chrono::NaiveDate;

use crate::ids::{parse_date, ClassId};
use crate::records::{
    AfterSchool, Attendance, Clock, Day, HomeworkFlag, HomeworkItem, HomeworkType, Layer, Place,
    Review, ServiceContent,
};

/// Placeholders until [`fill_from_key`] sets the real date and class.
fn placeholder() -> (Day, ClassId) {
    (Day(NaiveDate::MIN), ClassId::placeholder())
}

/// Sets `date` and `class` of a record read from the map entry `key` (`date/class[/...]`).
pub fn fill_from_key(key: &str, date: &mut Day, class: &mut ClassId) -> Result<(), HydrateError> {
    let mut parts = key.splitn(3, '/');
    let (Some(d), Some(c)) = (parts.next(), parts.next()) else {
        return Err(HydrateError::unexpected("date/class key", key.to_owned()));
    };
    *date =
        Day(parse_date(d).map_err(|_| HydrateError::unexpected("date in key", key.to_owned()))?);
    *class = c
        .parse()
        .map_err(|_| HydrateError::unexpected("class in key", key.to_owned()))?;
    Ok(())
}

/// Writes an optional text field. Once a field has held a value, `None` is written as `""`
/// rather than deleted: a delete racing a put on another PC would let the put win silently,
/// while two puts stay a visible conflict. A field that never held a value stays absent.
fn put_opt<M: MapReconciler>(
    m: &mut M,
    prop: &str,
    value: Option<impl AsRef<str>>,
) -> Result<(), M::Error> {
    match value {
        Some(v) => m.put(prop, v.as_ref()),
        None if m.entry(prop).is_some() => m.put(prop, ""),
        None => Ok(()),
    }
}

fn codes<T: Copy>(items: &[T], code: fn(T) -> &'static str) -> Option<String> {
    (!items.is_empty()).then(|| items.iter().map(|i| code(*i)).collect::<Vec<_>>().join(","))
}

fn parse_codes<T>(
    text: Option<String>,
    parse: fn(&str) -> Option<T>,
    what: &str,
) -> Result<Vec<T>, HydrateError> {
    text.unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| parse(p).ok_or_else(|| HydrateError::unexpected(what, p.to_owned())))
        .collect()
}

/// A record's fields, read in one pass over its map. A lookup per field (`hydrate_prop`) costs a
/// seek in the document each; reading every record of a term that way dominated the upstream's
/// content check of a first sync and the oversight indexer. The values are the visible ones
/// (the winners of any conflict), as a lookup would return.
struct Fields(Vec<(String, automerge::Value<'static>)>);

impl Fields {
    fn read<D: ReadDoc>(doc: &D, obj: &automerge::ObjId) -> Fields {
        Fields(
            doc.map_range(obj, ..)
                .map(|item| (item.key.into_owned(), item.value.into()))
                .collect(),
        )
    }

    fn value(&self, prop: &str) -> Option<&automerge::Value<'static>> {
        self.0.iter().find(|(k, _)| k == prop).map(|(_, v)| v)
    }

    /// A required field.
    fn get<T: Hydrate>(&self, prop: &str) -> Result<T, HydrateError> {
        match self.value(prop) {
            Some(automerge::Value::Scalar(s)) => T::hydrate_scalar(std::borrow::Cow::Borrowed(s)),
            Some(automerge::Value::Object(_)) => {
                Err(HydrateError::unexpected(prop, "an object".to_owned()))
            }
            None => T::hydrate_none(),
        }
    }

    /// An optional text field: absent, `null` or `""` is `None`.
    fn get_opt(&self, prop: &str) -> Result<Option<String>, HydrateError> {
        match self.value(prop) {
            None => Ok(None),
            Some(automerge::Value::Scalar(s)) => match s.as_ref() {
                automerge::ScalarValue::Null => Ok(None),
                automerge::ScalarValue::Str(t) => Ok(Some(t.to_string()).filter(|t| !t.is_empty())),
                other => Err(HydrateError::unexpected(prop, other.to_string())),
            },
            Some(automerge::Value::Object(_)) => {
                Err(HydrateError::unexpected(prop, "an object".to_owned()))
            }
        }
    }
}

impl Reconcile for Attendance {
    type Key<'a> = NoKey;
    fn reconcile<R: Reconciler>(&self, mut r: R) -> Result<(), R::Error> {
        let mut m = r.map()?;
        m.put("expected", self.expected)?;
        m.put("present", self.present)?;
        m.put("sick", self.sick)?;
        m.put("personal", self.personal)?;
        m.put("other", self.other)?;
        let symptoms = (!self.symptoms.is_empty()).then(|| {
            self.symptoms
                .iter()
                .map(|(s, n)| format!("{s}:{n}"))
                .collect::<Vec<_>>()
                .join(",")
        });
        put_opt(&mut m, "symptoms", symptoms)
    }
}

impl Hydrate for Attendance {
    fn hydrate_map<D: ReadDoc>(doc: &D, obj: &automerge::ObjId) -> Result<Self, HydrateError> {
        let (date, class) = placeholder();
        let f = Fields::read(doc, obj);
        let mut symptoms = BTreeMap::new();
        for part in f.get_opt("symptoms")?.unwrap_or_default().split(',') {
            if let Some((name, n)) = part.split_once(':') {
                let n = n
                    .parse()
                    .map_err(|_| HydrateError::unexpected("symptom count", part.to_owned()))?;
                symptoms.insert(name.to_owned(), n);
            }
        }
        Ok(Attendance {
            date,
            class,
            expected: f.get("expected")?,
            present: f.get("present")?,
            sick: f.get("sick")?,
            personal: f.get("personal")?,
            other: f.get("other")?,
            symptoms,
        })
    }
}

impl Reconcile for HomeworkItem {
    type Key<'a> = NoKey;
    fn reconcile<R: Reconciler>(&self, mut r: R) -> Result<(), R::Error> {
        let mut m = r.map()?;
        m.put("subject", &self.subject)?;
        m.put("content", &self.content)?;
        m.put("type", self.kind.code())?;
        m.put("layer", self.layer.code())?;
        m.put("place", self.place.code())?;
        m.put("minutes", self.minutes)?;
        m.put("published", self.published)?;
        put_opt(&mut m, "teacher", self.teacher.as_deref())?;
        // One field, `<at> <by>`: split in two, a concurrent re-review and clear could leave half
        // a review behind with no conflict shown.
        let review = self.review.as_ref().map(|r| format!("{} {}", r.at, r.by));
        put_opt(&mut m, "review", review)?;
        put_opt(&mut m, "flags", codes(&self.flags, HomeworkFlag::code))
    }
}

impl Hydrate for HomeworkItem {
    fn hydrate_map<D: ReadDoc>(doc: &D, obj: &automerge::ObjId) -> Result<Self, HydrateError> {
        let (date, class) = placeholder();
        let f = Fields::read(doc, obj);
        let code = |prop: &str| -> Result<String, HydrateError> { f.get(prop) };
        let bad = |what: &str, text: String| HydrateError::unexpected(what, text);
        let review = f.get_opt("review")?.and_then(|text| {
            text.split_once(' ').map(|(at, by)| Review {
                by: by.to_owned(),
                at: at.to_owned(),
            })
        });
        Ok(HomeworkItem {
            date,
            class,
            subject: f.get("subject")?,
            content: f.get("content")?,
            kind: HomeworkType::parse(&code("type")?)
                .ok_or_else(|| bad("homework type", code("type").unwrap_or_default()))?,
            layer: Layer::parse(&code("layer")?)
                .ok_or_else(|| bad("layer", code("layer").unwrap_or_default()))?,
            place: Place::parse(&code("place")?)
                .ok_or_else(|| bad("place", code("place").unwrap_or_default()))?,
            minutes: f.get("minutes")?,
            teacher: f.get_opt("teacher")?,
            review,
            published: f.get("published")?,
            flags: parse_codes(f.get_opt("flags")?, HomeworkFlag::parse, "homework flag")?,
        })
    }
}

impl Reconcile for AfterSchool {
    type Key<'a> = NoKey;
    fn reconcile<R: Reconciler>(&self, mut r: R) -> Result<(), R::Error> {
        let mut m = r.map()?;
        m.put("enrolled", self.enrolled)?;
        m.put("participants", self.participants)?;
        m.put("start", self.start)?;
        m.put("end", self.end)?;
        m.put("teachers", self.teachers)?;
        m.put("outside_staff", self.outside_staff)?;
        put_opt(
            &mut m,
            "content",
            codes(&self.content, ServiceContent::code),
        )
    }
}

impl Hydrate for AfterSchool {
    fn hydrate_map<D: ReadDoc>(doc: &D, obj: &automerge::ObjId) -> Result<Self, HydrateError> {
        let (date, class) = placeholder();
        let f = Fields::read(doc, obj);
        Ok(AfterSchool {
            date,
            class,
            enrolled: f.get("enrolled")?,
            participants: f.get("participants")?,
            start: f.get::<Clock>("start")?,
            end: f.get::<Clock>("end")?,
            content: parse_codes(
                f.get_opt("content")?,
                ServiceContent::parse,
                "after-school content",
            )?,
            teachers: f.get("teachers")?,
            outside_staff: f.get("outside_staff")?,
        })
    }
}
