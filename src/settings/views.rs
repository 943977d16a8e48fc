//! Page struct for Admin > Microsoft Azure > Entra ID User Source.

use askama::Template;
use askama_web::WebTemplate;

use crate::error::FieldErrors;
use crate::settings::model::{AttributeRowErrors, EntraForm, SYNC_INTERVALS};
use crate::settings::service::TestOutcome;
use crate::web::page::PageCtx;

pub struct AttrRowView {
    pub index: usize,
    pub name: String,
    pub property: String,
    pub name_error: Option<String>,
    pub property_error: Option<String>,
}

pub struct OptionView {
    pub value: String,
    pub label: &'static str,
    pub selected: bool,
}

/// The result box of "Test connection".
pub struct TestView {
    pub ok: bool,
    pub title: String,
    pub lines: Vec<String>,
}

impl From<&TestOutcome> for TestView {
    fn from(o: &TestOutcome) -> Self {
        match o {
            TestOutcome::Ok { users_on_first_page, returned, missing } => {
                let mut lines = vec![format!("Read {users_on_first_page} users on the first page.")];
                if !returned.is_empty() {
                    lines.push(format!("Properties that came back: {}.", returned.join(", ")));
                }
                if !missing.is_empty() {
                    lines.push(format!(
                        "Not returned for any user on this page: {}. Users may simply have no value, or the \
                         property is not readable by this application.",
                        missing.join(", ")
                    ));
                }
                Self { ok: true, title: "Connection works.".into(), lines }
            }
            TestOutcome::AuthFailed { code, detail, advice } => Self {
                ok: false,
                title: format!(
                    "Entra ID refused the application's credentials{}.",
                    code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
                ),
                lines: vec![advice.clone(), detail.clone()],
            },
            TestOutcome::PermissionDenied { code, detail } => Self {
                ok: false,
                title: format!("Missing permission (403 {code})."),
                lines: vec![
                    "Grant the application the Microsoft Graph application permissions User.Read.All and \
                     GroupMember.Read.All, then grant admin consent."
                        .into(),
                    detail.clone(),
                ],
            },
            TestOutcome::Unreachable { detail } => Self {
                ok: false,
                title: "Microsoft Graph is unreachable.".into(),
                lines: vec![detail.clone(), "Check the cloud's URLs and that this server can reach them.".into()],
            },
            TestOutcome::Failed { detail } => Self {
                ok: false,
                title: "The test failed.".into(),
                lines: vec![detail.clone()],
            },
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "settings/user_source.html")]
pub struct UserSourcePage {
    pub ctx: PageCtx,
    pub form: EntraForm,
    pub intervals: Vec<OptionView>,
    pub clouds: Vec<OptionView>,
    pub attributes: Vec<AttrRowView>,
    pub errors: FieldErrors,
    pub has_secret: bool,
    pub apple_pattern: bool,
    pub apple_source_email: bool,
    pub test: Option<TestView>,
}

impl UserSourcePage {
    pub fn new(
        ctx: PageCtx,
        form: EntraForm,
        errors: FieldErrors,
        row_errors: &[AttributeRowErrors],
        has_secret: bool,
        test: Option<TestView>,
    ) -> Self {
        let intervals = SYNC_INTERVALS
            .iter()
            .map(|(v, label)| OptionView {
                value: v.to_string(),
                label,
                selected: form.sync_interval == v.to_string(),
            })
            .collect();
        let clouds = [
            ("global", "Global"),
            ("usgov", "US Government"),
            ("china", "China (21Vianet)"),
            ("custom", "Custom"),
        ]
        .iter()
        .map(|(v, label)| OptionView {
            value: (*v).to_owned(),
            label,
            selected: form.cloud == *v,
        })
        .collect();
        let attributes = form
            .attributes
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let e = row_errors.get(i).cloned().unwrap_or_default();
                AttrRowView {
                    index: i,
                    name: a.name.clone(),
                    property: a.property.clone(),
                    name_error: e.name,
                    property_error: e.property,
                }
            })
            .collect();
        Self {
            apple_pattern: form.apple_id_mode != "none",
            apple_source_email: form.apple_id_mode != "upn",
            ctx,
            intervals,
            clouds,
            attributes,
            errors,
            has_secret,
            test,
            form,
        }
    }
}
