//! The fork form: the new VM's name and how many copies, turned into a
//! [`VmForkRequest`] (or the field that is wrong and why). The daemon
//! names copies `NAME-1` ... `NAME-COUNT` when there are several; that
//! rule is checked here so a name that grows too long is refused in the
//! form.

use banger_api::VmName;
use banger_api::snapshots::{MAX_FORK_COUNT, VmForkRequest};

/// Longest name the form takes (a VM name is at most 63 characters; this
/// only stops a stuck key from growing the field without end).
const MAX_NAME: usize = 64;
/// Digits the count field takes.
const MAX_COUNT_DIGITS: usize = 2;

/// A field of the fork form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkField {
    /// Name of the new VM (the prefix of the copies' names).
    Name,
    /// How many VMs to make.
    Count,
}

impl ForkField {
    /// Every field, top to bottom.
    pub const ALL: [Self; 2] = [Self::Name, Self::Count];

    /// The label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "Name",
            Self::Count => "Count",
        }
    }
}

/// What a fork is asked to make, for labels: the name and the count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkTarget {
    /// The name asked for.
    pub name: VmName,
    /// How many copies.
    pub count: u32,
}

impl ForkTarget {
    /// `try`, or `agent-1…agent-3`.
    pub fn describe(&self) -> String {
        if self.count > 1 {
            format!("{name}-1…{name}-{}", self.count, name = self.name)
        } else {
            self.name.to_string()
        }
    }
}

/// The fork form's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkForm {
    /// The VM to copy.
    pub source: VmName,
    /// Text of the name field.
    pub name: String,
    /// Text of the count field.
    pub count: String,
    /// Index into [`ForkField::ALL`] of the focused field.
    pub focus: usize,
    /// Why the last submit was refused.
    pub error: Option<String>,
}

impl ForkForm {
    /// A form to fork `source`: name `<source>-copy` (when that is a valid
    /// name), one copy.
    pub fn new(source: VmName) -> Self {
        let name = format!("{source}-copy");
        let name = if VmName::parse(&name).is_ok() {
            name
        } else {
            String::new()
        };
        Self {
            source,
            name,
            count: "1".to_owned(),
            focus: 0,
            error: None,
        }
    }

    /// The focused field.
    pub fn focused(&self) -> ForkField {
        ForkField::ALL[self.focus.min(ForkField::ALL.len() - 1)]
    }

    /// Moves the focus by `delta` fields, wrapping.
    pub fn move_focus(&mut self, delta: isize) {
        let len = ForkField::ALL.len() as isize;
        self.focus = (self.focus as isize + delta).rem_euclid(len) as usize;
    }

    /// The text of a field.
    pub fn text(&self, field: ForkField) -> &str {
        match field {
            ForkField::Name => &self.name,
            ForkField::Count => &self.count,
        }
    }

    fn text_mut(&mut self, field: ForkField) -> &mut String {
        match field {
            ForkField::Name => &mut self.name,
            ForkField::Count => &mut self.count,
        }
    }

    /// Types a character into the focused field (the count takes digits
    /// only).
    pub fn type_char(&mut self, c: char) {
        self.error = None;
        let field = self.focused();
        let text = self.text_mut(field);
        let fits = match field {
            ForkField::Name => !c.is_control() && text.chars().count() < MAX_NAME,
            ForkField::Count => c.is_ascii_digit() && text.len() < MAX_COUNT_DIGITS,
        };
        if fits {
            text.push(c);
        }
    }

    /// Deletes the last character of the focused field.
    pub fn backspace(&mut self) {
        self.error = None;
        let field = self.focused();
        self.text_mut(field).pop();
    }

    /// Empties the focused field.
    pub fn clear(&mut self) {
        self.error = None;
        let field = self.focused();
        self.text_mut(field).clear();
    }

    /// Adds `delta` to the count, staying within 1 to [`MAX_FORK_COUNT`].
    pub fn step_count(&mut self, delta: i64) {
        self.error = None;
        let current = self.count.trim().parse::<i64>().unwrap_or(1);
        let next = (current + delta).clamp(1, i64::from(MAX_FORK_COUNT));
        self.count = next.to_string();
    }

    /// The names the fork would make, for the form's hint (`None` while a
    /// field is not valid).
    pub fn target(&self) -> Option<ForkTarget> {
        self.parse().ok().map(|(target, _)| target)
    }

    /// The request the form describes, or which field is wrong and why.
    pub fn request(&self) -> Result<(ForkTarget, VmForkRequest), (ForkField, String)> {
        self.parse()
    }

    fn parse(&self) -> Result<(ForkTarget, VmForkRequest), (ForkField, String)> {
        let text = self.name.trim();
        if text.is_empty() {
            return Err((ForkField::Name, "name: the new VM needs a name".to_owned()));
        }
        let name =
            VmName::parse(text).map_err(|error| (ForkField::Name, format!("name: {error}")))?;
        let count_text = self.count.trim();
        let count = match count_text.parse::<u32>() {
            Ok(count) if (1..=MAX_FORK_COUNT).contains(&count) => count,
            _ => {
                return Err((
                    ForkField::Count,
                    format!("count: {count_text:?} is not a number from 1 to {MAX_FORK_COUNT}"),
                ));
            }
        };
        let request = VmForkRequest {
            name: name.clone(),
            count: Some(count),
        };
        // The daemon's naming rule: a copy name that grows too long is
        // refused here, in the form.
        request
            .names()
            .map_err(|error| (ForkField::Name, format!("name: {error}")))?;
        let target = ForkTarget {
            name: name.clone(),
            count,
        };
        Ok((target, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> VmName {
        VmName::parse("web").expect("name")
    }

    #[test]
    fn defaults_are_a_copy_named_after_the_source() {
        let form = ForkForm::new(source());
        assert_eq!(form.name, "web-copy");
        let (target, request) = form.request().expect("valid");
        assert_eq!(request.name.as_str(), "web-copy");
        assert_eq!(request.count, Some(1));
        assert_eq!(target.describe(), "web-copy");
        // A source whose name is too long for the suffix gets no default.
        let long = VmName::parse(&"a".repeat(60)).expect("name");
        assert_eq!(ForkForm::new(long).name, "");
    }

    #[test]
    fn count_is_digits_within_the_limit() {
        let mut form = ForkForm::new(source());
        form.move_focus(1);
        assert_eq!(form.focused(), ForkField::Count);
        form.type_char('x');
        form.type_char('6');
        assert_eq!(form.count, "16");
        form.type_char('7');
        assert_eq!(form.count, "16");
        form.step_count(1);
        assert_eq!(form.count, "16");
        form.clear();
        form.step_count(-1);
        assert_eq!(form.count, "1");
        form.step_count(2);
        let (target, request) = form.request().expect("valid");
        assert_eq!(request.count, Some(3));
        assert_eq!(target.describe(), "web-copy-1…web-copy-3");
    }

    #[test]
    fn bad_fields_are_named() {
        let mut form = ForkForm::new(source());
        form.name = "Bad Name".into();
        assert_eq!(form.request().expect_err("refused").0, ForkField::Name);
        form.name.clear();
        assert_eq!(form.request().expect_err("refused").0, ForkField::Name);
        form.name = "ok".into();
        for count in ["0", "17", ""] {
            form.count = count.into();
            assert_eq!(
                form.request().expect_err("refused").0,
                ForkField::Count,
                "{count}"
            );
        }
        // 62 characters are a valid name, but not with "-1" after them.
        form.name = "a".repeat(62);
        form.count = "2".into();
        let (field, message) = form.request().expect_err("refused");
        assert_eq!(field, ForkField::Name);
        assert!(message.contains("-1 is not a valid VM name"), "{message}");
        assert_eq!(form.target(), None);
    }
}
