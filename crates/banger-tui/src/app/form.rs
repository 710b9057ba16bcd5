//! The create form: its fields, editing, and turning what was typed into a
//! [`VmCreateRequest`] (or saying which field is wrong).

use banger_api::vms::VmCreateRequest;
use banger_api::{ImageName, VmName};

use crate::text::parse_size;

/// Longest text a form field takes (names are shorter; this only stops a
/// stuck key from growing a field without end).
const MAX_FIELD: usize = 64;

/// A field of the create form, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// VM name (empty: the daemon picks one).
    Name,
    /// Image (empty: the default image).
    Image,
    /// Virtual CPUs.
    Vcpus,
    /// Memory (MiB, or a size such as `4G`).
    Memory,
    /// Work disk size (`20G`).
    Disk,
    /// NAT on or off.
    Nat,
}

impl Field {
    /// Every field, top to bottom.
    pub const ALL: [Self; 6] = [
        Self::Name,
        Self::Image,
        Self::Vcpus,
        Self::Memory,
        Self::Disk,
        Self::Nat,
    ];

    /// The label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "Name",
            Self::Image => "Image",
            Self::Vcpus => "vCPUs",
            Self::Memory => "Memory",
            Self::Disk => "Disk",
            Self::Nat => "NAT",
        }
    }

    /// What an empty field means.
    pub fn placeholder(self) -> &'static str {
        match self {
            Self::Name => "generated",
            Self::Image => "default image",
            Self::Vcpus => "2",
            Self::Memory => "2G (MiB or 512M, 4G)",
            Self::Disk => "8G",
            Self::Nat => "",
        }
    }
}

/// The create form's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateForm {
    /// Text of the name field.
    pub name: String,
    /// Text of the image field.
    pub image: String,
    /// Text of the vCPU field.
    pub vcpus: String,
    /// Text of the memory field.
    pub memory: String,
    /// Text of the disk field.
    pub disk: String,
    /// NAT checkbox.
    pub nat: bool,
    /// Index into [`Field::ALL`] of the focused field.
    pub focus: usize,
    /// Why the last submit was refused.
    pub error: Option<String>,
}

impl CreateForm {
    /// The focused field.
    pub fn focused(&self) -> Field {
        Field::ALL[self.focus.min(Field::ALL.len() - 1)]
    }

    /// Moves the focus by `delta` fields, wrapping.
    pub fn move_focus(&mut self, delta: isize) {
        let len = Field::ALL.len() as isize;
        self.focus = (self.focus as isize + delta).rem_euclid(len) as usize;
    }

    /// The text of a field (`None` for the checkbox).
    pub fn text(&self, field: Field) -> Option<&str> {
        match field {
            Field::Name => Some(&self.name),
            Field::Image => Some(&self.image),
            Field::Vcpus => Some(&self.vcpus),
            Field::Memory => Some(&self.memory),
            Field::Disk => Some(&self.disk),
            Field::Nat => None,
        }
    }

    fn text_mut(&mut self, field: Field) -> Option<&mut String> {
        match field {
            Field::Name => Some(&mut self.name),
            Field::Image => Some(&mut self.image),
            Field::Vcpus => Some(&mut self.vcpus),
            Field::Memory => Some(&mut self.memory),
            Field::Disk => Some(&mut self.disk),
            Field::Nat => None,
        }
    }

    /// Types a character into the focused field; on the NAT checkbox, space
    /// (or `x`) toggles and `y`/`n` set it.
    pub fn type_char(&mut self, c: char) {
        self.error = None;
        let field = self.focused();
        match self.text_mut(field) {
            Some(text) => {
                if !c.is_control() && text.chars().count() < MAX_FIELD {
                    text.push(c);
                }
            }
            None => match c {
                ' ' | 'x' => self.nat = !self.nat,
                'y' | 'Y' => self.nat = true,
                'n' | 'N' => self.nat = false,
                _ => {}
            },
        }
    }

    /// Deletes the last character of the focused field.
    pub fn backspace(&mut self) {
        self.error = None;
        let field = self.focused();
        if let Some(text) = self.text_mut(field) {
            text.pop();
        }
    }

    /// Empties the focused field.
    pub fn clear(&mut self) {
        self.error = None;
        let field = self.focused();
        if let Some(text) = self.text_mut(field) {
            text.clear();
        }
    }

    /// Puts the next (or previous) of `images` into the image field.
    pub fn cycle_image(&mut self, images: &[ImageName], forward: bool) {
        if images.is_empty() {
            return;
        }
        let current = images.iter().position(|image| image.as_str() == self.image);
        let next = match (current, forward) {
            (None, true) => 0,
            (None, false) => images.len() - 1,
            (Some(index), true) => (index + 1) % images.len(),
            (Some(index), false) => (index + images.len() - 1) % images.len(),
        };
        self.image = images[next].to_string();
        self.error = None;
    }

    /// The request the form describes, or which field is wrong and why.
    pub fn request(&self) -> Result<VmCreateRequest, (Field, String)> {
        let name = optional(&self.name)
            .map(|text| {
                VmName::parse(text).map_err(|error| (Field::Name, format!("name: {error}")))
            })
            .transpose()?;
        let image = optional(&self.image)
            .map(|text| {
                ImageName::parse(text).map_err(|error| (Field::Image, format!("image: {error}")))
            })
            .transpose()?;
        let vcpus = optional(&self.vcpus)
            .map(|text| match text.parse::<u8>() {
                Ok(count) if count > 0 => Ok(count),
                _ => Err((
                    Field::Vcpus,
                    format!("vCPUs: {text:?} is not a number from 1 to 255"),
                )),
            })
            .transpose()?;
        let memory_mib = optional(&self.memory)
            .map(|text| {
                let mib = match text.parse::<u32>() {
                    Ok(mib) => Some(mib),
                    Err(_) => parse_size(text).and_then(|bytes| u32::try_from(bytes >> 20).ok()),
                };
                mib.filter(|mib| *mib > 0).ok_or_else(|| {
                    (
                        Field::Memory,
                        format!("memory: {text:?} is not MiB or a size such as 4G"),
                    )
                })
            })
            .transpose()?;
        let disk_bytes = optional(&self.disk)
            .map(|text| {
                parse_size(text).filter(|bytes| *bytes > 0).ok_or_else(|| {
                    (
                        Field::Disk,
                        format!("disk: {text:?} is not a size such as 20G"),
                    )
                })
            })
            .transpose()?;
        Ok(VmCreateRequest {
            name,
            image,
            vcpus,
            memory_mib,
            disk_bytes,
            no_start: false,
            nat: self.nat,
        })
    }
}

/// The trimmed text, or `None` when there is none.
fn optional(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_form_is_all_defaults() {
        let request = CreateForm::default().request().expect("valid");
        assert_eq!(request, VmCreateRequest::default());
    }

    #[test]
    fn typed_values_become_the_request() {
        let form = CreateForm {
            name: "dev".into(),
            image: "debian-bookworm".into(),
            vcpus: "4".into(),
            memory: "4G".into(),
            disk: "20G".into(),
            nat: true,
            ..CreateForm::default()
        };
        let request = form.request().expect("valid");
        assert_eq!(request.name.expect("name").as_str(), "dev");
        assert_eq!(request.vcpus, Some(4));
        assert_eq!(request.memory_mib, Some(4096));
        assert_eq!(request.disk_bytes, Some(20 << 30));
        assert!(request.nat);
        let form = CreateForm {
            memory: "1536".into(),
            ..CreateForm::default()
        };
        assert_eq!(form.request().expect("valid").memory_mib, Some(1536));
    }

    #[test]
    fn bad_fields_are_named() {
        for (form, field) in [
            (
                CreateForm {
                    name: "Bad Name".into(),
                    ..CreateForm::default()
                },
                Field::Name,
            ),
            (
                CreateForm {
                    vcpus: "0".into(),
                    ..CreateForm::default()
                },
                Field::Vcpus,
            ),
            (
                CreateForm {
                    memory: "lots".into(),
                    ..CreateForm::default()
                },
                Field::Memory,
            ),
            (
                CreateForm {
                    disk: "20X".into(),
                    ..CreateForm::default()
                },
                Field::Disk,
            ),
        ] {
            assert_eq!(form.request().expect_err("refused").0, field);
        }
    }

    #[test]
    fn editing_and_the_checkbox() {
        let mut form = CreateForm::default();
        for c in "dev".chars() {
            form.type_char(c);
        }
        form.backspace();
        assert_eq!(form.name, "de");
        form.move_focus(-1);
        assert_eq!(form.focused(), Field::Nat);
        form.type_char(' ');
        assert!(form.nat);
        form.type_char('n');
        assert!(!form.nat);
        form.move_focus(2);
        assert_eq!(form.focused(), Field::Image);
        let images = [
            ImageName::parse("a").expect("name"),
            ImageName::parse("b").expect("name"),
        ];
        form.cycle_image(&images, true);
        assert_eq!(form.image, "a");
        form.cycle_image(&images, false);
        assert_eq!(form.image, "b");
        form.clear();
        assert_eq!(form.image, "");
    }
}
