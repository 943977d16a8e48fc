//! Page structs for Admin > Configurations: the list, the form (new and edit), and the preview.

use askama::Template;
use askama_web::WebTemplate;

use crate::configurations::model::{
    BUILTIN_VARIABLES, ConfigForm, Kind, PAST_DAYS, PairErrors, Payload, WifiSecurity,
};
use crate::configurations::service::{Configuration, Coverage, Resolved};
use crate::configurations::substitute::Refs;
use crate::error::FieldErrors;
use crate::settings::model::CustomAttribute;
use crate::web::page::PageCtx;

pub struct OptionView {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn options(items: &[(&str, &str)], current: &str) -> Vec<OptionView> {
    items
        .iter()
        .map(|(v, l)| OptionView {
            value: (*v).to_owned(),
            label: (*l).to_owned(),
            selected: *v == current,
        })
        .collect()
}

/// One row of the list page.
pub struct ListItem {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub variables: String,
    pub updated: String,
}

/// A "New …" button per kind.
pub struct KindLink {
    pub key: &'static str,
    pub label: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "configurations/list.html")]
pub struct ListPage {
    pub ctx: PageCtx,
    pub items: Vec<ListItem>,
    pub kinds: Vec<KindLink>,
}

pub fn format_time(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

impl ListPage {
    pub fn new(ctx: PageCtx, configs: &[Configuration]) -> Self {
        let items = configs
            .iter()
            .map(|c| ListItem {
                id: c.id.clone(),
                name: c.name.clone(),
                kind: c.payload.kind().label(),
                variables: Refs(&c.payload.variables()).to_string(),
                updated: format_time(c.updated_at),
            })
            .collect();
        Self {
            ctx,
            items,
            kinds: Kind::ALL
                .iter()
                .map(|k| KindLink {
                    key: k.key(),
                    label: k.label(),
                })
                .collect(),
        }
    }
}

/// A variable the form lists as available.
pub struct VariableHelp {
    pub name: String,
    pub about: String,
}

pub struct PairRowView {
    pub index: usize,
    pub key: String,
    pub value: String,
    pub key_error: Option<String>,
    pub value_error: Option<String>,
}

/// A line of the "users lacking a value" box.
pub struct CoverageView {
    pub variable: String,
    pub missing: i64,
    pub link: Option<String>,
    pub unknown: bool,
}

impl From<&Coverage> for CoverageView {
    fn from(c: &Coverage) -> Self {
        Self {
            variable: format!("${{{}}}", c.variable),
            missing: c.missing,
            link: c.link.clone(),
            unknown: c.unknown,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "configurations/form.html")]
pub struct FormPage {
    pub ctx: PageCtx,
    /// `None` for a new configuration.
    pub id: Option<String>,
    pub action: String,
    pub kind: &'static str,
    pub kind_label: &'static str,
    pub form: ConfigForm,
    pub errors: FieldErrors,
    pub pairs: Vec<PairRowView>,
    pub has_row_errors: bool,
    pub has_password: bool,
    pub past_days: Vec<OptionView>,
    pub securities: Vec<OptionView>,
    pub encryptions: Vec<OptionView>,
    pub eap_methods: Vec<OptionView>,
    pub variables: Vec<VariableHelp>,
    pub active_users: i64,
    pub coverage: Vec<CoverageView>,
}

impl FormPage {
    #[expect(clippy::too_many_arguments, reason = "one page, built in one place")]
    pub fn new(
        ctx: PageCtx,
        id: Option<String>,
        kind: Kind,
        mut form: ConfigForm,
        errors: FieldErrors,
        row_errors: &[PairErrors],
        has_password: bool,
        attrs: &[CustomAttribute],
        active_users: i64,
        coverage: &[Coverage],
    ) -> Self {
        // A password is never sent back to the browser, whatever the form held.
        form.password.clear();
        let action = match &id {
            Some(id) => format!("/admin/configurations/{id}"),
            None => "/admin/configurations/new".into(),
        };
        let pairs: Vec<PairRowView> = form
            .pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let e = row_errors.get(i).cloned().unwrap_or_default();
                PairRowView {
                    index: i,
                    key: p.key.clone(),
                    value: p.value.clone(),
                    key_error: e.key,
                    value_error: e.value,
                }
            })
            .collect();
        let past: Vec<(String, &str)> =
            PAST_DAYS.iter().map(|(v, l)| (v.to_string(), *l)).collect();
        let past: Vec<(&str, &str)> = past.iter().map(|(v, l)| (v.as_str(), *l)).collect();
        let variables = BUILTIN_VARIABLES
            .iter()
            .map(|(n, about)| VariableHelp {
                name: format!("${{{n}}}"),
                about: (*about).to_owned(),
            })
            .chain(attrs.iter().map(|a| VariableHelp {
                name: format!("${{{}}}", a.name),
                about: format!("custom attribute ({})", a.property),
            }))
            .collect();
        Self {
            ctx,
            id,
            action,
            kind: kind.key(),
            kind_label: kind.label(),
            has_row_errors: pairs
                .iter()
                .any(|p| p.key_error.is_some() || p.value_error.is_some()),
            pairs,
            has_password,
            past_days: options(&past, &form.past_days),
            securities: options(
                &[
                    ("enterprise", "Enterprise (802.1X, user credentials)"),
                    ("personal", "Personal (shared password)"),
                ],
                &form.security,
            ),
            encryptions: options(
                &[
                    ("WPA2", "WPA2"),
                    ("WPA3", "WPA3"),
                    ("Any", "Any (WPA2/WPA3)"),
                ],
                &form.encryption,
            ),
            eap_methods: options(&[("peap", "PEAP"), ("ttls", "EAP-TTLS")], &form.eap_method),
            variables,
            active_users,
            coverage: coverage.iter().map(CoverageView::from).collect(),
            errors,
            form,
        }
    }
}

/// One resolved field on the preview page.
pub struct ResolvedField {
    pub label: String,
    pub value: String,
    /// The field held variables, so this value was computed for the user.
    pub from_variables: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "configurations/preview.html")]
pub struct PreviewPage {
    pub ctx: PageCtx,
    pub id: String,
    pub name: String,
    pub kind_label: &'static str,
    pub user_query: String,
    /// Why nothing is shown (no such user, a variable no longer defined).
    pub problem: Option<String>,
    pub user_label: String,
    pub user_id: String,
    pub user_active: bool,
    pub missing: String,
    pub fields: Vec<ResolvedField>,
    pub document: String,
    pub download_label: &'static str,
}

impl PreviewPage {
    pub fn empty(
        ctx: PageCtx,
        c: &Configuration,
        user_query: String,
        problem: Option<String>,
    ) -> Self {
        Self {
            ctx,
            id: c.id.clone(),
            name: c.name.clone(),
            kind_label: c.payload.kind().label(),
            user_query,
            problem,
            user_label: String::new(),
            user_id: String::new(),
            user_active: true,
            missing: String::new(),
            fields: Vec::new(),
            document: String::new(),
            download_label: download_label(&c.payload),
        }
    }

    pub fn resolved(
        ctx: PageCtx,
        c: &Configuration,
        user_query: String,
        r: &Resolved,
        document: String,
    ) -> Self {
        let mut p = Self::empty(ctx, c, user_query, None);
        p.user_label = format!("{} ({})", r.user.display_name, r.user.upn);
        p.user_id.clone_from(&r.user.id);
        p.user_active = r.user.active;
        p.missing = Refs(&r.missing).to_string();
        p.fields = resolved_fields(&c.payload, &r.payload);
        p.document = document;
        p
    }
}

fn download_label(p: &Payload) -> &'static str {
    match p {
        Payload::Custom { .. } => "Download JSON",
        _ => "Download profile (.mobileconfig)",
    }
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

fn field(label: &'static str, template: &str, value: &str) -> ResolvedField {
    ResolvedField {
        label: label.to_owned(),
        value: value.to_owned(),
        from_variables: template.contains("${"),
    }
}

/// The fields as resolved, next to whether each came from variables.
fn resolved_fields(template: &Payload, resolved: &Payload) -> Vec<ResolvedField> {
    match (template, resolved) {
        (Payload::Exchange(t), Payload::Exchange(r)) => vec![
            field("Account name", &t.account_name, &r.account_name),
            field("Exchange server", "", &r.host),
            field("Use SSL", "", &yes_no(r.ssl)),
            field("Email address", &t.email_address, &r.email_address),
            field("User name", &t.user_name, &r.user_name),
        ],
        (Payload::Wifi(t), Payload::Wifi(r)) => {
            let mut v = vec![
                field("Network name (SSID)", "", &r.ssid),
                field("Hidden network", "", &yes_no(r.hidden)),
                field(
                    "Security",
                    "",
                    match r.security {
                        WifiSecurity::Personal => "Personal",
                        WifiSecurity::Enterprise => "Enterprise",
                    },
                ),
                field("Encryption", "", r.encryption.key()),
            ];
            if r.security == WifiSecurity::Enterprise {
                v.push(field("EAP user name", &t.eap_username, &r.eap_username));
                v.push(field(
                    "Outer identity",
                    &t.outer_identity,
                    &r.outer_identity,
                ));
            }
            v
        }
        (Payload::Custom { pairs: t }, Payload::Custom { pairs: r }) => t
            .iter()
            .zip(r)
            .map(|(t, r)| ResolvedField {
                label: r.key.clone(),
                value: r.value.clone(),
                from_variables: t.value.contains("${"),
            })
            .collect(),
        _ => Vec::new(),
    }
}
